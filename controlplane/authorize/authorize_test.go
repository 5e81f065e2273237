package authorize_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

const base = "https://gw.example.com"

var now = time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// state is an in-memory authorize.State.
type state struct {
	servers    map[string]*store.Server
	principals map[string]*configv1.Principal
	keys       map[[32]byte]*storev1.KeyRecord
	keysByID   map[string]*storev1.KeyRecord
	tokens     map[[32]byte]*storev1.AccessTokenRecord
	grants     map[[2]string]*store.Grant
	groups     map[string]*configv1.Group
	policies   *configv1.PolicySet
	memoMu     sync.Mutex
	memoOf     *configv1.PolicySet
	visOf      *configv1.PolicySet
	vis        map[string][]*authorizev1.VisibilityRule
	memo       map[string][]*configv1.Policy
}

func newState() *state {
	return &state{
		servers:    map[string]*store.Server{},
		principals: map[string]*configv1.Principal{},
		keys:       map[[32]byte]*storev1.KeyRecord{},
		keysByID:   map[string]*storev1.KeyRecord{},
		tokens:     map[[32]byte]*storev1.AccessTokenRecord{},
		grants:     map[[2]string]*store.Grant{},
		groups:     map[string]*configv1.Group{},
	}
}

func (s *state) Server(n string) (*store.Server, bool) { v, ok := s.servers[n]; return v, ok }
func (s *state) Principal(n string) (*configv1.Principal, bool) {
	v, ok := s.principals[n]
	return v, ok
}
func (s *state) KeyByHash(h [32]byte) (*storev1.KeyRecord, bool) { v, ok := s.keys[h]; return v, ok }
func (s *state) Key(id string) (*storev1.KeyRecord, bool) {
	v, ok := s.keysByID[id]
	return v, ok
}
func (s *state) AccessToken(h [32]byte) (*storev1.AccessTokenRecord, bool) {
	v, ok := s.tokens[h]
	return v, ok
}
func (s *state) Group(n string) (*configv1.Group, bool) { v, ok := s.groups[n]; return v, ok }
func (s *state) Policies() *configv1.PolicySet          { return s.policies }

// CompiledVisibility memoizes per list and key, like the store.
func (s *state) CompiledVisibility(server, principal string, groups []string, compile func() []*authorizev1.VisibilityRule) []*authorizev1.VisibilityRule {
	key := server + "\x00" + principal + "\x00" + strings.Join(groups, "\x00")
	s.memoMu.Lock()
	if s.visOf != s.policies {
		s.visOf, s.vis = s.policies, map[string][]*authorizev1.VisibilityRule{}
	}
	v, ok := s.vis[key]
	s.memoMu.Unlock()
	if ok {
		return v
	}
	v = compile()
	s.memoMu.Lock()
	s.vis[key] = v
	s.memoMu.Unlock()
	return v
}

// PoliciesFor memoizes per list and server, like the store.
func (s *state) PoliciesFor(server string) []*configv1.Policy {
	if len(s.policies.GetPolicies()) == 0 {
		return nil
	}
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	if s.memoOf != s.policies {
		s.memoOf, s.memo = s.policies, map[string][]*configv1.Policy{}
	}
	r, ok := s.memo[server]
	if !ok {
		r = store.RulesFor(s.policies, server)
		s.memo[server] = r
	}
	return r
}
func (s *state) Grant(p, srv string) (*store.Grant, bool) {
	v, ok := s.grants[[2]string{p, srv}]
	return v, ok
}

// keyIDs maps each test key's display prefix to its id, for expected
// responses (the prefixes of the test keys are distinct).
var keyIDs sync.Map

// keyIDOf is the id of the test key whose display prefix is prefix.
func keyIDOf(prefix string) string {
	id, _ := keyIDs.Load(prefix)
	s, _ := id.(string)
	return s
}

func (s *state) addKey(plain, principal string, revoked bool, expire time.Time) {
	k := &configv1.ApiKey{Id: store.KeyID(store.HashKey(plain)), Principal: principal, DisplayPrefix: plain[:8], Revoked: revoked}
	if prev, loaded := keyIDs.LoadOrStore(k.DisplayPrefix, k.Id); loaded && prev != k.Id {
		panic("two test keys share the display prefix " + k.DisplayPrefix)
	}
	if !expire.IsZero() {
		k.ExpireTime = timestamppb.New(expire)
	}
	sum := store.HashKey(plain)
	s.keys[sum] = &storev1.KeyRecord{Key: k, Sha256: sum[:]}
	s.keysByID[k.Id] = s.keys[sum]
}

