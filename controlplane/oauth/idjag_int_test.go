package oauth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/internal/idjagtest"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// idjagEnv is newEnv with identity providers: corp (trusted for ID-JAGs,
// example.com only, creates principals), strict (trusted, creates nobody),
// untrusted (a provider people sign in with, not trusted for ID-JAGs), a
// registered public client allowed the jwt-bearer grant, and the audit log.
type idjagEnv struct {
	*env
	corp, strict, untrusted *idjagtest.IdP
	client                  string
	audit                   *syncBuffer
}

func newIDJAGEnv(t *testing.T) *idjagEnv {
	t.Helper()
	a := &syncBuffer{}
	e := &idjagEnv{audit: a}
	e.env = newEnv(t, func(c *oauth.Config) { c.Audit = audit.New(a) })
	e.corp, e.strict, e.untrusted = idjagtest.Start(t), idjagtest.Start(t), idjagtest.Start(t)
	e.putIdP(&configv1.IdentityProvider{Name: "corp", Issuer: e.corp.Issuer, TrustIdJag: true, AllowedDomains: []string{"example.com"}, CreatePrincipals: true})
	e.putIdP(&configv1.IdentityProvider{Name: "strict", Issuer: e.strict.Issuer, TrustIdJag: true, PrincipalClaim: "sub"})
	e.putIdP(&configv1.IdentityProvider{Name: "untrusted", Issuer: e.untrusted.Issuer, CreatePrincipals: true})
	m := e.registerClient(`{"redirect_uris":["` + loopbackCB + `"],"token_endpoint_auth_method":"none",` +
		`"grant_types":["authorization_code","` + oauth.GrantJWTBearer + `"],"client_name":"agent"}`)
	e.client = m["client_id"].(string)
	return e
}

func (e *idjagEnv) putIdP(p *configv1.IdentityProvider) {
	e.t.Helper()
	rev, err := e.st.PutIdentityProvider(e.t.Context(), p, "", 0)
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(rev)
}

// grant is a valid ID-JAG request of corp for alice@example.com on GitHub.
func (e *idjagEnv) grant() idjagtest.Grant {
	return idjagtest.Grant{Subject: "00u1", Email: "alice@example.com", Audience: e.pub, ClientID: e.client, Resource: e.pub + "/GitHub/mcp"}
}

func (e *idjagEnv) redeem(assertion string) response {
	e.t.Helper()
	return call(e.t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{
		"grant_type": {oauth.GrantJWTBearer}, "assertion": {assertion}, "client_id": {e.client},
	}.Encode())
}

// wantBody checks status and the exact JSON error body.
func wantBody(t *testing.T, r response, status int, code, desc string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if got, want := r.json(t), map[string]any{"error": code, "error_description": desc}; !maps.Equal(got, want) {
		t.Errorf("body %s, want %v", r.body, want)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
	}
}

