package oauth_test

import (
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/internal/oidcdemo"
)

// Fixed messages of the IdP sign-in pages (the package's, repeated: a test
// asserts exact bodies).
const (
	msgIdPUnknown   = "This identity provider is not configured on this gateway."
	msgIdPDown      = "The identity provider is not reachable right now. Try again in a moment, or sign in another way."
	msgIdPExpired   = "This sign-in has expired or was already used. Start again from the sign-in page."
	msgIdPRefused   = "The identity provider did not sign you in."
	msgIdPInvalid   = "The identity provider&#39;s answer could not be verified. Start again from the sign-in page."
	msgIdPTokenOld  = "The identity provider&#39;s answer has expired. Start again from the sign-in page."
	msgIdPDomain    = "People from your email domain may not sign in to this gateway."
	msgIdPNotMember = "You are not registered with this gateway. Ask an administrator to add you."
)

// idpEnv is env plus the demo identity provider, whose token answers a
// test can tamper with.
type idpEnv struct {
	*env
	idp    *oidcdemo.Provider
	tamper tamper
}

// tamper is how the IdP's token answers are changed: nil (not at all),
// "badsig" or a func(claims map[string]any).
type tamper struct {
	mu sync.Mutex
	v  any
}

func (t *tamper) Store(v any) { t.mu.Lock(); t.v = v; t.mu.Unlock() }
func (t *tamper) Load() any   { t.mu.Lock(); defer t.mu.Unlock(); return t.v }

func newIdPEnv(t *testing.T, mod func(*oauth.Config)) *idpEnv {
	t.Helper()
	e := &idpEnv{env: newEnv(t, func(c *oauth.Config) {
		c.SigninPerMinute, c.AuthorizePerMinute = 1000, 1000
		if mod != nil {
			mod(c)
		}
	})}
	p, err := oidcdemo.Start(oidcdemo.Config{
		Clients: []oidcdemo.Client{{ID: "gw", Secret: "gw-secret", RedirectURIs: []string{e.pub + wire.IdPCallbackPath}}},
		Wrap:    e.wrap,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	e.idp = p
	e.putIdP(&configv1.IdentityProvider{Name: "demo", DisplayName: "Demo IdP", Issuer: p.Issuer(), ClientId: "gw", CreatePrincipals: true})
	return e
}

func (e *idpEnv) putIdP(def *configv1.IdentityProvider) {
	e.t.Helper()
	rev, err := e.st.PutIdentityProvider(e.t.Context(), def, "gw-secret", 0)
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(rev)
}

// wrap rewrites the ID token of token answers as the current tamper says:
// "badsig" breaks its signature; a func changes its claims and re-signs it
// with the provider's own key.
func (e *idpEnv) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mode := e.tamper.Load()
		if r.URL.Path != "/oauth/token" || mode == nil {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var body map[string]any
		if json.Unmarshal(rec.Body.Bytes(), &body) != nil || body["id_token"] == nil {
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		tok := body["id_token"].(string)
		parts := strings.Split(tok, ".")
		switch m := mode.(type) {
		case string: // badsig
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sig[0] ^= 0xff
			parts[2] = base64.RawURLEncoding.EncodeToString(sig)
			body["id_token"] = strings.Join(parts, ".")
		case func(map[string]any):
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var claims map[string]any
			_ = json.Unmarshal(payload, &claims)
			m(claims)
			key, err := e.idp.SigningKey(r.Context())
			if err != nil {
				panic(err)
			}
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: key.SignatureAlgorithm(), Key: jose.JSONWebKey{Key: key.Key(), KeyID: key.ID()}}, (&jose.SignerOptions{}).WithType("JWT"))
			if err != nil {
				panic(err)
			}
			b, _ := json.Marshal(claims)
			jws, err := signer.Sign(b)
			if err != nil {
				panic(err)
			}
			body["id_token"], _ = jws.CompactSerialize()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.Code)
		_ = json.NewEncoder(w).Encode(body)
	})
}

var idpLink = regexp.MustCompile(`<a class="idp" href="([^"]*)">Sign in with ([^<]*)</a>`)

