package oauth_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"connectrpc.com/connect"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/authorizeapi"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/controlplane/vaultapi"
)

// adminClients talks to the real admin API (Connect over HTTP, admin key
// checked by configapi.AdminAuth) over the env's store.
type adminClients struct {
	keys       configv1connect.KeyServiceClient
	principals configv1connect.PrincipalServiceClient
	conns      vaultv1connect.ConnectionServiceClient
}

const testAdminKey = "mcpg_revocationTestAdminKey00000000000000"

// admin serves the admin API with opts and returns clients for it.
func (e *env) admin(opts ...configapi.Option) adminClients {
	e.t.Helper()
	if _, err := configapi.EnsureAdmin(e.t.Context(), e.st, testAdminKey); err != nil {
		e.t.Fatal(err)
	}
	svc := configapi.New(e.st, slog.New(slog.DiscardHandler), opts...)
	o := connect.WithInterceptors(configapi.NewAdminAuth(e.st))
	mux := http.NewServeMux()
	mux.Handle(configv1connect.NewKeyServiceHandler(svc, o))
	mux.Handle(configv1connect.NewPrincipalServiceHandler(svc, o))
	mux.Handle(vaultv1connect.NewConnectionServiceHandler(vaultapi.NewConnections(svc, e.st, nil), o))
	ts := httptest.NewServer(mux)
	e.t.Cleanup(ts.Close)
	auth := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, r connect.AnyRequest) (connect.AnyResponse, error) {
			r.Header().Set("Authorization", "Bearer "+testAdminKey)
			return next(ctx, r)
		}
	}))
	return adminClients{
		keys:       configv1connect.NewKeyServiceClient(ts.Client(), ts.URL, auth),
		principals: configv1connect.NewPrincipalServiceClient(ts.Client(), ts.URL, auth),
		conns:      vaultv1connect.NewConnectionServiceClient(ts.Client(), ts.URL, auth),
	}
}

// grantedTokens runs the whole flow for the Gmail route with a new public
// client in a browser signed in with key (upstream user: user) and returns
// the client id and the gateway access and refresh tokens.
func (e *env) grantedTokens(key, user string) (clientID, access, refresh string) {
	e.t.Helper()
	clientID = e.publicClient("revocation test")
	b := newBrowser(e.t)
	e.signIn(b, key)
	loc := e.code(b, e.authQuery(clientID), user)
	r := e.exchange(clientID, loc.Query().Get("code"), nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	m := r.json(e.t)
	return clientID, m["access_token"].(string), m["refresh_token"].(string)
}

// refreshTokens posts a refresh grant.
func (e *env) refreshTokens(clientID, refresh string) response {
	e.t.Helper()
	return call(e.t, http.MethodPost, e.pub+"/token", formHeader(),
		url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {clientID}}.Encode())
}

// decide asks the real AuthorizeService what a data plane with public base
// pub does with a tools/list on the Gmail route carrying creds.
func (e *env) decide(pub string, creds *authorizev1.Credentials) *authorizev1.AuthorizeResponse {
	e.t.Helper()
	resp, err := authorizeapi.New(e.st, slog.New(slog.DiscardHandler)).Authorize(e.t.Context(), &authorizev1.AuthorizeRequest{
		Route: "Gmail", Credentials: creds, HttpMethod: http.MethodPost, JsonrpcMethod: "tools/list", PublicBaseUrl: pub,
	})
	if err != nil {
		e.t.Fatalf("authorize: %v", err)
	}
	return resp
}

func bearerCred(tok string) *authorizev1.Credentials {
	return &authorizev1.Credentials{BearerToken: tok}
}

func keyCred(key string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: key} }

// wantAllow checks an ALLOW with alice's upstream grant.
func wantAllow(t *testing.T, resp *authorizev1.AuthorizeResponse, principal string) {
	t.Helper()
	if resp.GetDecision() != authorizev1.Decision_DECISION_ALLOW || resp.GetPrincipal() != principal {
		t.Fatalf("decision %s (%s) for %q, want ALLOW for %q", resp.GetDecision(), resp.GetReason(), resp.GetPrincipal(), principal)
	}
}