// addToken adds an access token for route at base, obtained by signing in
// with alice's key.
func (s *state) addToken(plain, principal, route string, expire time.Time) {
	s.addSourcedToken(plain, principal, "", route, keyAlice, base)
	s.tokens[store.HashKey(plain)].ExpireTime = timestamppb.New(expire)
}

// addSourcedToken adds an access token of principal (uid) for route at pub,
// obtained by signing in with key (none when empty), valid for an hour.
func (s *state) addSourcedToken(plain, principal, uid, route, key, pub string) {
	var keyID string
	if key != "" {
		keyID = store.KeyID(store.HashKey(key))
	}
	s.tokens[store.HashKey(plain)] = &storev1.AccessTokenRecord{
		Principal: principal, PrincipalUid: uid, Route: route, ExpireTime: timestamppb.New(now.Add(time.Hour)),
		KeyId: keyID, Audience: wire.ResourceURL(pub, route),
	}
}

func (s *state) addGrant(principal, server string, st vaultv1.ConnectionState, tok string, expire time.Time) {
	s.grants[[2]string{principal, server}] = &store.Grant{
		Conn:  &vaultv1.Connection{Principal: principal, Server: server, State: st},
		Token: &storev1.UpstreamToken{AccessToken: tok, Expiry: timestamppb.New(expire)},
	}
}

// fixedMachine is a MachineTokens that hands out one token.
type fixedMachine string

func (m fixedMachine) Token(context.Context, *store.Server) (string, error) { return string(m), nil }

// errGrants is a GrantTokens that always fails.
type errGrants struct{ err error }

func (g errGrants) Token(context.Context, string, string) (string, error) { return "", g.err }