// TestIDJAGBad: every refused ID-JAG is a 400 invalid_grant (or
// invalid_request / invalid_scope for a missing parameter or too wide a
// scope) with its fixed description; none is a 500, none issues a token.
func TestIDJAGBad(t *testing.T) {
	e := newIDJAGEnv(t)
	foreign, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	key, kid := e.corp.SigningKey()
	const (
		descSig       = "the assertion's signature is invalid"
		descKID       = "the assertion's signing key is unknown to its issuer"
		descTyp       = "the assertion is not an ID-JAG (typ must be oauth-id-jag+jwt)"
		descAud       = "the assertion is not for this authorization server (aud)"
		descResource  = "the assertion's resource is not a route of this gateway"
		descClient    = "the assertion was issued to another client (client_id)"
		descTime      = "the assertion is expired or not yet valid"
		descReused    = "the assertion was already used"
		descIssuer    = "the assertion's issuer is not a trusted identity provider"
		descPrincipal = "the person is not allowed to use this gateway"
		descMalformed = "the assertion is not a well-formed signed JWT"
		descJTI       = "the assertion has no jti"
	)
	with := func(mod func(*idjagtest.Grant)) idjagtest.Grant { g := e.grant(); mod(&g); return g }
	now := time.Now()
	for _, p := range []*configv1.Principal{
		{Name: "carol", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, DisplayName: "carol@elsewhere.example", Servers: []string{"*"}},
		{Name: "ci", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT, Servers: []string{"*"}},
	} {
		rev, err := e.st.PutPrincipal(t.Context(), p, 0)
		if err != nil {
			t.Fatal(err)
		}
		e.wait(rev)
	}
	for _, tc := range []struct {
		name, assertion string
		code, desc      string
	}{
		{"bad signature", idjagtest.Sign(foreign, kid, idjagtest.Typ, e.corp.Claims(e.grant())), "invalid_grant", descSig},
		{"unknown kid", idjagtest.Sign(foreign, "key-unknown", idjagtest.Typ, e.corp.Claims(e.grant())), "invalid_grant", descKID},
		{"wrong typ", idjagtest.Sign(key, kid, "JWT", e.corp.Claims(e.grant())), "invalid_grant", descTyp},
		{"no typ", idjagtest.Sign(key, kid, "", e.corp.Claims(e.grant())), "invalid_grant", descTyp},
		{"wrong aud", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Audience = "https://other.example" })), "invalid_grant", descAud},
		{"aud of the route, not the issuer", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Audience = e.pub + "/GitHub/mcp" })), "invalid_grant", descAud},
		{"unknown route", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Resource = e.pub + "/Nope/mcp" })), "invalid_grant", descResource},
		{"route at another public URL", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Resource = "https://other.example/GitHub/mcp" })), "invalid_grant", descResource},
		{"missing resource", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Extra = map[string]any{"resource": nil} })), "invalid_grant", descResource},
		{"resource not a string", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Extra = map[string]any{"resource": []string{e.pub + "/GitHub/mcp"}} })), "invalid_grant", descResource},
		{"client_id mismatch", e.corp.Issue(with(func(g *idjagtest.Grant) { g.ClientID = "another-client" })), "invalid_grant", descClient},
		{"missing client_id", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Extra = map[string]any{"client_id": nil} })), "invalid_grant", descClient},
		{"expired", e.corp.Issue(with(func(g *idjagtest.Grant) { g.IssuedAt = now.Add(-10 * time.Minute) })), "invalid_grant", descTime},
		{"not yet valid", e.corp.Issue(with(func(g *idjagtest.Grant) { g.IssuedAt = now.Add(10 * time.Minute) })), "invalid_grant", descTime},
		{"lives too long", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Lifetime = 2 * time.Hour })), "invalid_grant", descTime},
		{"no exp", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Extra = map[string]any{"exp": nil} })), "invalid_grant", descTime},
		{"untrusted issuer", e.untrusted.Issue(e.grant()), "invalid_grant", descIssuer},
		{"unconfigured issuer", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Extra = map[string]any{"iss": "https://evil.example"} })), "invalid_grant", descIssuer},
		{"disallowed domain", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Email = "eve@evil.example" })), "invalid_grant", descPrincipal},
		{"no email where domains are restricted", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Email = "" })), "invalid_grant", descPrincipal},
		{"unknown person, no just-in-time creation", e.strict.Issue(with(func(g *idjagtest.Grant) { g.Subject = "nobody" })), "invalid_grant", descPrincipal},
		// As at an IdP sign-in: a principal whose display_name is another
		// claim, or a service account, is never the asserted person.
		{"principal of another claim", e.strict.Issue(with(func(g *idjagtest.Grant) { g.Subject = "carol" })), "invalid_grant", descPrincipal},
		{"service account", e.strict.Issue(with(func(g *idjagtest.Grant) { g.Subject = "ci" })), "invalid_grant", descPrincipal},
		{"no jti", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Extra = map[string]any{"jti": nil} })), "invalid_grant", descJTI},
		{"scope beyond the route's", e.corp.Issue(with(func(g *idjagtest.Grant) { g.Scope = "repo admin" })), "invalid_scope", "the assertion's scope exceeds the route's scopes"},
		{"not a JWT", "not-a-jwt", "invalid_grant", descMalformed},
		{"unsigned (alg none)", "eyJhbGciOiJub25lIiwidHlwIjoib2F1dGgtaWQtamFnK2p3dCJ9.eyJpc3MiOiJ4In0.", "invalid_grant", descMalformed},
		{"oversized", strings.Repeat("a", 9<<10), "invalid_grant", descMalformed},
		{"missing assertion", "", "invalid_request", "assertion is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantBody(t, e.redeem(tc.assertion), http.StatusBadRequest, tc.code, tc.desc)
		})
	}
	if n := e.count("accesstokens"); n != 0 {
		t.Errorf("%d access tokens issued for refused assertions", n)
	}

	t.Run("reused jti", func(t *testing.T) {
		a := e.corp.Issue(e.grant())
		if r := e.redeem(a); r.status != http.StatusOK {
			t.Fatalf("first use: %d %s", r.status, r.body)
		}
		wantBody(t, e.redeem(a), http.StatusBadRequest, "invalid_grant", descReused)
		// Another assertion of the issuer with a used jti is refused too.
		if r := e.redeem(e.corp.Issue(with(func(g *idjagtest.Grant) { g.JTI = "jti-1" }))); r.status != http.StatusOK {
			t.Fatalf("first jti-1: %d %s", r.status, r.body)
		}
		wantBody(t, e.redeem(e.corp.Issue(with(func(g *idjagtest.Grant) { g.JTI = "jti-1"; g.Subject = "00u2" }))), http.StatusBadRequest, "invalid_grant", descReused)
	})

	t.Run("identity provider down", func(t *testing.T) {
		down := idjagtest.Start(t)
		ts := httptest.NewServer(http.NotFoundHandler())
		ts.Close()
		// The issuer claim names a configured, trusted provider whose
		// discovery cannot be fetched.
		down.Issuer = ts.URL
		e.putIdP(&configv1.IdentityProvider{Name: "down", Issuer: ts.URL, TrustIdJag: true, CreatePrincipals: true})
		wantBody(t, e.redeem(down.Issue(e.grant())), http.StatusServiceUnavailable, "temporarily_unavailable",
			"the identity provider could not be reached; try again in a moment")
	})
}

