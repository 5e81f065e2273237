package oauth_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/controlplane/oauth"
)

// Checklist E 39-41: errors before the redirect URI is trusted are pages.
func TestAuthorize_ErrorPages(t *testing.T) {
	e := newEnv(t, nil)
	c := e.publicClient("Test Client")
	cases := []struct {
		name string
		mod  func(url.Values)
	}{
		{"41 unknown client", func(q url.Values) { q.Set("client_id", "unknown") }},
		{"missing client", func(q url.Values) { q.Del("client_id") }},
		{"39 unregistered redirect", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }},
		{"40 dot segments", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1/cb/../evil") }},
		{"40 added query", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1/cb?x=1") }},
		{"40 other path", func(q url.Values) { q.Set("redirect_uri", "http://127.0.0.1/cb2") }},
		{"40 other loopback host", func(q url.Values) { q.Set("redirect_uri", "http://localhost/cb") }},
		{"40 https instead of http", func(q url.Values) { q.Set("redirect_uri", "https://127.0.0.1/cb") }},
		{"40 user info", func(q url.Values) { q.Set("redirect_uri", "http://evil@127.0.0.1/cb") }},
		{"missing redirect", func(q url.Values) { q.Del("redirect_uri") }},
		{"repeated redirect", func(q url.Values) { q.Add("redirect_uri", "https://evil.example/cb") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := e.authQuery(c)
			tc.mod(q)
			r := call(t, http.MethodGet, e.authorizeURL(q), nil, "")
			if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
				t.Fatalf("%d Location=%q", r.status, r.header.Get("Location"))
			}
			wantPageHeaders(t, r)
			if strings.Contains(r.body, "evil") {
				t.Errorf("the page reflects the request: %s", r.body)
			}
		})
	}
}

// Checklist E 42-50: errors after the redirect URI is trusted go back to
// the client with error, state and iss.
func TestAuthorize_RedirectedErrors(t *testing.T) {
	e := newEnv(t, nil)
	c := e.publicClient("Test Client")
	cases := []struct {
		name, code string
		mod        func(url.Values)
	}{
		{"42 no code_challenge", "invalid_request", func(q url.Values) { q.Del("code_challenge") }},
		{"43 plain", "invalid_request", func(q url.Values) { q.Set("code_challenge_method", "plain") }},
		{"43 no method", "invalid_request", func(q url.Values) { q.Del("code_challenge_method") }},
		{"short challenge", "invalid_request", func(q url.Values) { q.Set("code_challenge", "abc") }},
		{"44 other origin", "invalid_target", func(q url.Values) { q.Set("resource", "https://other.example/Gmail/mcp") }},
		{"44 route without /mcp", "invalid_target", func(q url.Values) { q.Set("resource", e.pub+"/Gmail") }},
		{"44 origin only", "invalid_target", func(q url.Values) { q.Set("resource", e.pub+"/") }},
		{"fragment", "invalid_target", func(q url.Values) { q.Set("resource", e.pub+"/Gmail/mcp#x") }},
		{"two resources", "invalid_target", func(q url.Values) { q.Add("resource", e.pub+"/GitHub/mcp") }},
		{"48 resource omitted", "invalid_target", func(q url.Values) { q.Del("resource") }},
		{"malformed scope", "invalid_scope", func(q url.Values) { q.Set("scope", "notes.read \"x") }},
		{"50 response_type token", "unsupported_response_type", func(q url.Values) { q.Set("response_type", "token") }},
		{"no response_type", "invalid_request", func(q url.Values) { q.Del("response_type") }},
		{"repeated scope", "invalid_request", func(q url.Values) { q.Add("scope", "notes.write") }},
	}
	// Whether the route exists and which scopes it offers is told only to
	// a signed-in principal (TestSec16AuthorizeRevealsNoRoutes).
	b := newBrowser(t)
	e.signIn(b, aliceKey)
	for _, tc := range []struct {
		name, code string
		mod        func(url.Values)
	}{
		{"44 unknown route", "access_denied", func(q url.Values) { q.Set("resource", e.pub+"/Unknown/mcp") }},
		{"49 unsupported scope", "invalid_scope", func(q url.Values) { q.Set("scope", "admin") }},
		{"49 other route's scope", "invalid_scope", func(q url.Values) { q.Set("scope", "notes.read repo") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := e.authQuery(c)
			tc.mod(q)
			wantRedirectError(t, e, b.get(e.authorizeURL(q)), tc.code)
		})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := e.authQuery(c)
			tc.mod(q)
			r := call(t, http.MethodGet, e.authorizeURL(q), nil, "")
			wantRedirectError(t, e, r, tc.code)
			if r.location(t).Query().Get("error_description") == "" {
				t.Errorf("no error_description")
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
			}
		})
	}
}