func hdr(kv ...string) []*authorizev1.Header {
	var out []*authorizev1.Header
	for i := 0; i < len(kv); i += 2 {
		out = append(out, &authorizev1.Header{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

// mode is one upstream auth mode of the matrix: a server definition and the
// exact headers an ALLOW carries for it.
type mode struct {
	route   string
	typ     configv1.AuthType
	flow    configv1.OAuth2Flow
	value   string
	scopes  []string
	headers []*authorizev1.Header // without the static X-Tenant header
}

var modes = []mode{
	{route: "none", typ: configv1.AuthType_AUTH_TYPE_NONE},
	{route: "unspecified", typ: configv1.AuthType_AUTH_TYPE_UNSPECIFIED},
	{route: "apikey", typ: configv1.AuthType_AUTH_TYPE_API_KEY, value: "s3cret", headers: hdr("X-API-Key", "s3cret")},
	{route: "bearer", typ: configv1.AuthType_AUTH_TYPE_BEARER_TOKEN, value: "s3cret", headers: hdr("Authorization", "Bearer s3cret")},
	{route: "basic", typ: configv1.AuthType_AUTH_TYPE_BASIC, value: "user:pw", headers: hdr("Authorization", "Basic dXNlcjpwdw==")},
	{route: "authz", typ: configv1.AuthType_AUTH_TYPE_AUTHORIZATION, value: "Custom abc", headers: hdr("Authorization", "Custom abc")},
	{route: "token", typ: configv1.AuthType_AUTH_TYPE_TOKEN, value: "s3cret", headers: hdr("Authorization", "token s3cret")},
	{route: "cc", typ: configv1.AuthType_AUTH_TYPE_OAUTH2, flow: configv1.OAuth2Flow_O_AUTH2_FLOW_CLIENT_CREDENTIALS, scopes: []string{"api"}, headers: hdr("Authorization", "Bearer minted")},
	{route: "Gmail", typ: configv1.AuthType_AUTH_TYPE_OAUTH2, flow: configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE, scopes: []string{"mail.read", "mail.send"}},
	{route: "pass", typ: configv1.AuthType_AUTH_TYPE_PASSTHROUGH, headers: hdr("Authorization", "Bearer up-pass")},
}

// Credentials of the matrix.
const (
	keyAlice   = "mcpg_alice_0000000000000000"
	keyBob     = "mcpg_bob___0000000000000000"
	keyCarol   = "mcpg_carol_0000000000000000"
	keyDave    = "mcpg_dave__0000000000000000"
	keyRevoked = "mcpg_revok_0000000000000000"
	keyExpired = "mcpg_expir_0000000000000000"
	keyNow     = "mcpg_nowex_0000000000000000"
	keyFuture  = "mcpg_futur_0000000000000000"
	// erin was deleted and created again: this key is bound to her old uid.
	keyErinOld = "mcpg_erin__0000000000000000"
)

func matrixState() *state {
	s := newState()
	routes := []string{}
	for _, m := range modes {
		routes = append(routes, m.route)
		s.servers[m.route] = &store.Server{
			Def: &configv1.McpServer{
				Name: m.route, Url: "https://upstream.example/" + m.route, AuthType: m.typ, Oauth2Flow: m.flow,
				Scopes: m.scopes, AllowedTools: []string{"search", "delete"}, DisallowedTools: []string{"delete"},
				Description: "route " + m.route, Revision: 7,
			},
			Secrets: &storev1.ServerSecrets{AuthValue: m.value, StaticHeaders: map[string]string{"X-Tenant": "t1"}},
		}
	}
	s.principals["alice"] = &configv1.Principal{Name: "alice", Servers: routes}
	s.principals["bob"] = &configv1.Principal{Name: "bob", Servers: []string{"*"}}
	s.principals["carol"] = &configv1.Principal{Name: "carol", Servers: []string{"elsewhere"}}
	s.addKey(keyAlice, "alice", false, time.Time{})
	s.addKey(keyBob, "bob", false, time.Time{})
	s.addKey(keyCarol, "carol", false, time.Time{})
	s.addKey(keyDave, "dave", false, time.Time{}) // dave was deleted
	s.addKey(keyRevoked, "alice", true, time.Time{})
	s.addKey(keyExpired, "alice", false, now.Add(-time.Second))
	s.addKey(keyNow, "alice", false, now)
	s.addKey(keyFuture, "alice", false, now.Add(time.Hour))
	for _, r := range routes {
		s.addToken("tok-alice-"+r, "alice", r, now.Add(time.Hour))
		s.addToken("tok-expired-"+r, "alice", r, now.Add(-time.Second))
	}
	s.addToken("tok-alice-elsewhere", "alice", "elsewhere", now.Add(time.Hour))
	s.principals["erin"] = &configv1.Principal{Name: "erin", Servers: routes, Uid: "uid-erin-2"}
	s.addKey(keyErinOld, "erin", false, time.Time{})
	s.keys[store.HashKey(keyErinOld)].PrincipalUid = "uid-erin-1"
	for _, r := range routes {
		s.addSourcedToken("tok-other-base-"+r, "alice", "", r, keyAlice, "https://gw-b.example.com")
		s.addSourcedToken("tok-revoked-key-"+r, "alice", "", r, keyRevoked, base)
		s.addSourcedToken("tok-expired-key-"+r, "alice", "", r, keyExpired, base)
		s.addSourcedToken("tok-no-source-"+r, "alice", "", r, "", base)
		s.addSourcedToken("tok-bob-key-"+r, "alice", "", r, keyBob, base)
		s.addSourcedToken("tok-erin-old-"+r, "erin", "uid-erin-1", r, keyErinOld, base)
	}
	return s
}

// credCase is a credential shape and state, and what it resolves to.
type credCase struct {
	name      string
	creds     func(route string) *authorizev1.Credentials
	outcome   string // "ok", "none" (challenge, no error), "invalid", "notfound"
	reason    string // for "none", "invalid", "notfound"
	desc      string // for "invalid"
	principal string
	prefix    string
}

var credCases = []credCase{
	{name: "none", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{} },
		outcome: "none", reason: authorize.ReasonNoCredential},
	{name: "malformed", creds: func(string) *authorizev1.Credentials {
		return &authorizev1.Credentials{MalformedAuthorization: true, ApiKey: keyAlice}
	}, outcome: "invalid", reason: authorize.ReasonMalformedAuth, desc: authorize.DescMalformed},
	{name: "key", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: keyAlice} },
		outcome: "ok", principal: "alice", prefix: keyAlice[:8]},
	{name: "key-not-yet-expired", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: keyFuture} },
		outcome: "ok", principal: "alice", prefix: keyFuture[:8]},
	{name: "key-star", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: keyBob} },
		outcome: "ok", principal: "bob", prefix: keyBob[:8]},
	{name: "key-unknown", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: "mcpg_nobody"} },
		outcome: "invalid", reason: authorize.ReasonUnknownKey, desc: authorize.DescInvalidCredential},
	{name: "key-revoked", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: keyRevoked} },
		outcome: "invalid", reason: authorize.ReasonRevokedKey, desc: authorize.DescInvalidCredential, prefix: keyRevoked[:8]},
	{name: "key-expired", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: keyExpired} },
		outcome: "invalid", reason: authorize.ReasonExpiredKey, desc: authorize.DescInvalidCredential, prefix: keyExpired[:8]},
	{name: "key-expiring-now", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: keyNow} },
		outcome: "invalid", reason: authorize.ReasonExpiredKey, desc: authorize.DescInvalidCredential, prefix: keyNow[:8]},
	{name: "key-deleted-principal", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: keyDave} },
		outcome: "invalid", reason: authorize.ReasonUnknownPrincipal, desc: authorize.DescInvalidCredential, prefix: keyDave[:8]},
	{name: "key-not-granted", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: keyCarol} },
		outcome: "notfound", reason: authorize.ReasonNotGranted, principal: "carol", prefix: keyCarol[:8]},
	{name: "token", creds: func(r string) *authorizev1.Credentials {
		return &authorizev1.Credentials{BearerToken: "tok-alice-" + r}
	},
		outcome: "ok", principal: "alice"},
	{name: "token-unknown", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{BearerToken: "tok-nobody"} },
		outcome: "invalid", reason: authorize.ReasonUnknownToken, desc: authorize.DescInvalidCredential},
	{name: "token-expired", creds: func(r string) *authorizev1.Credentials {
		return &authorizev1.Credentials{BearerToken: "tok-expired-" + r}
	}, outcome: "invalid", reason: authorize.ReasonExpiredToken, desc: authorize.DescInvalidCredential},
	{name: "token-other-route", creds: func(string) *authorizev1.Credentials {
		return &authorizev1.Credentials{BearerToken: "tok-alice-elsewhere"}
	}, outcome: "invalid", reason: authorize.ReasonWrongAudience, desc: authorize.DescWrongAudience},
	{name: "token-other-public-base", creds: func(r string) *authorizev1.Credentials {
		return &authorizev1.Credentials{BearerToken: "tok-other-base-" + r}
	}, outcome: "invalid", reason: authorize.ReasonWrongAudience, desc: authorize.DescWrongAudience},
	{name: "token-of-revoked-key", creds: func(r string) *authorizev1.Credentials {
		return &authorizev1.Credentials{BearerToken: "tok-revoked-key-" + r}
	}, outcome: "invalid", reason: authorize.ReasonTokenSourceRevoked, desc: authorize.DescInvalidCredential},
	{name: "token-of-expired-key", creds: func(r string) *authorizev1.Credentials {
		return &authorizev1.Credentials{BearerToken: "tok-expired-key-" + r}
	}, outcome: "invalid", reason: authorize.ReasonTokenSourceRevoked, desc: authorize.DescInvalidCredential},
	{name: "token-without-source", creds: func(r string) *authorizev1.Credentials {
		return &authorizev1.Credentials{BearerToken: "tok-no-source-" + r}
	}, outcome: "invalid", reason: authorize.ReasonTokenSourceRevoked, desc: authorize.DescInvalidCredential},
	{name: "token-source-of-another-principal", creds: func(r string) *authorizev1.Credentials {
		return &authorizev1.Credentials{BearerToken: "tok-bob-key-" + r}
	}, outcome: "invalid", reason: authorize.ReasonTokenSourceRevoked, desc: authorize.DescInvalidCredential},
	{name: "key-of-recreated-principal", creds: func(string) *authorizev1.Credentials { return &authorizev1.Credentials{ApiKey: keyErinOld} },
		outcome: "invalid", reason: authorize.ReasonUnknownPrincipal, desc: authorize.DescInvalidCredential, prefix: keyErinOld[:8]},
	{name: "token-of-recreated-principal", creds: func(r string) *authorizev1.Credentials {
		return &authorizev1.Credentials{BearerToken: "tok-erin-old-" + r}
	}, outcome: "invalid", reason: authorize.ReasonTokenSourceRevoked, desc: authorize.DescInvalidCredential},
	{name: "key-and-token-same-principal", creds: func(r string) *authorizev1.Credentials {
		return &authorizev1.Credentials{ApiKey: keyAlice, BearerToken: "tok-alice-" + r}
	}, outcome: "ok", principal: "alice", prefix: keyAlice[:8]},
	{name: "key-and-token-different-principals", creds: func(r string) *authorizev1.Credentials {
		return &authorizev1.Credentials{ApiKey: keyBob, BearerToken: "tok-alice-" + r}
	}, outcome: "invalid", reason: authorize.ReasonConflictingPrincipals, desc: authorize.DescConflicting, prefix: keyBob[:8]},
}