// TestIDJAGGrant: a valid ID-JAG yields an access token for its route and
// no refresh token, from the identity provider as its source (no API key),
// for a principal created just in time (corp) or an existing one (strict,
// by sub); the grant is audited; a rotated IdP key is fetched again.
func TestIDJAGGrant(t *testing.T) {
	e := newIDJAGEnv(t)
	r := e.redeem(e.corp.Issue(e.grant()))
	if r.status != http.StatusOK {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	body := r.json(t)
	if body["token_type"] != "Bearer" || body["expires_in"] != float64(3600) || body["scope"] != "repo read:org" {
		t.Errorf("body %s", r.body)
	}
	if _, ok := body["refresh_token"]; ok {
		t.Errorf("refresh token issued: %s", r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
	}
	tok := body["access_token"].(string)
	if !strings.HasPrefix(tok, oauth.AccessTokenPrefix) {
		t.Fatalf("token %q", tok)
	}
	rec, ok := e.accessRecord(tok)
	if !ok {
		t.Fatal("no access token record")
	}
	p, ok := e.st.Principal("alice_example-com")
	if !ok || p.GetUid() == "" || len(p.GetServers()) != 0 || p.GetKind() != configv1.PrincipalKind_PRINCIPAL_KIND_USER {
		t.Fatalf("just-in-time principal %v", p)
	}
	if rec.GetPrincipal() != "alice_example-com" || rec.GetPrincipalUid() != p.GetUid() || rec.GetRoute() != "GitHub" ||
		rec.GetIdp() != "corp" || rec.GetKeyId() != "" || rec.GetClientId() != e.client || rec.GetAudience() != e.pub+"/GitHub/mcp" {
		t.Errorf("token record %v", rec)
	}
	line := e.audit.String()
	for _, want := range []string{`"principal":"alice_example-com"`, `"procedure":"oauth/token ` + oauth.GrantJWTBearer + `"`, `idp:corp server:GitHub client:` + e.client, `"code":"ok"`} {
		if !strings.Contains(line, want) {
			t.Errorf("audit %s lacks %s", line, want)
		}
	}

	t.Run("existing principal by sub", func(t *testing.T) {
		g := e.grant()
		g.Subject, g.Email, g.Scope = "alice", "", "repo"
		r := e.redeem(e.strict.Issue(g))
		if r.status != http.StatusOK {
			t.Fatalf("token: %d %s", r.status, r.body)
		}
		rec, _ := e.accessRecord(r.json(t)["access_token"].(string))
		alice, _ := e.st.Principal("alice")
		if rec.GetPrincipal() != "alice" || rec.GetPrincipalUid() != alice.GetUid() || rec.GetIdp() != "strict" || strings.Join(rec.GetScopes(), " ") != "repo" {
			t.Errorf("token record %v", rec)
		}
	})

	t.Run("key rotation", func(t *testing.T) {
		before := e.corp.JWKSFetches()
		e.corp.Rotate()
		// Within the refetch interval an unknown kid is refused without a
		// fetch; after it the key set is fetched again.
		wantBody(t, e.redeem(e.corp.Issue(e.grant())), http.StatusBadRequest, "invalid_grant", "the assertion's signing key is unknown to its issuer")
		if n := e.corp.JWKSFetches(); n != before {
			t.Errorf("%d fetches within the refetch interval", n-before)
		}
		e.clock.Advance(31 * time.Second)
		if r := e.redeem(e.corp.Issue(e.grant())); r.status != http.StatusOK {
			t.Fatalf("after rotation: %d %s", r.status, r.body)
		}
		if n := e.corp.JWKSFetches(); n != before+1 {
			t.Errorf("%d fetches after rotation, want 1", n-before)
		}
	})

	t.Run("client must register the grant", func(t *testing.T) {
		other := e.publicClient("no-jwt-bearer")
		r := call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{
			"grant_type": {oauth.GrantJWTBearer}, "assertion": {e.corp.Issue(e.grant())}, "client_id": {other},
		}.Encode())
		wantBody(t, r, http.StatusBadRequest, "unauthorized_client", "the client did not register this grant type")
	})
}