// Checklist E 35-38, 45-47, 51-52: sign-in, consent, approve and deny.
func TestAuthorize_Consent(t *testing.T) {
	e := newEnv(t, nil)
	c := e.publicClient("Visual Studio Code")
	b := newBrowser(t)

	t.Run("sign-in first", func(t *testing.T) {
		r := b.get(e.authorizeURL(e.authQuery(c)))
		if r.status != http.StatusFound {
			t.Fatalf("%d %s", r.status, r.body)
		}
		loc := r.location(t)
		if loc.Path != "/signin" || loc.Query().Get("request") == "" || !strings.HasPrefix(loc.String(), e.pub) {
			t.Fatalf("redirected to %s", loc)
		}
		page := b.get(loc.String())
		if page.status != http.StatusOK || !strings.Contains(page.body, `name="key"`) {
			t.Fatalf("%d %s", page.status, page.body)
		}
		wantPageHeaders(t, page)
		// A wrong key keeps the person on the page, without a cookie.
		bad := b.post(e.pub+"/signin", url.Values{"key": {"mcpg_wrong"}, "request": {loc.Query().Get("request")}})
		if bad.status != http.StatusForbidden || bad.header.Get("Set-Cookie") != "" || !strings.Contains(bad.body, "not valid") || strings.Contains(bad.body, "mcpg_wrong") {
			t.Fatalf("wrong key: %d %v %s", bad.status, bad.header, bad.body)
		}
		ok := b.post(e.pub+"/signin", url.Values{"key": {aliceKey}, "request": {formValue(t, page.body, "request")}})
		if ok.status != http.StatusSeeOther {
			t.Fatalf("%d %s", ok.status, ok.body)
		}
		ck := ok.header.Get("Set-Cookie")
		for _, want := range []string{"mcpgate_session=", "Path=/", "HttpOnly", "SameSite=Lax"} {
			if !strings.Contains(ck, want) {
				t.Errorf("Set-Cookie %q lacks %q", ck, want)
			}
		}
		if strings.Contains(ck, aliceKey) {
			t.Errorf("the cookie carries the key")
		}
		if l := ok.location(t); l.Path != "/consent" || l.Query().Get("request") != loc.Query().Get("request") {
			t.Errorf("after sign-in: %s", l)
		}
	})

	t.Run("35 consent page", func(t *testing.T) {
		r := e.consentPage(b, e.authQuery(c))
		wantPageHeaders(t, r)
		for _, want := range []string{"Visual Studio Code", "127.0.0.1", "notes.read", "Gmail", e.pub + "/Gmail/mcp", "alice", "Approve", "Deny"} {
			if !strings.Contains(r.body, want) {
				t.Errorf("consent page lacks %q", want)
			}
		}
		if strings.Contains(r.body, "notes.write") {
			t.Errorf("consent page lists a scope that was not requested")
		}
	})

	t.Run("37 deny", func(t *testing.T) {
		r := e.approve(b, e.consentPage(b, e.authQuery(c)), "deny")
		wantRedirectError(t, e, r, "access_denied")
	})

	t.Run("51 CSRF", func(t *testing.T) {
		page := e.consentPage(b, e.authQuery(c))
		req := formValue(t, page.body, "request")
		other := newBrowser(t)
		e.signIn(other, bobKey)
		otherPage := e.consentPage(other, e.authQuery(c))
		for name, form := range map[string]url.Values{
			"no token":              {"request": {req}, "action": {"approve"}},
			"another session token": {"request": {req}, "action": {"approve"}, "csrf": {formValue(t, otherPage.body, "csrf")}},
		} {
			r := b.post(e.pub+"/consent", form)
			if r.status != http.StatusForbidden || r.header.Get("Location") != "" {
				t.Errorf("%s: %d %s", name, r.status, r.header.Get("Location"))
			}
			wantPageHeaders(t, r)
		}
		// No session at all.
		r := call(t, http.MethodPost, e.pub+"/consent", formHeader(), url.Values{"request": {req}, "action": {"approve"}, "csrf": {formValue(t, page.body, "csrf")}}.Encode())
		if r.status != http.StatusForbidden {
			t.Errorf("no session: %d", r.status)
		}
	})

	t.Run("36 approve", func(t *testing.T) {
		q := e.authQuery(c)
		q.Set("state", "S1 +/=&ü")
		r := e.approve(b, e.consentPage(b, q), "approve")
		if r.status != http.StatusFound {
			t.Fatalf("%d %s", r.status, r.body)
		}
		up := r.location(t)
		if !strings.HasPrefix(up.String(), e.upURL+"/authorize?") {
			t.Fatalf("not sent upstream: %s", up)
		}
		cb := e.upstreamApprove(b, up, "alice")
		r = b.get(cb.String())
		if r.status != http.StatusFound {
			t.Fatalf("callback %d %s", r.status, r.body)
		}
		loc := r.location(t)
		if !strings.HasPrefix(loc.String(), loopbackCB+"?") {
			t.Fatalf("redirected to %s", loc)
		}
		lq := loc.Query()
		if lq.Get("state") != "S1 +/=&ü" || lq.Get("iss") != e.pub || !strings.HasPrefix(lq.Get("code"), oauth.CodePrefix) {
			t.Fatalf("query %v", lq)
		}
		if !strings.Contains(loc.RawQuery, "iss="+url.QueryEscape(e.pub)) {
			t.Errorf("raw query %s", loc.RawQuery)
		}
	})

	t.Run("52 consent remembered per client", func(t *testing.T) {
		// Consent for this client and route is remembered: straight to a code.
		r := b.get(e.authorizeURL(e.authQuery(c)))
		if r.status != http.StatusFound || r.location(t).Query().Get("code") == "" {
			t.Fatalf("remembered consent: %d %s", r.status, r.header.Get("Location"))
		}
		// A new client of the same person, even with the upstream grant
		// stored, sees the consent page again.
		c2 := e.publicClient("Other Client")
		page := e.consentPage(b, e.authQuery(c2))
		if !strings.Contains(page.body, "Other Client") {
			t.Errorf("consent page for C2 lacks its name")
		}
		// So does the same client asking for more scope.
		q := e.authQuery(c)
		q.Set("scope", "notes.read notes.write")
		if r := e.consentPage(b, q); !strings.Contains(r.body, "notes.write") {
			t.Errorf("wider scope page lacks notes.write")
		}
	})

	codeFor := func(t *testing.T, mod func(url.Values)) string {
		q := e.authQuery(c)
		mod(q)
		r := b.get(e.authorizeURL(q))
		if r.status != http.StatusFound {
			t.Fatalf("%d %s", r.status, r.body)
		}
		return r.location(t).Query().Get("code")
	}
	for _, tc := range []struct {
		name, resource string
	}{
		{"45 trailing slash", e.pub + "/Gmail/mcp/"},
		{"46 query stripped", e.pub + "/Gmail/mcp?utm_source=x"},
		{"47 uppercase scheme", strings.Replace(e.pub, "http://", "HTTP://", 1) + "/Gmail/mcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := codeFor(t, func(q url.Values) { q.Set("resource", tc.resource) })
			if code == "" {
				t.Fatal("no code")
			}
			r := e.exchange(c, code, url.Values{"resource": {tc.resource}})
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			rec, ok := e.accessRecord(r.json(t)["access_token"].(string))
			if !ok || rec.GetRoute() != "Gmail" {
				t.Fatalf("token record %v", rec)
			}
		})
	}

	t.Run("47 uppercase host and default port", func(t *testing.T) {
		for _, res := range []string{"https://GW.EXAMPLE.COM/Gmail/mcp", "https://gw.example.com:443/Gmail/mcp/"} {
			q := e.authQuery(c)
			q.Set("resource", res)
			q.Set("redirect_uri", loopbackCB)
			h := http.Header{"X-Test-Public-URL": {"https://gw.example.com"}}
			before := e.count(oauth.KindRequest)
			r := call(t, http.MethodGet, e.authorizeURL(q), h, "")
			if r.status != http.StatusFound {
				t.Fatalf("%s: %d %s", res, r.status, r.body)
			}
			loc := r.location(t)
			if loc.Host != "gw.example.com" || loc.Path != "/signin" {
				t.Fatalf("%s: redirected to %s", res, loc)
			}
			// The pending request travels sealed; nothing is stored.
			ct, err := base64.RawURLEncoding.DecodeString(loc.Query().Get("request"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := e.st.Open(ct, []byte("mcpgate/oauth-request/v1"))
			if err != nil || !strings.Contains(string(b), "Gmail") {
				t.Fatalf("%s: pending request %q %v", res, b, err)
			}
			if n := e.count(oauth.KindRequest); n != before {
				t.Fatalf("request records: %d, were %d", n, before)
			}
		}
	})

	t.Run("38 loopback port", func(t *testing.T) {
		q := e.authQuery(c)
		q.Set("redirect_uri", "http://127.0.0.1:49152/cb")
		// A port not approved before asks again (TestSec12ConsentExactRedirect).
		r := e.approve(b, e.consentPage(b, q), "approve")
		if r.status != http.StatusFound {
			t.Fatalf("%d %s", r.status, r.body)
		}
		loc := r.location(t)
		if loc.Host != "127.0.0.1:49152" || loc.Path != "/cb" || loc.Query().Get("code") == "" {
			t.Fatalf("redirected to %s", loc)
		}
		// The token request must repeat the redirect URI actually used.
		tr := e.exchange(c, loc.Query().Get("code"), url.Values{"redirect_uri": {"http://127.0.0.1:49152/cb"}})
		if tr.status != http.StatusOK {
			t.Fatalf("%d %s", tr.status, tr.body)
		}
	})

	t.Run("principal without access", func(t *testing.T) {
		m := newBrowser(t)
		e.signIn(m, malloryKey)
		r := m.get(e.authorizeURL(e.authQuery(c)))
		wantRedirectError(t, e, r, "access_denied")
	})

	t.Run("expired request", func(t *testing.T) {
		r := b.get(e.pub + "/consent?request=nope")
		if r.status != http.StatusBadRequest {
			t.Errorf("%d", r.status)
		}
		wantPageHeaders(t, r)
	})
}

func TestSessionCookie_HTTPS(t *testing.T) {
	e := newEnv(t, nil)
	h := formHeader()
	h.Set("X-Test-Public-URL", "https://gw.example.com")
	r := call(t, http.MethodPost, e.pub+"/signin", h, url.Values{"key": {aliceKey}}.Encode())
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "https://gw.example.com/connections" {
		t.Fatalf("%d %v", r.status, r.header)
	}
	ck := r.header.Get("Set-Cookie")
	for _, want := range []string{"__Host-mcpgate_session=", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"} {
		if !strings.Contains(ck, want) {
			t.Errorf("Set-Cookie %q lacks %q", ck, want)
		}
	}
	if strings.Contains(ck, "Domain=") {
		t.Errorf("__Host- cookie with Domain: %q", ck)
	}
	// A cross-site form post is refused.
	h.Set("Origin", "https://evil.example")
	if r := call(t, http.MethodPost, e.pub+"/signin", h, url.Values{"key": {aliceKey}}.Encode()); r.status != http.StatusForbidden || r.header.Get("Set-Cookie") != "" {
		t.Errorf("cross-site sign-in: %d", r.status)
	}
}