// wantInvalidToken checks the CHALLENGE the data plane answers with 401 and
// WWW-Authenticate: Bearer error="invalid_token".
func wantInvalidToken(t *testing.T, resp *authorizev1.AuthorizeResponse, reason, desc string) {
	t.Helper()
	if resp.GetDecision() != authorizev1.Decision_DECISION_CHALLENGE {
		t.Fatalf("decision %s (%s), want CHALLENGE", resp.GetDecision(), resp.GetReason())
	}
	if c := resp.GetChallenge(); c.GetError() != authorize.ErrorInvalidToken || c.GetErrorDescription() != desc || resp.GetReason() != reason {
		t.Fatalf("challenge error=%q desc=%q reason=%q, want %q %q %q", c.GetError(), c.GetErrorDescription(), resp.GetReason(),
			authorize.ErrorInvalidToken, desc, reason)
	}
}

// TestSec06RevokedKeyRevokesTokens: tokens obtained by signing in with an
// API key stop working the moment the key is revoked through the admin API
// (Authorize: CHALLENGE invalid_token, i.e. 401), and their refresh token
// is refused (invalid_grant) instead of minting new ones. The check is made
// on use, so it holds without any cleanup; with the token revoker wired in
// (as in production) the families are deleted as well. Disconnecting a
// route ends its tokens the same way.
func TestSec06RevokedKeyRevokesTokens(t *testing.T) {
	t.Run("use-time-check", func(t *testing.T) {
		e := newEnv(t, nil)
		clientID, access, refresh := e.grantedTokens(aliceKey, "alice")
		wantAllow(t, e.decide(e.pub, bearerCred(access)), "alice")

		// No token revoker: nothing is deleted, the source check alone
		// refuses.
		adm := e.admin()
		if _, err := adm.keys.RevokeKey(t.Context(), &configv1.RevokeKeyRequest{Id: idOf(aliceKey)}); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.accessRecord(access); !ok {
			t.Fatal("the access token record was deleted; this case must show the check on use")
		}
		wantInvalidToken(t, e.decide(e.pub, bearerCred(access)), authorize.ReasonTokenSourceRevoked, authorize.DescInvalidCredential)
		wantJSONError(t, e.refreshTokens(clientID, refresh), http.StatusBadRequest, "invalid_grant")
		// The refused refresh ended the family.
		if n := e.count(oauth.KindFamily); n != 0 {
			t.Errorf("%d token families left after a refused refresh", n)
		}
	})

	t.Run("revocation-deletes-families", func(t *testing.T) {
		e := newEnv(t, nil)
		clientID, access, refresh := e.grantedTokens(aliceKey, "alice")
		_, otherAccess, _ := e.grantedTokens(bobKey, "bob")
		adm := e.admin(configapi.WithTokenRevoker(e.as))
		if _, err := adm.keys.RevokeKey(t.Context(), &configv1.RevokeKeyRequest{Id: idOf(aliceKey)}); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.accessRecord(access); ok {
			t.Error("access token of the revoked key still stored")
		}
		if n := e.count(oauth.KindFamily); n != 1 {
			t.Errorf("%d token families left, want only bob's", n)
		}
		wantInvalidToken(t, e.decide(e.pub, bearerCred(access)), authorize.ReasonUnknownToken, authorize.DescInvalidCredential)
		wantJSONError(t, e.refreshTokens(clientID, refresh), http.StatusBadRequest, "invalid_grant")
		wantAllow(t, e.decide(e.pub, bearerCred(otherAccess)), "bob")
		// The browser session signed in with the key is gone too.
		b := newBrowser(t)
		if r := b.post(e.pub+"/signin", url.Values{"key": {aliceKey}}); r.status != http.StatusForbidden {
			t.Errorf("sign-in with the revoked key: %d", r.status)
		}
	})

	t.Run("disconnect-revokes-route-tokens", func(t *testing.T) {
		e := newEnv(t, nil)
		clientID, access, refresh := e.grantedTokens(aliceKey, "alice")
		// A code issued before the disconnect and redeemed after it.
		b := newBrowser(t)
		e.signIn(b, aliceKey)
		pending := e.code(b, e.authQuery(clientID), "alice").Query().Get("code")
		adm := e.admin(configapi.WithTokenRevoker(e.as))
		if _, err := adm.conns.RevokeConnection(t.Context(), &vaultv1.RevokeConnectionRequest{Principal: "alice", Server: "Gmail"}); err != nil {
			t.Fatal(err)
		}
		wantInvalidToken(t, e.decide(e.pub, bearerCred(access)), authorize.ReasonUnknownToken, authorize.DescInvalidCredential)
		wantJSONError(t, e.refreshTokens(clientID, refresh), http.StatusBadRequest, "invalid_grant")
		wantJSONError(t, e.exchange(clientID, pending, nil), http.StatusBadRequest, "invalid_grant")
		// The key itself still works: the person must sign in upstream again.
		if resp := e.decide(e.pub, keyCred(aliceKey)); resp.GetDecision() != authorizev1.Decision_DECISION_CHALLENGE ||
			resp.GetReason() != authorize.ReasonNoGrant || resp.GetChallenge().GetError() != "" {
			t.Errorf("key after disconnect: %s %s %q", resp.GetDecision(), resp.GetReason(), resp.GetChallenge().GetError())
		}
	})
}

