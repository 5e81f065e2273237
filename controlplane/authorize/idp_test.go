package authorize_test

import (
	"context"
	"errors"
	"testing"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// idpState is a state with configured identity providers.
type idpState struct {
	*state
	idps map[string]*store.IdentityProvider
}

func (s idpState) IdentityProvider(n string) (*store.IdentityProvider, bool) {
	v, ok := s.idps[n]
	return v, ok
}

func newIdPState() idpState {
	s := idpState{state: newState(), idps: map[string]*store.IdentityProvider{"corp": {Def: &configv1.IdentityProvider{Name: "corp", TrustIdJag: true}}}}
	s.principals["alice"] = &configv1.Principal{Name: "alice", Uid: "uid-alice", Servers: []string{"*"}}
	s.servers["plain"] = &store.Server{Def: &configv1.McpServer{Name: "plain", Url: "http://plain.invalid/mcp"}}
	s.servers["docs"] = &store.Server{Def: &configv1.McpServer{Name: "docs", Url: "http://docs.invalid/mcp", AuthType: configv1.AuthType_AUTH_TYPE_OAUTH2,
		Oauth2Flow: configv1.OAuth2Flow_O_AUTH2_FLOW_TOKEN_EXCHANGE, TokenUrl: "http://docs.invalid/token", Scopes: []string{"docs.read"}}}
	return s
}

// addIdPToken adds an access token for route issued for an assertion of
// idp about (principal, uid).
func (s idpState) addIdPToken(plain, principal, uid, route, idp string) {
	s.addSourcedToken(plain, principal, uid, route, "", base)
	s.tokens[store.HashKey(plain)].Idp = idp
}

func tokenReq(route, tok string) *authorizev1.AuthorizeRequest {
	return &authorizev1.AuthorizeRequest{Route: route, Credentials: &authorizev1.Credentials{BearerToken: tok},
		HttpMethod: "POST", JsonrpcMethod: "tools/list", PublicBaseUrl: base}
}

// TestIdPSourcedToken: a token whose source is an identity provider (no
// API key) is usable while the provider is configured and its principal
// exists with the uid; otherwise it is refused like a token of a revoked
// key; a state that cannot tell (no IdentityProvider lookup) refuses it.
func TestIdPSourcedToken(t *testing.T) {
	for _, tc := range []struct {
		name       string
		idp, uid   string
		drop       bool // the provider is removed
		plainState bool
		want       authorizev1.Decision
		reason     string
	}{
		{name: "configured", idp: "corp", uid: "uid-alice", want: authorizev1.Decision_DECISION_ALLOW, reason: authorize.ReasonAllowed},
		{name: "provider removed", idp: "corp", uid: "uid-alice", drop: true, want: authorizev1.Decision_DECISION_CHALLENGE, reason: authorize.ReasonTokenSourceRevoked},
		{name: "unknown provider", idp: "other", uid: "uid-alice", want: authorizev1.Decision_DECISION_CHALLENGE, reason: authorize.ReasonTokenSourceRevoked},
		{name: "principal re-created", idp: "corp", uid: "uid-old", want: authorizev1.Decision_DECISION_CHALLENGE, reason: authorize.ReasonTokenSourceRevoked},
		{name: "no source at all", idp: "", uid: "uid-alice", want: authorizev1.Decision_DECISION_CHALLENGE, reason: authorize.ReasonTokenSourceRevoked},
		{name: "state without providers", idp: "corp", uid: "uid-alice", plainState: true, want: authorizev1.Decision_DECISION_CHALLENGE, reason: authorize.ReasonTokenSourceRevoked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newIdPState()
			s.addIdPToken("mcpgt_idp", "alice", tc.uid, "plain", tc.idp)
			if tc.drop {
				delete(s.idps, "corp")
			}
			var st authorize.State = s
			if tc.plainState {
				st = s.state
			}
			d, err := authorize.Decide(st, now, tokenReq("plain", "mcpgt_idp"))
			if err != nil {
				t.Fatal(err)
			}
			if d.Response.GetDecision() != tc.want || d.Response.GetReason() != tc.reason {
				t.Errorf("got %v %q, want %v %q", d.Response.GetDecision(), d.Response.GetReason(), tc.want, tc.reason)
			}
		})
	}
}

type fixedExchange struct {
	tok string
	err error
}

func (x fixedExchange) Token(context.Context, string, *store.Server) (string, error) {
	return x.tok, x.err
}

// TestDecideTokenExchange: a token_exchange route's ALLOW needs the
// exchange (NeedTokenExchange); the obtained token becomes the upstream
// Authorization; a person without a usable IdP token gets the sign-in
// CHALLENGE; an upstream failure or a missing exchanger is an error (fail
// closed).
func TestDecideTokenExchange(t *testing.T) {
	s := newIdPState()
	s.addIdPToken("mcpgt_idp", "alice", "uid-alice", "docs", "corp")
	for _, tc := range []struct {
		name   string
		x      grants.ExchangeTokens
		want   authorizev1.Decision
		reason string
		err    error
	}{
		{name: "exchanged", x: fixedExchange{tok: "upstream-tok"}, want: authorizev1.Decision_DECISION_ALLOW, reason: authorize.ReasonAllowed},
		{name: "no IdP token", x: fixedExchange{err: grants.ErrNoGrant}, want: authorizev1.Decision_DECISION_CHALLENGE, reason: authorize.ReasonNoGrant},
		{name: "refused upstream", x: fixedExchange{err: grants.ErrGrantUnusable}, want: authorizev1.Decision_DECISION_CHALLENGE, reason: authorize.ReasonGrantUnusable},
		{name: "upstream down", x: fixedExchange{err: grants.ErrUpstreamUnavailable}, err: grants.ErrUpstreamUnavailable},
		{name: "no exchanger", err: authorize.ErrMisconfigured},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := authorize.Decide(s, now, tokenReq("docs", "mcpgt_idp"))
			if err != nil {
				t.Fatal(err)
			}
			if d.Need != authorize.NeedTokenExchange || d.Principal != "alice" || d.Server.Def.GetName() != "docs" {
				t.Fatalf("decision need %v principal %q", d.Need, d.Principal)
			}
			got, err := grants.Obtainer{Exchange: tc.x}.Complete(t.Context(), d)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.GetDecision() != tc.want || got.GetReason() != tc.reason {
				t.Fatalf("got %v %q", got.GetDecision(), got.GetReason())
			}
			if tc.want == authorizev1.Decision_DECISION_ALLOW {
				h := got.GetAllow().GetUpstreamHeaders()
				if len(h) != 1 || h[0].GetName() != "Authorization" || h[0].GetValue() != "Bearer upstream-tok" {
					t.Errorf("upstream headers %v", h)
				}
			}
		})
	}
}