// grantCase is a vault state; it only matters for authorization_code.
type grantCase struct {
	name   string
	setup  func(s *state, p string) []option
	token  string // ALLOW with this grant token
	reason string // else CHALLENGE with this reason
	err    error  // else this error
}

var grantCases = []grantCase{
	{name: "no-grant", setup: func(*state, string) []option { return nil }, reason: authorize.ReasonNoGrant},
	{name: "active", setup: func(s *state, p string) []option {
		s.addGrant(p, "Gmail", vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, "grant-"+p, now.Add(time.Hour))
		return nil
	}, token: "grant-"},
	{name: "expired", setup: func(s *state, p string) []option {
		s.addGrant(p, "Gmail", vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, "grant-"+p, now)
		return nil
	}, reason: authorize.ReasonGrantUnusable},
	{name: "needs-reauth", setup: func(s *state, p string) []option {
		s.addGrant(p, "Gmail", vaultv1.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH, "grant-"+p, now.Add(time.Hour))
		return nil
	}, reason: authorize.ReasonGrantUnusable},
	{name: "refresh-unavailable", setup: func(*state, string) []option {
		return []option{withGrantTokens(errGrants{fmt.Errorf("refresh: %w", grants.ErrUpstreamUnavailable)})}
	}, err: grants.ErrUpstreamUnavailable},
	{name: "grant-store-broken", setup: func(*state, string) []option {
		return []option{withGrantTokens(errGrants{errBroken})}
	}, err: errBroken},
}