// TestSec07RecreatedPrincipalGetsNothing: deleting a principal and creating
// one of the same name gives the new one none of the old one's keys, tokens,
// sessions or upstream grants: every such record is bound to the uid the
// principal got at creation. With the admin API's cascade the old records
// are deleted; without it (a replica that died after the delete) they are
// still refused.
func TestSec07RecreatedPrincipalGetsNothing(t *testing.T) {
	for _, cascade := range []bool{true, false} {
		name := map[bool]string{true: "admin-api-delete", false: "delete-without-cascade"}[cascade]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			adm := e.admin(configapi.WithTokenRevoker(e.as))
			ctx := t.Context()
			p := &configv1.Principal{Name: "pat", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: []string{"*"}}
			created, err := adm.principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: p})
			if err != nil {
				t.Fatal(err)
			}
			oldUID := created.GetPrincipal().GetUid()
			if len(oldUID) != 32 {
				t.Fatalf("principal uid %q, want 32 hex digits", oldUID)
			}
			k, err := adm.keys.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: "pat", Name: "pat-1"})
			if err != nil {
				t.Fatal(err)
			}
			key := k.GetKey()
			clientID, access, refresh := e.grantedTokens(key, "pat")
			wantAllow(t, e.decide(e.pub, keyCred(key)), "pat")
			wantAllow(t, e.decide(e.pub, bearerCred(access)), "pat")
			if g, ok := e.st.Grant("pat", "Gmail"); !ok || g.Conn.GetPrincipalUid() != oldUID {
				t.Fatalf("grant missing or not bound to %q", oldUID)
			}
			session := newBrowser(t)
			e.signIn(session, key)

			if cascade {
				if _, err := adm.principals.DeletePrincipal(ctx, &configv1.DeletePrincipalRequest{Name: "pat"}); err != nil {
					t.Fatal(err)
				}
				if _, ok := e.st.Key(k.GetApiKey().GetId()); ok {
					t.Error("the deleted principal's key is still stored")
				}
				if _, ok := e.st.Grant("pat", "Gmail"); ok {
					t.Error("the deleted principal's grant is still stored")
				}
				if n := e.count(oauth.KindFamily); n != 0 {
					t.Errorf("%d token families left", n)
				}
			} else {
				rev, err := e.st.DeletePrincipal(ctx, "pat", 0)
				if err != nil {
					t.Fatal(err)
				}
				e.wait(rev)
			}
			again, err := adm.principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: p})
			if err != nil {
				t.Fatal(err)
			}
			if u := again.GetPrincipal().GetUid(); u == "" || u == oldUID {
				t.Fatalf("re-created principal's uid %q (old %q)", u, oldUID)
			}

			// The old key: 401 invalid_token at the data plane, refused by
			// the admin API's key resolution and by the sign-in form.
			resp := e.decide(e.pub, keyCred(key))
			wantReason := authorize.ReasonUnknownPrincipal
			if cascade {
				wantReason = authorize.ReasonUnknownKey
			}
			wantInvalidToken(t, resp, wantReason, authorize.DescInvalidCredential)
			wantKeyState := map[bool]configapi.KeyState{true: configapi.KeyUnknown, false: configapi.KeyOrphaned}[cascade]
			if _, _, st := configapi.ResolveKey(e.st, key, e.clock.Now()); st != wantKeyState {
				t.Errorf("ResolveKey(old key) = %s, want %s", st, wantKeyState)
			}
			if r := newBrowser(t).post(e.pub+"/signin", url.Values{"key": {key}}); r.status != http.StatusForbidden {
				t.Errorf("sign-in with the old key: %d", r.status)
			}
			// The old tokens and the old browser session.
			wantReason = authorize.ReasonTokenSourceRevoked
			if cascade {
				wantReason = authorize.ReasonUnknownToken
			}
			wantInvalidToken(t, e.decide(e.pub, bearerCred(access)), wantReason, authorize.DescInvalidCredential)
			wantJSONError(t, e.refreshTokens(clientID, refresh), http.StatusBadRequest, "invalid_grant")
			if r := session.get(e.pub + "/connections"); r.status != http.StatusFound || !strings.Contains(r.header.Get("Location"), "/signin") {
				t.Errorf("old session on /connections: %d %s", r.status, r.header.Get("Location"))
			}
			// The old upstream grant: the new principal's own key gets a
			// plain challenge (sign in upstream), never the old grant.
			k2, err := adm.keys.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: "pat", Name: "pat-2"})
			if err != nil {
				t.Fatal(err)
			}
			resp = e.decide(e.pub, keyCred(k2.GetKey()))
			if resp.GetDecision() != authorizev1.Decision_DECISION_CHALLENGE || resp.GetReason() != authorize.ReasonNoGrant ||
				resp.GetChallenge().GetError() != "" {
				t.Errorf("new principal's key on Gmail: %s %s %q, want CHALLENGE %q", resp.GetDecision(), resp.GetReason(),
					resp.GetChallenge().GetError(), authorize.ReasonNoGrant)
			}
			// The old principal's remembered consent: the new one is asked.
			b2 := newBrowser(t)
			e.signIn(b2, k2.GetKey())
			if r := b2.get(e.authorizeURL(e.authQuery(clientID))); r.status != http.StatusOK || !strings.Contains(r.body, `name="csrf"`) {
				t.Errorf("authorize for the old principal's client: %d %s, want the consent page", r.status, r.header.Get("Location"))
			}
			// The new principal's own sign-in works and gets its own grant.
			_, access2, _ := e.grantedTokens(k2.GetKey(), "pat")
			wantAllow(t, e.decide(e.pub, bearerCred(access2)), "pat")
			if g, ok := e.st.Grant("pat", "Gmail"); !ok || g.Conn.GetPrincipalUid() != again.GetPrincipal().GetUid() {
				t.Errorf("new grant not bound to the new uid")
			}
		})
	}
}