// idpLinks lists the sign-in page's provider buttons (display name → href).
func idpLinks(t *testing.T, page string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range idpLink.FindAllStringSubmatch(page, -1) {
		out[html.UnescapeString(m[2])] = html.UnescapeString(m[1])
	}
	return out
}

// idpLogin follows the gateway's redirect to the demo IdP, signs in as
// user and returns the IdP's redirect back to the gateway callback.
func (e *idpEnv) idpLogin(b *browser, start response, user string) *url.URL {
	e.t.Helper()
	if start.status != http.StatusFound {
		e.t.Fatalf("idp start: %d %s", start.status, start.body)
	}
	to := start.location(e.t)
	if !strings.HasPrefix(to.String(), e.idp.Issuer()+"/") {
		e.t.Fatalf("idp start redirects to %s", to)
	}
	q := to.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" || q.Get("state") == "" || q.Get("resource") != "" {
		e.t.Fatalf("idp authorization request lacks PKCE, nonce or state, or sends resource: %s", to)
	}
	r := b.get(to.String())
	if r.status != http.StatusFound {
		e.t.Fatalf("idp authorize: %d %s", r.status, r.body)
	}
	login := r.location(e.t)
	page := b.get(e.idp.Issuer() + login.RequestURI())
	if page.status != http.StatusOK {
		e.t.Fatalf("idp login page: %d %s", page.status, page.body)
	}
	r = b.post(e.idp.Issuer()+"/login", url.Values{"id": {formValue(e.t, page.body, "id")}, "username": {user}, "password": {oidcdemo.Password}})
	if r.status != http.StatusFound {
		e.t.Fatalf("idp login: %d %s", r.status, r.body)
	}
	cb := r.location(e.t)
	if !cb.IsAbs() {
		cb = mustURL(e.t, e.idp.Issuer()+cb.String())
	}
	r = b.get(cb.String())
	if r.status != http.StatusFound {
		e.t.Fatalf("idp callback: %d %s", r.status, r.body)
	}
	back := r.location(e.t)
	if !strings.HasPrefix(back.String(), e.pub+wire.IdPCallbackPath+"?") {
		e.t.Fatalf("idp sends back to %s", back)
	}
	return back
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// startIdP opens the sign-in page of an authorization request and follows
// the provider button named display.
func (e *idpEnv) startIdP(b *browser, q url.Values, display string) response {
	e.t.Helper()
	r := b.get(e.authorizeURL(q))
	if r.status != http.StatusFound {
		e.t.Fatalf("authorize: %d %s", r.status, r.body)
	}
	page := b.get(r.location(e.t).String())
	if page.status != http.StatusOK {
		e.t.Fatalf("signin page: %d %s", page.status, page.body)
	}
	href, ok := idpLinks(e.t, page.body)[display]
	if !ok {
		e.t.Fatalf("no %q button on the sign-in page:\n%s", display, page.body)
	}
	return b.get(e.pub + "/" + href)
}