var errBroken = errors.New("broken")

type methodCase struct {
	name, method, tool string
	forbidden          bool
	rule               string // the rule id a forbidden call's DENY names
}

var methodCases = []methodCase{
	{name: "initialize", method: "initialize"},
	{name: "tools-list", method: "tools/list"},
	{name: "call-allowed", method: "tools/call", tool: "search"},
	{name: "call-disallowed", method: "tools/call", tool: "delete", forbidden: true, rule: wire.RuleServerDisallowedTools},
	{name: "call-unlisted", method: "tools/call", tool: "rm", forbidden: true, rule: wire.RuleServerAllowedTools},
	{name: "call-no-name", method: "tools/call", forbidden: true, rule: wire.RuleServerAllowedTools},
	{name: "get-stream", method: ""},
	{name: "discover", method: "server/discover"},
	{name: "tool-name-outside-call", method: "prompts/get", tool: "rm"},
}

// TestAuthorizeMatrix runs every (auth mode × credential × vault state × MCP
// method) cell and compares the whole response.
func TestAuthorizeMatrix(t *testing.T) {
	cells := 0
	for _, m := range modes {
		for _, c := range credCases {
			for _, g := range grantCases {
				for _, mc := range methodCases {
					name := m.route + "/" + c.name + "/" + g.name + "/" + mc.name
					s := matrixState()
					var opts []option
					for _, p := range []string{"alice", "bob", "carol"} {
						opts = append(opts, g.setup(s, p)...)
					}
					opts = append(opts, withClock(clock), withMachineTokens(fixedMachine("minted")))
					a := newAuthorizer(s, opts...)
					creds := c.creds(m.route)
					creds.PassthroughAuthorization = "Bearer up-pass"
					req := &authorizev1.AuthorizeRequest{
						Route: m.route, Credentials: creds, HttpMethod: "POST",
						JsonrpcMethod: mc.method, ToolName: mc.tool, PublicBaseUrl: base,
					}
					want, wantErr := expect(m, c, g, mc)
					got, err := a.Authorize(t.Context(), req)
					cells++
					if wantErr != nil {
						if !errors.Is(err, wantErr) || got != nil {
							t.Errorf("%s: got (%v, %v), want error %v", name, got, err, wantErr)
						}
						continue
					}
					if err != nil {
						t.Errorf("%s: unexpected error %v", name, err)
						continue
					}
					if !proto.Equal(got, want) {
						t.Errorf("%s:\n got %s\nwant %s", name, protojson.Format(got), protojson.Format(want))
					}
				}
			}
		}
	}
	t.Logf("%d cells", cells)
}