// TestSec08TokenAudienceIsTheResourceURL: a token is bound to the canonical
// resource URL <public base>/<route>/mcp of the data plane it was obtained
// through (RFC 8707, the audience the docs promise): another data plane
// with another public base refuses it (401 invalid_token), the issuing one
// accepts it however the origin is spelled, and a refresh through the other
// base cannot move it there.
func TestSec08TokenAudienceIsTheResourceURL(t *testing.T) {
	e := newEnv(t, nil)
	clientID, access, refresh := e.grantedTokens(aliceKey, "alice")
	const otherBase = "https://gw-b.example.com"

	wantAllow(t, e.decide(e.pub, bearerCred(access)), "alice")
	wantAllow(t, e.decide(strings.Replace(e.pub, "http://", "HTTP://", 1)+"/", bearerCred(access)), "alice")
	wantInvalidToken(t, e.decide(otherBase, bearerCred(access)), authorize.ReasonWrongAudience, authorize.DescWrongAudience)
	if rec, _ := e.accessRecord(access); rec.GetAudience() != e.pub+"/Gmail/mcp" {
		t.Errorf("audience %q, want %q", rec.GetAudience(), e.pub+"/Gmail/mcp")
	}

	// Refreshing through the other data plane asking for its resource.
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {clientID}, "resource": {otherBase + "/Gmail/mcp"}}
	h := formHeader()
	h.Set("X-Test-Public-URL", otherBase)
	wantJSONError(t, call(t, http.MethodPost, e.pub+"/token", h, f.Encode()), http.StatusBadRequest, "invalid_target")
	// Without a resource the new token keeps the family's audience.
	f.Del("resource")
	r := call(t, http.MethodPost, e.pub+"/token", h, f.Encode())
	if r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	access2 := r.json(t)["access_token"].(string)
	wantInvalidToken(t, e.decide(otherBase, bearerCred(access2)), authorize.ReasonWrongAudience, authorize.DescWrongAudience)
	wantAllow(t, e.decide(e.pub, bearerCred(access2)), "alice")
}