// TestIdP_SignInConsentToken: an authorization whose person signs in with
// the demo IdP ends in gateway tokens whose source is the IdP, the
// principal is created just in time with the asserted groups, and the
// sign-in page names the client and shows the provider.
func TestIdP_SignInConsentToken(t *testing.T) {
	e := newIdPEnv(t, nil)
	// Ada is known to the gateway (an admin created her for SSO: her
	// display name is her email); Bob is not and is created at sign-in.
	rev, err := e.st.PutPrincipal(t.Context(), &configv1.Principal{Name: "ada_demo-example", DisplayName: oidcdemo.Ada,
		Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: []string{"*"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	clientID := e.publicClient("Claude Code")
	b := newBrowser(t)

	r := b.get(e.authorizeURL(e.authQuery(clientID)))
	page := b.get(r.location(t).String())
	if page.status != http.StatusOK || !strings.Contains(page.body, `<strong class="client">Claude Code</strong>`) ||
		!strings.Contains(page.body, `name="key"`) {
		t.Fatalf("sign-in page: %d %s", page.status, page.body)
	}
	start := b.get(e.pub + "/" + idpLinks(t, page.body)["Demo IdP"])
	cb := e.idpLogin(b, start, oidcdemo.Ada)
	r = b.get(cb.String())
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), e.pub+"/consent?request=") {
		t.Fatalf("callback: %d %s %s", r.status, r.header.Get("Location"), r.body)
	}
	if !strings.Contains(strings.Join(r.header["Set-Cookie"], "\n"), "mcpgate_session=") {
		t.Fatalf("callback set no session cookie: %v", r.header["Set-Cookie"])
	}
	consent := b.get(r.location(t).String())
	if consent.status != http.StatusOK {
		t.Fatalf("consent page: %d %s", consent.status, consent.body)
	}
	r = e.approve(b, consent, "approve")
	if r.status != http.StatusFound {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	loc := r.location(t)
	if strings.HasPrefix(loc.String(), e.upURL) { // the person's own upstream grant
		cb := e.upstreamApprove(b, loc, "ada")
		r = b.get(cb.String())
		if r.status != http.StatusFound {
			t.Fatalf("upstream callback: %d %s", r.status, r.body)
		}
		loc = r.location(t)
	}
	tok := e.exchange(clientID, loc.Query().Get("code"), nil)
	if tok.status != http.StatusOK {
		t.Fatalf("token: %d %s", tok.status, tok.body)
	}
	at := tok.json(t)["access_token"].(string)
	rec, ok := e.accessRecord(at)
	if !ok || rec.GetIdp() != "demo" || rec.GetKeyId() != "" || rec.GetPrincipal() != "ada_demo-example" || rec.GetPrincipalUid() == "" {
		t.Fatalf("access token record: %v", rec)
	}
	p, _ := e.st.Principal("ada_demo-example")
	if len(p.GetAssertedGroups()) != 1 || p.GetAssertedGroups()[0].GetGroup() != "release" || p.GetAssertedGroups()[0].GetIdentityProvider() != "demo" {
		t.Fatalf("asserted groups: %v", p.GetAssertedGroups())
	}
	// The sign-in kept the verified ID token, sealed, as the subject token
	// of token_exchange upstreams.
	irec, itok, err := e.st.IdPToken(t.Context(), "ada_demo-example")
	if err != nil || irec.GetIdentityProvider() != "demo" || irec.GetPrincipalUid() != p.GetUid() ||
		itok.GetSubjectTokenType() != grants.TokenTypeIDToken || strings.Count(itok.GetSubjectToken(), ".") != 2 ||
		!itok.GetExpiry().AsTime().After(time.Now()) {
		t.Fatalf("kept IdP token: %v %v %v", irec, itok, err)
	}
	// The refresh grant works while the IdP is configured...
	rt := tok.json(t)["refresh_token"].(string)
	refresh := func() response {
		return call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {rt}, "client_id": {clientID}}.Encode())
	}
	r = refresh()
	if r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	rt = r.json(t)["refresh_token"].(string)
	// ...and ends with it: deleting the provider ends what came from it.
	drev, err := e.st.DeleteIdentityProvider(t.Context(), "demo", 0)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(drev)
	if r = refresh(); r.status != http.StatusBadRequest || r.json(t)["error"] != "invalid_grant" {
		t.Fatalf("refresh after the IdP was deleted: %d %s", r.status, r.body)
	}

	// Bob, unknown, is created just in time with his group.
	e.putIdP(&configv1.IdentityProvider{Name: "demo", DisplayName: "Demo IdP", Issuer: e.idp.Issuer(), ClientId: "gw", CreatePrincipals: true})
	b2 := newBrowser(t)
	cb = e.idpLogin(b2, e.startIdP(b2, e.authQuery(clientID), "Demo IdP"), oidcdemo.Bob)
	if r = b2.get(cb.String()); r.status != http.StatusSeeOther {
		t.Fatalf("bob callback: %d %s", r.status, r.body)
	}
	bp, ok := e.st.Principal("bob_demo-example")
	if !ok || bp.GetDisplayName() != oidcdemo.Bob || bp.GetKind() != configv1.PrincipalKind_PRINCIPAL_KIND_USER ||
		bp.GetRole() != configv1.Role_ROLE_MEMBER || len(bp.GetServers()) != 0 || bp.GetUid() == "" ||
		len(bp.GetAssertedGroups()) != 1 || bp.GetAssertedGroups()[0].GetGroup() != "readers" {
		t.Fatalf("bob: %v", bp)
	}
}