// expect is the table's answer for one cell, written from issue 3's list of
// outcomes in its order of precedence.
func expect(m mode, c credCase, g grantCase, mc methodCase) (*authorizev1.AuthorizeResponse, error) {
	// Scopes only once the principal is known to be granted the route.
	challenge := func(reason, errCode, desc string, scopes []string) *authorizev1.AuthorizeResponse {
		return &authorizev1.AuthorizeResponse{
			Decision: authorizev1.Decision_DECISION_CHALLENGE,
			Challenge: &authorizev1.Challenge{
				Scopes: scopes, Error: errCode, ErrorDescription: desc,
			},
			Principal: c.principal, KeyPrefix: c.prefix, KeyId: keyIDOf(c.prefix), Reason: reason,
		}
	}
	deny := func(reason string) *authorizev1.AuthorizeResponse {
		return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Deny: &authorizev1.Deny{},
			Principal: c.principal, KeyPrefix: c.prefix, KeyId: keyIDOf(c.prefix), Reason: reason}
	}
	switch c.outcome {
	case "none":
		return challenge(c.reason, "", "", nil), nil
	case "invalid":
		return challenge(c.reason, "invalid_token", c.desc, nil), nil
	case "notfound":
		return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_NOT_FOUND,
			Principal: c.principal, KeyPrefix: c.prefix, KeyId: keyIDOf(c.prefix), Reason: c.reason}, nil
	}
	if mc.forbidden {
		r := deny(authorize.ReasonToolForbidden)
		r.RuleId = mc.rule
		return r, nil
	}
	headers := m.headers
	vault := false
	if m.flow == configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE {
		switch {
		case g.err != nil:
			return nil, g.err
		case g.reason != "":
			return challenge(g.reason, "", "", m.scopes), nil
		}
		headers, vault = hdr("Authorization", "Bearer "+g.token+c.principal), true
	}
	return &authorizev1.AuthorizeResponse{
		Decision: authorizev1.Decision_DECISION_ALLOW,
		Allow: &authorizev1.Allow{
			UpstreamUrl:     "https://upstream.example/" + m.route,
			UpstreamHeaders: append(slices.Clone(headers), hdr("X-Tenant", "t1")...),
			AllowedTools:    []string{"search", "delete"}, DisallowedTools: []string{"delete"},
			VaultGrant: vault,
		},
		Principal: c.principal, KeyPrefix: c.prefix, KeyId: keyIDOf(c.prefix), Reason: authorize.ReasonAllowed,
	}, nil
}