// TestIdP_BadAnswers: every bad answer of an identity provider is a fixed
// page, never a 500, and signs nobody in.
func TestIdP_BadAnswers(t *testing.T) {
	e := newIdPEnv(t, nil)
	e.putIdP(&configv1.IdentityProvider{Name: "strict", DisplayName: "Strict", Issuer: e.idp.Issuer(), ClientId: "gw", CreatePrincipals: true, AllowedDomains: []string{"corp.example"}})
	e.putIdP(&configv1.IdentityProvider{Name: "closed", DisplayName: "Closed", Issuer: e.idp.Issuer(), ClientId: "gw"})
	e.putIdP(&configv1.IdentityProvider{Name: "down", DisplayName: "Down", Issuer: "http://127.0.0.1:1", ClientId: "gw"})
	clientID := e.publicClient("Claude Code")
	set := func(f func(map[string]any)) any { return f }
	cases := []struct {
		name    string
		idp     string
		tamper  any
		status  int
		message string
	}{
		{"bad signature", "Demo IdP", "badsig", http.StatusBadRequest, msgIdPInvalid},
		{"wrong audience", "Demo IdP", set(func(c map[string]any) { c["aud"] = []string{"someone-else"} }), http.StatusBadRequest, msgIdPInvalid},
		{"expired", "Demo IdP", set(func(c map[string]any) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		}), http.StatusBadRequest, msgIdPTokenOld},
		{"other nonce", "Demo IdP", set(func(c map[string]any) { c["nonce"] = "replayed-nonce" }), http.StatusBadRequest, msgIdPInvalid},
		{"unconfigured issuer", "Demo IdP", set(func(c map[string]any) { c["iss"] = "https://idp.evil.example" }), http.StatusBadRequest, msgIdPInvalid},
		{"unverified email", "Demo IdP", set(func(c map[string]any) { c["email_verified"] = false }), http.StatusForbidden, "The identity provider did not tell the gateway who you are (no usable, verified principal claim)."},
		{"disallowed domain", "Strict", nil, http.StatusForbidden, msgIdPDomain},
		{"unknown person, no just-in-time creation", "Closed", nil, http.StatusForbidden, msgIdPNotMember},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tamper != nil {
				e.tamper.Store(tc.tamper)
			}
			defer e.tamper.Store(func(map[string]any) {}) // re-signs unchanged: harmless
			b := newBrowser(t)
			cb := e.idpLogin(b, e.startIdP(b, e.authQuery(clientID), tc.idp), oidcdemo.Ada)
			r := b.get(cb.String())
			want := "<p class=\"error\">" + tc.message + "</p>"
			if r.status != tc.status || !strings.Contains(r.body, want) {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.status, want)
			}
			if strings.Contains(strings.Join(r.header["Set-Cookie"], "\n"), "mcpgate_session=") {
				t.Fatal("a session cookie was set")
			}
		})
	}

	t.Run("replayed callback", func(t *testing.T) {
		e.tamper.Store(func(map[string]any) {})
		b := newBrowser(t)
		cb := e.idpLogin(b, e.startIdP(b, e.authQuery(clientID), "Demo IdP"), oidcdemo.Ada)
		ck := b.c.Jar.Cookies(mustURL(t, e.pub))
		if r := b.get(cb.String()); r.status != http.StatusSeeOther {
			t.Fatalf("first callback: %d %s", r.status, r.body)
		}
		// The same answer with the same sign-in cookie, in a fresh browser.
		b2 := newBrowser(t)
		b2.c.Jar.SetCookies(mustURL(t, e.pub), ck)
		// The provider refuses its used code before the gateway's marker
		// is reached: a fixed 403, no session.
		r := b2.get(cb.String())
		if r.status != http.StatusForbidden || !strings.Contains(r.body, `<p class="error">`+msgIdPRefused+`</p>`) ||
			strings.Contains(strings.Join(r.header["Set-Cookie"], "\n"), "mcpgate_session=") {
			t.Fatalf("replay: %d %s", r.status, r.body)
		}
	})
	t.Run("replayed state with a fresh code", func(t *testing.T) {
		// The same authorization request (state, nonce, PKCE) run twice
		// at the provider gives two valid codes for one state: the second
		// callback finds the single-use marker of the first.
		b := newBrowser(t)
		start := e.startIdP(b, e.authQuery(clientID), "Demo IdP")
		cb1 := e.idpLogin(b, start, oidcdemo.Ada)
		cb2 := e.idpLogin(b, start, oidcdemo.Ada)
		ck := b.c.Jar.Cookies(mustURL(t, e.pub))
		if r := b.get(cb1.String()); r.status != http.StatusSeeOther {
			t.Fatalf("first callback: %d %s", r.status, r.body)
		}
		b2 := newBrowser(t)
		b2.c.Jar.SetCookies(mustURL(t, e.pub), ck)
		r := b2.get(cb2.String())
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, `<p class="error">`+msgIdPExpired+`</p>`) ||
			strings.Contains(strings.Join(r.header["Set-Cookie"], "\n"), "mcpgate_session=") {
			t.Fatalf("replayed state: %d %s", r.status, r.body)
		}
	})
	t.Run("state mismatch and no cookie", func(t *testing.T) {
		b := newBrowser(t)
		cb := e.idpLogin(b, e.startIdP(b, e.authQuery(clientID), "Demo IdP"), oidcdemo.Ada)
		q := cb.Query()
		q.Set("state", "forged")
		for name, u := range map[string]string{
			"state":     e.pub + wire.IdPCallbackPath + "?" + q.Encode(),
			"no cookie": cb.String(),
		} {
			bb := b
			if name == "no cookie" {
				bb = newBrowser(t)
			}
			r := bb.get(u)
			if r.status != http.StatusBadRequest || !strings.Contains(r.body, msgIdPExpired) {
				t.Fatalf("%s: %d %s", name, r.status, r.body)
			}
		}
	})
	t.Run("idp down", func(t *testing.T) {
		b := newBrowser(t)
		r := e.startIdP(b, e.authQuery(clientID), "Down")
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, msgIdPDown) {
			t.Fatalf("%d %s", r.status, r.body)
		}
		// The sign-in page says so now; the other providers are not affected.
		page := b.get(e.pub + "/signin?next=connections")
		if page.status != http.StatusOK || !strings.Contains(page.body, `<p class="warn">Down is not reachable right now. Try again in a moment, or sign in another way.</p>`) ||
			strings.Contains(page.body, "Demo IdP is not reachable") {
			t.Fatalf("sign-in page: %d %s", page.status, page.body)
		}
	})
	t.Run("unknown idp", func(t *testing.T) {
		r := newBrowser(t).get(e.pub + "/oauth/idp/start?idp=nope")
		if r.status != http.StatusNotFound || !strings.Contains(r.body, msgIdPUnknown) {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	t.Run("provider refuses", func(t *testing.T) {
		b := newBrowser(t)
		start := e.startIdP(b, e.authQuery(clientID), "Demo IdP")
		st := start.location(t).Query().Get("state")
		r := b.get(e.pub + wire.IdPCallbackPath + "?error=access_denied&state=" + url.QueryEscape(st))
		if r.status != http.StatusForbidden || !strings.Contains(r.body, msgIdPRefused) {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
	if strings.Contains(e.logs.String(), "gw-secret") {
		t.Fatal("the client secret reached the log")
	}
}

// TestIdP_KeySigninOff: with signin.api_key false the sign-in page has no
// key form and a posted key is refused; the provider buttons remain.
func TestIdP_KeySigninOff(t *testing.T) {
	e := newIdPEnv(t, func(c *oauth.Config) { c.KeySigninOff = true })
	b := newBrowser(t)
	page := b.get(e.pub + "/signin?next=connections")
	if page.status != http.StatusOK || strings.Contains(page.body, `name="key"`) || idpLinks(t, page.body)["Demo IdP"] == "" {
		t.Fatalf("sign-in page: %d %s", page.status, page.body)
	}
	r := b.post(e.pub+"/signin", url.Values{"key": {aliceKey}, "next": {"connections"}})
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "Signing in with an API key is switched off on this gateway.") {
		t.Fatalf("key sign-in: %d %s", r.status, r.body)
	}
	if strings.Contains(strings.Join(r.header["Set-Cookie"], "\n"), "mcpgate_session=") {
		t.Fatal("a session cookie was set")
	}
}

// The IdP callback is relayed by data planes.
func TestIdP_CallbackRelayed(t *testing.T) {
	if !wire.IsRelayPath(wire.IdPCallbackPath) || !wire.IsRelayPath("/oauth/idp/start") {
		t.Fatal("IdP paths are not relayed")
	}
}

// TestIdP_SigninPage_Chromium renders the sign-in page of an authorization
// request with two identity providers in headless Chromium: the client's
// name and both buttons are on the page (the screenshot is kept with
// MCPGATE_SCREENSHOT_DIR).
func TestIdP_SigninPage_Chromium(t *testing.T) {
	needChromium(t)
	e := newIdPEnv(t, nil)
	e.putIdP(&configv1.IdentityProvider{Name: "okta", DisplayName: "Okta Workforce", Issuer: "https://example.okta.com", ClientId: "0oa1"})
	id := e.publicClient("Screenshot Client")
	r := call(t, http.MethodGet, e.authorizeURL(e.authQuery(id)), nil, "")
	png, dom := chromium(t, r.location(t).String())
	for _, want := range []string{"Screenshot Client", "Sign in with Demo IdP", "Sign in with Okta Workforce", `name="key"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM lacks %q: %s", want, dom)
		}
	}
	if len(png) < 5000 {
		t.Errorf("screenshot of %d bytes is too small to show the page", len(png))
	}
}

// TestIdP_RefreshReassertsGroups: a gateway refresh of tokens signed in
// with an identity provider refreshes at the provider and records the
// groups it asserts now (a person removed from a group there loses it at
// the next refresh); without the provider's refresh token the family ends.
func TestIdP_RefreshReassertsGroups(t *testing.T) {
	e := newIdPEnv(t, nil)
	clientID := e.publicClient("Claude Code")
	rev, err := e.st.PutPrincipal(t.Context(), &configv1.Principal{Name: "ada_demo-example", DisplayName: oidcdemo.Ada,
		Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: []string{"GitHub"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	q := e.authQuery(clientID)
	q.Set("resource", e.pub+"/GitHub/mcp")
	q.Set("scope", "repo")
	b := newBrowser(t)
	cb := e.idpLogin(b, e.startIdP(b, q, "Demo IdP"), oidcdemo.Ada)
	r := b.get(cb.String())
	if r.status != http.StatusSeeOther {
		t.Fatalf("callback: %d %s", r.status, r.body)
	}
	r = e.approve(b, b.get(r.location(t).String()), "approve")
	if r.status != http.StatusFound {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	tok := e.exchange(clientID, r.location(t).Query().Get("code"), url.Values{"resource": {e.pub + "/GitHub/mcp"}})
	if tok.status != http.StatusOK {
		t.Fatalf("token: %d %s", tok.status, tok.body)
	}
	rt := tok.json(t)["refresh_token"].(string)
	groups := func() []string {
		p, _ := e.st.Principal("ada_demo-example")
		var out []string
		for _, a := range p.GetAssertedGroups() {
			out = append(out, a.GetIdentityProvider()+":"+a.GetGroup())
		}
		return out
	}
	if g := groups(); len(g) != 1 || g[0] != "demo:release" {
		t.Fatalf("groups after sign-in: %v", g)
	}
	refresh := func() response {
		return call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {rt}, "client_id": {clientID}}.Encode())
	}
	// Ada leaves release and joins readers at the provider.
	e.idp.SetGroups(oidcdemo.Ada, []string{"readers"})
	r = refresh()
	if r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	rt = r.json(t)["refresh_token"].(string)
	if g := groups(); len(g) != 1 || g[0] != "demo:readers" {
		t.Fatalf("groups after refresh: %v", g)
	}
	// No more provider grant: the next refresh is refused and ends the
	// family.
	if _, err := e.st.DeleteIdPGrant(t.Context(), "ada_demo-example", "demo", 0); err != nil {
		t.Fatal(err)
	}
	r = refresh()
	if r.status != http.StatusBadRequest || r.json(t)["error"] != "invalid_grant" ||
		r.json(t)["error_description"] != "the refresh token is invalid, expired or revoked" {
		t.Fatalf("refresh without a provider grant: %d %s", r.status, r.body)
	}
}