// TestAuthorizeReportedCase is the reported bug: an initialize with only a
// valid LiteLLM-style key on an authorization_code server without a grant
// must be a challenge the client can act on.
func TestAuthorizeReportedCase(t *testing.T) {
	a := newAuthorizer(matrixState(), withClock(clock))
	got, err := a.Authorize(t.Context(), &authorizev1.AuthorizeRequest{
		Route: "Gmail", Credentials: &authorizev1.Credentials{ApiKey: keyAlice},
		HttpMethod: "POST", JsonrpcMethod: "initialize", PublicBaseUrl: "https://gw.example.com/",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := &authorizev1.AuthorizeResponse{
		Decision: authorizev1.Decision_DECISION_CHALLENGE,
		Challenge: &authorizev1.Challenge{
			Scopes: []string{"mail.read", "mail.send"},
		},
		Principal: "alice", KeyPrefix: "mcpg_ali", KeyId: keyIDOf("mcpg_ali"), Reason: "no upstream grant",
	}
	if !proto.Equal(got, want) {
		t.Errorf("got %s\nwant %s", protojson.Format(got), protojson.Format(want))
	}
}

func TestAuthorizeEdges(t *testing.T) {
	type tc struct {
		name    string
		mutate  func(s *state)
		req     *authorizev1.AuthorizeRequest
		want    *authorizev1.AuthorizeResponse
		wantErr error
	}
	key := &authorizev1.Credentials{ApiKey: keyAlice}
	cases := []tc{
		{name: "unknown-route", req: &authorizev1.AuthorizeRequest{Route: "nope", Credentials: key, PublicBaseUrl: base},
			want: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_NOT_FOUND, Principal: "alice", KeyPrefix: "mcpg_ali", KeyId: keyIDOf("mcpg_ali"), Reason: authorize.ReasonUnknownRoute, UnknownRoute: true}},
		{name: "unknown-route-no-credential", req: &authorizev1.AuthorizeRequest{Route: "nope", PublicBaseUrl: base},
			want: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{}, Reason: authorize.ReasonNoCredential, UnknownRoute: true}},
		{name: "no-route", req: &authorizev1.AuthorizeRequest{Credentials: key, PublicBaseUrl: base}, wantErr: authorize.ErrInvalidRequest},
		{name: "bad-base", req: &authorizev1.AuthorizeRequest{Route: "none", Credentials: key, PublicBaseUrl: "gw.example.com"}, wantErr: authorize.ErrInvalidRequest},
		{name: "passthrough-missing", req: &authorizev1.AuthorizeRequest{Route: "pass", Credentials: key, PublicBaseUrl: base},
			want: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Deny: &authorizev1.Deny{},
				Principal: "alice", KeyPrefix: "mcpg_ali", KeyId: keyIDOf("mcpg_ali"), Reason: authorize.ReasonPassthroughMissing, RuleId: wire.RuleServerPassthrough}},
		{name: "passthrough-header-injection", req: &authorizev1.AuthorizeRequest{Route: "pass", PublicBaseUrl: base,
			Credentials: &authorizev1.Credentials{ApiKey: keyAlice, PassthroughAuthorization: "Bearer x\r\nX-Evil: 1"}},
			want: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Deny: &authorizev1.Deny{},
				Principal: "alice", KeyPrefix: "mcpg_ali", KeyId: keyIDOf("mcpg_ali"), Reason: authorize.ReasonPassthroughInvalid, RuleId: wire.RuleServerPassthrough}},
		{name: "static-auth-value-missing", mutate: func(s *state) { s.servers["apikey"].Secrets.AuthValue = "" },
			req: &authorizev1.AuthorizeRequest{Route: "apikey", Credentials: key, PublicBaseUrl: base}, wantErr: authorize.ErrMisconfigured},
		{name: "oauth2-without-flow", mutate: func(s *state) { s.servers["cc"].Def.Oauth2Flow = 0 },
			req: &authorizev1.AuthorizeRequest{Route: "cc", Credentials: key, PublicBaseUrl: base}, wantErr: authorize.ErrMisconfigured},
		{name: "unknown-auth-type", mutate: func(s *state) { s.servers["none"].Def.AuthType = 99 },
			req: &authorizev1.AuthorizeRequest{Route: "none", Credentials: key, PublicBaseUrl: base}, wantErr: authorize.ErrMisconfigured},
		{name: "static-authorization-loses-to-mode", mutate: func(s *state) {
			s.servers["bearer"].Secrets.StaticHeaders = map[string]string{"authorization": "Bearer static", "X-B": "b", "X-A": "a"}
			s.servers["bearer"].Def.AllowedTools, s.servers["bearer"].Def.DisallowedTools = nil, nil
		}, req: &authorizev1.AuthorizeRequest{Route: "bearer", Credentials: key, PublicBaseUrl: base, JsonrpcMethod: "tools/call", ToolName: "anything"},
			want: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_ALLOW, Allow: &authorizev1.Allow{
				UpstreamUrl: "https://upstream.example/bearer", UpstreamHeaders: hdr("Authorization", "Bearer s3cret", "X-A", "a", "X-B", "b")},
				Principal: "alice", KeyPrefix: "mcpg_ali", KeyId: keyIDOf("mcpg_ali"), Reason: authorize.ReasonAllowed}},
		{name: "static-authorization-on-none", mutate: func(s *state) {
			s.servers["none"].Secrets.StaticHeaders = map[string]string{"Authorization": "Bearer static"}
		}, req: &authorizev1.AuthorizeRequest{Route: "none", Credentials: key, PublicBaseUrl: base},
			want: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_ALLOW, Allow: &authorizev1.Allow{
				UpstreamUrl: "https://upstream.example/none", UpstreamHeaders: hdr("Authorization", "Bearer static"),
				AllowedTools: []string{"search", "delete"}, DisallowedTools: []string{"delete"}},
				Principal: "alice", KeyPrefix: "mcpg_ali", KeyId: keyIDOf("mcpg_ali"), Reason: authorize.ReasonAllowed}},
		{name: "token-without-expiry", mutate: func(s *state) { s.tokens[store.HashKey("tok-alice-none")].ExpireTime = nil },
			req: &authorizev1.AuthorizeRequest{Route: "none", Credentials: &authorizev1.Credentials{BearerToken: "tok-alice-none"}, PublicBaseUrl: base},
			want: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{
				Error: "invalid_token", ErrorDescription: authorize.DescInvalidCredential},
				Reason: authorize.ReasonExpiredToken}},
		{name: "grant-without-token", mutate: func(s *state) {
			s.addGrant("alice", "Gmail", vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, "", now.Add(time.Hour))
		}, req: &authorizev1.AuthorizeRequest{Route: "Gmail", Credentials: key, PublicBaseUrl: base},
			want: &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{
				Scopes: []string{"mail.read", "mail.send"}},
				Principal: "alice", KeyPrefix: "mcpg_ali", KeyId: keyIDOf("mcpg_ali"), Reason: authorize.ReasonGrantUnusable}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := matrixState()
			if c.mutate != nil {
				c.mutate(s)
			}
			a := newAuthorizer(s, withClock(clock), withMachineTokens(fixedMachine("minted")))
			got, err := a.Authorize(t.Context(), c.req)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, c.want) {
				t.Errorf("got %s\nwant %s", protojson.Format(got), protojson.Format(c.want))
			}
		})
	}
}

func BenchmarkAuthorize(b *testing.B) {
	s := matrixState()
	s.addGrant("alice", "Gmail", vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, "grant", now.Add(time.Hour))
	a := newAuthorizer(s, withClock(clock), withMachineTokens(fixedMachine("minted")))
	for _, c := range []struct {
		name, route string
		creds       *authorizev1.Credentials
	}{
		{"bearer", "bearer", &authorizev1.Credentials{ApiKey: keyAlice}},
		{"Gmail", "Gmail", &authorizev1.Credentials{ApiKey: keyAlice}},
		// A gateway access token: audience and source key checked too.
		{"bearer-token", "bearer", &authorizev1.Credentials{BearerToken: "tok-alice-bearer"}},
	} {
		req := &authorizev1.AuthorizeRequest{Route: c.route, Credentials: c.creds,
			HttpMethod: "POST", JsonrpcMethod: "tools/call", ToolName: "search", PublicBaseUrl: base}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := a.Authorize(context.Background(), req)
					if err != nil || resp.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
						b.Fatal(resp, err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// TestAuthorizeProtocolVersion: the server's protocol_version setting
// reaches the data plane in Allow.upstream_protocol_version; unset is auto.
func TestAuthorizeProtocolVersion(t *testing.T) {
	for _, v := range []string{"", "2025-11-25", "2026-07-28"} {
		s := matrixState()
		s.servers["none"].Def.ProtocolVersion = v
		a := newAuthorizer(s, withClock(clock), withMachineTokens(fixedMachine("minted")))
		got, err := a.Authorize(t.Context(), &authorizev1.AuthorizeRequest{Route: "none", Credentials: &authorizev1.Credentials{ApiKey: keyAlice}, PublicBaseUrl: base})
		if err != nil {
			t.Fatal(err)
		}
		if got.GetDecision() != authorizev1.Decision_DECISION_ALLOW || got.GetAllow().GetUpstreamProtocolVersion() != v {
			t.Errorf("%q: %s", v, protojson.Format(got))
		}
	}
}
