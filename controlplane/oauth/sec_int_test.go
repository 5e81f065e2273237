package oauth_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
)

// Issue 8 item 13: with the upstream's issuer configured, the callback
// requires iss (RFC 9207) and compares it exactly; otherwise a fixed error,
// no code exchange upstream and no grant stored.
func TestSec13CallbackRequiresIss(t *testing.T) {
	e := newEnv(t, nil)
	const msg = "The sign-in response came from an unexpected issuer. Nothing was saved."
	for _, tc := range []struct {
		name string
		iss  []string // nil: no iss parameter
	}{
		{"missing", nil},
		{"empty", []string{""}},
		{"mismatched", []string{"https://accounts.evil.example"}},
		{"trailing slash", []string{"<up>/"}},
		{"repeated", []string{"<up>", "<up>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			_, up := e.startFlow(b, bobKey)
			cb := e.upstreamApprove(b, up, "bob")
			before := e.up.Stats().AuthorizationCodeGrants
			q := cb.Query()
			q.Del("iss")
			for _, v := range tc.iss {
				q.Add("iss", strings.ReplaceAll(v, "<up>", e.upURL))
			}
			r := b.get(e.pub + "/oauth/callback?" + q.Encode())
			if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
				t.Fatalf("status %d, Location %q; want 400 without redirect", r.status, r.header.Get("Location"))
			}
			if !strings.Contains(r.body, msg) {
				t.Errorf("body lacks the fixed message: %s", r.body)
			}
			wantPageHeaders(t, r)
			if e.up.Stats().AuthorizationCodeGrants != before {
				t.Errorf("the upstream code was exchanged")
			}
			e.sync()
			if _, ok := e.st.Grant("bob", "Gmail"); ok {
				t.Errorf("a grant was stored")
			}
		})
	}
	t.Run("error response without iss", func(t *testing.T) {
		b := newBrowser(t)
		_, up := e.startFlow(b, bobKey)
		r := b.get(e.pub + "/oauth/callback?" + url.Values{"error": {"access_denied"}, "state": {up.Query().Get("state")}}.Encode())
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" || !strings.Contains(r.body, msg) {
			t.Fatalf("status %d, Location %q, body %s", r.status, r.header.Get("Location"), r.body)
		}
	})
	t.Run("exact iss", func(t *testing.T) {
		b := newBrowser(t)
		_, up := e.startFlow(b, bobKey)
		cb := e.upstreamApprove(b, up, "bob")
		if cb.Query().Get("iss") != e.upURL {
			t.Fatalf("the demo provider sends iss %q", cb.Query().Get("iss"))
		}
		r := b.get(cb.String())
		if r.status != http.StatusFound || r.location(t).Query().Get("code") == "" {
			t.Fatalf("status %d, Location %q", r.status, r.header.Get("Location"))
		}
		e.sync()
		if _, ok := e.st.Grant("bob", "Gmail"); !ok {
			t.Errorf("no grant stored")
		}
	})
}

// Issue 8 item 14: registration refuses control and format characters in
// every displayed or stored text field, and custom redirect URI schemes
// other than RFC 8252 private-use ones (reversed domain names).
func TestSec14RegistrationText(t *testing.T) {
	e := newEnv(t, nil)
	const (
		descText     = "client metadata must not contain control or format characters"
		descRedirect = "redirect URIs must not contain control or format characters"
		descScheme   = "custom redirect URI schemes must be private-use schemes named by a reversed domain name, such as com.example.app:/callback"
	)
	// doc is a public client's registration with one member added or
	// replaced; the value is a JSON literal.
	doc := func(member, value string) string {
		m := map[string]string{
			"redirect_uris":              `["http://127.0.0.1/cb"]`,
			"token_endpoint_auth_method": `"none"`,
			"client_name":                `"Good App"`,
		}
		if member != "" {
			m[member] = value
		}
		var b strings.Builder
		b.WriteString("{")
		first := true
		for _, k := range []string{"redirect_uris", "token_endpoint_auth_method", "client_name", member} {
			v, ok := m[k]
			if !ok || k == "" {
				continue
			}
			delete(m, k)
			if !first {
				b.WriteString(",")
			}
			first = false
			b.WriteString(`"` + k + `":` + v)
		}
		b.WriteString("}")
		return b.String()
	}
	rejected := []struct {
		name, body, code, desc string
	}{
		{"name RLO", doc("client_name", `"Good \u202eppA liveE"`), "invalid_client_metadata", descText},
		{"name LRO", doc("client_name", `"Good \u202dApp"`), "invalid_client_metadata", descText},
		{"name RLE", doc("client_name", `"Good \u202bApp"`), "invalid_client_metadata", descText},
		{"name FSI", doc("client_name", `"Good \u2068App\u2069"`), "invalid_client_metadata", descText},
		{"name LRI", doc("client_name", `"\u2066Good App"`), "invalid_client_metadata", descText},
		{"name RLI", doc("client_name", `"\u2067Good App"`), "invalid_client_metadata", descText},
		{"name LRM", doc("client_name", `"Good\u200eApp"`), "invalid_client_metadata", descText},
		{"name ALM", doc("client_name", `"Good\u061cApp"`), "invalid_client_metadata", descText},
		{"name zero width space", doc("client_name", `"Go\u200bod App"`), "invalid_client_metadata", descText},
		{"name zero width joiner", doc("client_name", `"Good\u200dApp"`), "invalid_client_metadata", descText},
		{"name word joiner", doc("client_name", `"Good\u2060App"`), "invalid_client_metadata", descText},
		{"name BOM", doc("client_name", `"\ufeffGood App"`), "invalid_client_metadata", descText},
		{"name soft hyphen", doc("client_name", `"Good\u00adApp"`), "invalid_client_metadata", descText},
		{"name tag character", doc("client_name", `"Good App\udb40\udc41"`), "invalid_client_metadata", descText},
		{"name newline", doc("client_name", `"Good\nApp"`), "invalid_client_metadata", descText},
		{"name tab", doc("client_name", `"Good\tApp"`), "invalid_client_metadata", descText},
		{"name NUL", doc("client_name", `"Good\u0000App"`), "invalid_client_metadata", descText},
		{"name DEL", doc("client_name", `"Good\u007fApp"`), "invalid_client_metadata", descText},
		{"name C1 control", doc("client_name", `"Good\u0085App"`), "invalid_client_metadata", descText},
		{"name line separator", doc("client_name", `"Good\u2028App"`), "invalid_client_metadata", descText},
		{"name private use", doc("client_name", `"Good\ue000App"`), "invalid_client_metadata", descText},
		{"name lone surrogate", doc("client_name", `"Good\ud800App"`), "invalid_client_metadata", descText},
		{"name invalid UTF-8", doc("client_name", "\"Good\xffApp\""), "invalid_client_metadata", descText},
		{"name too long", doc("client_name", `"`+strings.Repeat("a", 201)+`"`), "invalid_client_metadata", "a metadata value is too long"},
		{"client_uri", doc("client_uri", `"https://good.example/\u202e"`), "invalid_client_metadata", descText},
		{"scope", doc("scope", `"repo\u200b"`), "invalid_client_metadata", descText},
		{"logo_uri", doc("logo_uri", `"https://good.example/logo\u202e.png"`), "invalid_client_metadata", descText},
		{"tos_uri", doc("tos_uri", `"https://good.example/\u2066tos"`), "invalid_client_metadata", descText},
		{"policy_uri", doc("policy_uri", `"https://good.example/\u200fpolicy"`), "invalid_client_metadata", descText},
		{"jwks_uri", doc("jwks_uri", `"https://good.example/\u0007"`), "invalid_client_metadata", descText},
		{"software_id", doc("software_id", `"id\u202e"`), "invalid_client_metadata", descText},
		{"software_version", doc("software_version", `"1.0\u2069"`), "invalid_client_metadata", descText},
		{"contacts", doc("contacts", `["ops@good.example","\u202eevil@example"]`), "invalid_client_metadata", descText},
		{"too many contacts", doc("contacts", `["a","b","c","d","e","f","g","h","i","j","k"]`), "invalid_client_metadata", "a metadata value is too long"},
		{"redirect RLO", doc("redirect_uris", `["https://good.example/cb\u202e"]`), "invalid_redirect_uri", descRedirect},
		{"redirect zero width", doc("redirect_uris", `["http://127.0.0.1/c\u200bb"]`), "invalid_redirect_uri", descRedirect},
		{"redirect private-use RLI", doc("redirect_uris", `["com.example.app:/cb\u2067"]`), "invalid_redirect_uri", descRedirect},
		{"scheme javascript", doc("redirect_uris", `["javascript:alert(1)"]`), "invalid_redirect_uri", "redirect URI scheme not allowed"},
		{"scheme JavaScript mixed case", doc("redirect_uris", `["JavaScript:alert(1)"]`), "invalid_redirect_uri", "redirect URI scheme not allowed"},
		{"scheme data", doc("redirect_uris", `["data:text/html,x"]`), "invalid_redirect_uri", "redirect URI scheme not allowed"},
		{"scheme file", doc("redirect_uris", `["file:///etc/passwd"]`), "invalid_redirect_uri", "redirect URI scheme not allowed"},
		{"scheme vbscript", doc("redirect_uris", `["vbscript:msgbox"]`), "invalid_redirect_uri", "redirect URI scheme not allowed"},
		{"scheme myapp", doc("redirect_uris", `["myapp:/cb"]`), "invalid_redirect_uri", descScheme},
		{"scheme myapp authority", doc("redirect_uris", `["myapp://cb"]`), "invalid_redirect_uri", descScheme},
		{"scheme myapp in a set", doc("redirect_uris", `["myapp://anysphere.cursor-mcp/oauth/callback","https://www.cursor.com/agents/mcp/oauth/callback","http://localhost:8787/callback"]`), "invalid_redirect_uri", descScheme},
		{"scheme mailto", doc("redirect_uris", `["mailto:a@b.example"]`), "invalid_redirect_uri", descScheme},
		{"scheme ms-settings", doc("redirect_uris", `["ms-settings:privacy"]`), "invalid_redirect_uri", descScheme},
		{"scheme web+app", doc("redirect_uris", `["web+app.example:/cb"]`), "invalid_redirect_uri", descScheme},
		{"scheme empty label", doc("redirect_uris", `["com..app:/cb"]`), "invalid_redirect_uri", descScheme},
		{"scheme trailing dot", doc("redirect_uris", `["com.example.:/cb"]`), "invalid_redirect_uri", descScheme},
		{"scheme label hyphen", doc("redirect_uris", `["com.-example.app:/cb"]`), "invalid_redirect_uri", descScheme},
		{"scheme digit first", doc("redirect_uris", `["1com.example:/cb"]`), "invalid_redirect_uri", "redirect URIs must be absolute URIs"},
		{"private-use without path", doc("redirect_uris", `["com.example.app:"]`), "invalid_redirect_uri", "private-use redirect URIs need a path"},
	}
	for i, c := range rejected {
		t.Run("rejected "+c.name, func(t *testing.T) {
			before := e.count(oauth.KindClient)
			h := jsonHeader()
			h.Set("X-Test-Addr", fmt.Sprintf("198.51.100.%d", i))
			r := call(t, http.MethodPost, e.pub+"/register", h, c.body)
			wantJSONError(t, r, http.StatusBadRequest, c.code)
			if d := r.json(t)["error_description"]; d != c.desc {
				t.Errorf("error_description %q, want %q", d, c.desc)
			}
			if e.count(oauth.KindClient) != before {
				t.Errorf("a client was stored")
			}
		})
	}
	accepted := []struct{ name, body string }{
		{"plain name", doc("", "")},
		{"name with non-ASCII letters", doc("client_name", `"Café Ünïcode 日本語 – App"`)},
		{"name with emoji", doc("client_name", `"Notes 📝"`)},
		{"name with no-break space", doc("client_name", `"Good\u00a0App"`)},
		{"private-use scheme", doc("redirect_uris", `["com.example.app:/oauth2redirect/provider"]`)},
		{"private-use scheme with authority", doc("redirect_uris", `["com.example.app://callback"]`)},
		{"private-use scheme with digits and hyphens", doc("redirect_uris", `["io.my-app2.client:/cb"]`)},
		{"private-use scheme upper case", doc("redirect_uris", `["Com.Example.App:/cb"]`)},
		{"display fields", doc("logo_uri", `"https://good.example/logo.png"`)},
	}
	for i, c := range accepted {
		t.Run("accepted "+c.name, func(t *testing.T) {
			h := jsonHeader()
			h.Set("X-Test-Addr", fmt.Sprintf("198.51.100.%d", 200+i))
			r := call(t, http.MethodPost, e.pub+"/register", h, c.body)
			if r.status != http.StatusCreated {
				t.Fatalf("%d %s", r.status, r.body)
			}
		})
	}
}

// Issue 8 item 14, client ID metadata documents: the same rules refuse a
// document whose client_name carries a bidi override; no consent page.
func TestSec14MetadataDocumentText(t *testing.T) {
	var body atomic.Pointer[string]
	doc := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(*body.Load()))
	}))
	t.Cleanup(doc.Close)
	e := newEnv(t, func(c *oauth.Config) { c.CIMDClient = doc.Client() })
	id := doc.URL + "/client.json"
	b := newBrowser(t)
	e.signIn(b, aliceKey)
	for _, c := range []struct{ name, doc, want string }{
		{"bidi name", `{"client_id":"` + id + `","client_name":"Good \u202eppA","redirect_uris":["http://localhost/cb"]}`,
			"The client&#39;s metadata document is invalid: " + "client metadata must not contain control or format characters."},
		{"custom scheme", `{"client_id":"` + id + `","client_name":"Good","redirect_uris":["myapp:/cb"]}`,
			"The client&#39;s metadata document is invalid: custom redirect URI schemes must be private-use schemes named by a reversed domain name, such as com.example.app:/callback."},
	} {
		t.Run(c.name, func(t *testing.T) {
			body.Store(&c.doc)
			q := e.authQuery(id)
			q.Set("redirect_uri", "http://localhost/cb")
			r := b.get(e.authorizeURL(q))
			if r.status != http.StatusBadRequest || r.header.Get("Location") != "" || !strings.Contains(r.body, c.want) {
				t.Fatalf("%d %q %s", r.status, r.header.Get("Location"), r.body)
			}
			wantPageHeaders(t, r)
		})
	}
}

// Issue 8 item 12: a remembered consent re-approves silently only for the
// exact redirect URI approved, port included; a crafted link naming another
// loopback port shows the consent page again and issues no code.
func TestSec12ConsentExactRedirect(t *testing.T) {
	e := newEnv(t, nil)
	c := e.publicClient("Native App") // registered redirect http://127.0.0.1/cb: any port
	b := newBrowser(t)
	e.signIn(b, aliceKey)
	q := func(redirect string) url.Values {
		v := e.authQuery(c)
		v.Set("redirect_uri", redirect)
		v.Set("resource", e.pub+"/GitHub/mcp")
		v.Set("scope", "repo")
		return v
	}
	codeFor := func(t *testing.T, r response, redirect string) {
		t.Helper()
		if r.status != http.StatusFound {
			t.Fatalf("status %d, want 302 with a code; body %s", r.status, r.body)
		}
		loc := r.location(t)
		if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirect || loc.Query().Get("code") == "" {
			t.Fatalf("redirected to %s", loc)
		}
	}
	consentShown := func(t *testing.T, r response) {
		t.Helper()
		if r.status != http.StatusOK || r.header.Get("Location") != "" || !strings.Contains(r.body, `name="action" value="approve"`) {
			t.Fatalf("status %d, Location %q; want the consent page", r.status, r.header.Get("Location"))
		}
	}

	// Approve once for port 5000.
	first := b.get(e.authorizeURL(q("http://127.0.0.1:5000/cb")))
	consentShown(t, first)
	codeFor(t, e.approve(b, first, "approve"), "http://127.0.0.1:5000/cb")

	// The same URI again: silent.
	codeFor(t, b.get(e.authorizeURL(q("http://127.0.0.1:5000/cb"))), "http://127.0.0.1:5000/cb")

	// Any other redirect URI asks again and issues no code.
	for _, other := range []string{"http://127.0.0.1:6000/cb", "http://127.0.0.1/cb", "http://127.0.0.1:50000/cb"} {
		t.Run(other, func(t *testing.T) {
			e.sync()
			codes := e.count(oauth.KindCode)
			consentShown(t, b.get(e.authorizeURL(q(other))))
			if n := e.count(oauth.KindCode); n != codes {
				t.Errorf("%d codes stored, want %d", n, codes)
			}
		})
	}

	// Approving port 6000 remembers it too, and 5000 stays remembered.
	page := b.get(e.authorizeURL(q("http://127.0.0.1:6000/cb")))
	consentShown(t, page)
	codeFor(t, e.approve(b, page, "approve"), "http://127.0.0.1:6000/cb")
	codeFor(t, b.get(e.authorizeURL(q("http://127.0.0.1:6000/cb"))), "http://127.0.0.1:6000/cb")
	codeFor(t, b.get(e.authorizeURL(q("http://127.0.0.1:5000/cb"))), "http://127.0.0.1:5000/cb")
}

// Issue 8 item 16a: a token request that fails a possession check (client,
// redirect_uri, PKCE verifier, resource) does not consume the code; each
// failure is counted on the code by compare-and-swap and the code is
// deleted at oauth.MaxCodeFailures.
func TestSec16CodeFailureDoesNotConsume(t *testing.T) {
	e := newEnv(t, nil)
	c := e.publicClient("Native App")
	other := e.publicClient("Other App")
	b := newBrowser(t)
	e.signIn(b, aliceKey)
	q := e.authQuery(c)
	q.Set("resource", e.pub+"/GitHub/mcp")
	q.Set("scope", "repo")
	newCode := func(t *testing.T) string {
		t.Helper()
		return e.code(b, q, "alice").Query().Get("code")
	}
	exchange := func(code string, extra url.Values) response {
		if _, ok := extra["resource"]; !ok {
			extra.Set("resource", e.pub+"/GitHub/mcp")
		}
		return e.exchange(c, code, extra)
	}
	// record reads the code's record; ok is false when it is gone.
	record := func(t *testing.T, code string) (attempts int32, ok bool) {
		t.Helper()
		b, _, err := e.st.Get(t.Context(), oauth.KindCode, idOf(code))
		if err != nil {
			return 0, false
		}
		var rec storev1.OAuthCodeRecord
		if err := proto.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		return rec.GetFailedAttempts(), true
	}
	const (
		descPKCE     = "code_verifier does not match the code challenge"
		descRedirect = "redirect_uri differs from the authorization request"
		descClient   = "the code was issued to another client"
		descResource = "resource does not match the authorization"
		descBad      = "the authorization code is invalid, expired or already used"
	)
	wantGrantError := func(t *testing.T, r response, desc string) {
		t.Helper()
		code := "invalid_grant"
		if desc == descResource {
			code = "invalid_target"
		}
		wantJSONError(t, r, http.StatusBadRequest, code)
		if d := r.json(t)["error_description"]; d != desc {
			t.Errorf("error_description %q, want %q", d, desc)
		}
	}
	wrong := []struct {
		name  string
		extra url.Values
		desc  string
	}{
		{"PKCE verifier", url.Values{"code_verifier": {strings.Repeat("x", 43)}}, descPKCE},
		{"redirect_uri", url.Values{"redirect_uri": {"http://127.0.0.1:9/cb"}}, descRedirect},
		{"client", url.Values{"client_id": {other}}, descClient},
		{"resource", url.Values{"resource": {e.pub + "/Gmail/mcp"}}, descResource},
	}

	t.Run("failures keep the code", func(t *testing.T) {
		code := newCode(t)
		for i, w := range wrong {
			wantGrantError(t, exchange(code, w.extra), w.desc)
			if n, ok := record(t, code); !ok || n != int32(i+1) {
				t.Fatalf("after %s: code present %v with %d failures, want %d", w.name, ok, n, i+1)
			}
		}
		if n := e.count(oauth.KindUsedCode); n != 0 {
			t.Errorf("%d codes marked used", n)
		}
		r := exchange(code, url.Values{})
		if r.status != http.StatusOK || r.json(t)["access_token"] == nil {
			t.Fatalf("legitimate exchange: %d %s", r.status, r.body)
		}
		if _, ok := record(t, code); ok {
			t.Errorf("the code survived its redemption")
		}
		// Used twice: refused, and the tokens issued from it are revoked.
		tok := r.json(t)["access_token"].(string)
		wantGrantError(t, exchange(code, url.Values{}), descBad)
		if _, ok := e.accessRecord(tok); ok {
			t.Errorf("the replayed code's access token still exists")
		}
	})

	t.Run("limit deletes the code", func(t *testing.T) {
		code := newCode(t)
		for i := range oauth.MaxCodeFailures {
			wantGrantError(t, exchange(code, url.Values{"code_verifier": {strings.Repeat("y", 43+i)}}), descPKCE)
		}
		if _, ok := record(t, code); ok {
			t.Fatalf("the code survived %d failures", oauth.MaxCodeFailures)
		}
		wantGrantError(t, exchange(code, url.Values{}), descBad)
	})

	t.Run("concurrent failures are all counted", func(t *testing.T) {
		code := newCode(t)
		const n = 8
		descs := make(chan string, n)
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {strings.Repeat("z", 43)},
					"redirect_uri": {loopbackCB}, "client_id": {c}, "resource": {e.pub + "/GitHub/mcp"}}
				req, _ := http.NewRequest(http.MethodPost, e.pub+"/token", strings.NewReader(f.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					descs <- err.Error()
					return
				}
				defer resp.Body.Close()
				var m map[string]any
				_ = json.NewDecoder(resp.Body).Decode(&m)
				descs <- fmt.Sprint(resp.StatusCode, " ", m["error"], " ", m["error_description"])
			})
		}
		wg.Wait()
		close(descs)
		counted := 0
		for d := range descs {
			switch d {
			case "400 invalid_grant " + descPKCE:
				counted++
			case "400 invalid_grant " + descBad, "400 invalid_grant the authorization code changed concurrently":
			default:
				t.Errorf("answer %q", d)
			}
		}
		// Every answer naming the PKCE failure was recorded: no lost update.
		got, ok := record(t, code)
		switch {
		case counted >= oauth.MaxCodeFailures:
			if ok || counted != oauth.MaxCodeFailures {
				t.Errorf("%d failures answered, code present %v", counted, ok)
			}
		case !ok || got != int32(counted):
			t.Errorf("%d failures answered, code present %v with %d recorded", counted, ok, got)
		}
	})
}

// Issue 8 item 16b at /authorize: anyone can register a client, so before
// sign-in /authorize must not tell whether a route exists or which scopes
// it has (the sealed pending request reflects only what the client sent);
// after sign-in a principal gets the same answer for a missing route
// as for one it may not use.
func TestSec16AuthorizeRevealsNoRoutes(t *testing.T) {
	e := newEnv(t, nil)
	c := e.publicClient("Prober")
	q := func(route, scope string) url.Values {
		v := e.authQuery(c)
		v.Set("resource", e.pub+"/"+route+"/mcp")
		v.Set("scope", scope)
		return v
	}
	probes := []url.Values{
		q("Gmail", "notes.read"),   // exists
		q("Unknown", "notes.read"), // does not
		q("Gmail", "admin"),        // exists, scope it does not offer
		q("Unknown", "admin"),
		q("GitHub", ""),
	}

	t.Run("anonymous", func(t *testing.T) {
		for _, p := range probes {
			r := call(t, http.MethodGet, e.authorizeURL(p), nil, "")
			if r.status != http.StatusFound || r.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("%s: %d %v", p.Get("resource"), r.status, r.header)
			}
			loc := r.location(t)
			if loc.Scheme+"://"+loc.Host+loc.Path != e.pub+"/signin" || len(loc.Query()) != 1 || loc.Query().Get("request") == "" {
				t.Errorf("%s %q: redirected to %s, want the sign-in page", p.Get("resource"), p.Get("scope"), loc)
			}
		}
	})

	t.Run("principal not granted", func(t *testing.T) {
		m := newBrowser(t)
		e.signIn(m, malloryKey) // GitHub only
		var want string
		for _, p := range probes[:4] {
			r := m.get(e.authorizeURL(p))
			wantRedirectError(t, e, r, "access_denied")
			if want == "" {
				want = r.header.Get("Location")
			}
			if got := r.header.Get("Location"); got != want {
				t.Errorf("%s %q: Location %s, want %s", p.Get("resource"), p.Get("scope"), got, want)
			}
		}
		// The same through sign-in: the request is resolved after it.
		for _, p := range probes[:2] {
			fresh := newBrowser(t)
			to := fresh.get(e.authorizeURL(p)).location(t)
			r := fresh.post(e.pub+"/signin", url.Values{"key": {malloryKey}, "request": {to.Query().Get("request")}})
			if r.status != http.StatusSeeOther {
				t.Fatalf("sign in: %d %s", r.status, r.body)
			}
			r = fresh.get(r.location(t).String())
			wantRedirectError(t, e, r, "access_denied")
			if got := r.header.Get("Location"); got != want {
				t.Errorf("%s after sign-in: Location %s, want %s", p.Get("resource"), got, want)
			}
		}
	})

	t.Run("principal granted", func(t *testing.T) {
		a := newBrowser(t)
		e.signIn(a, aliceKey) // every server
		wantRedirectError(t, e, a.get(e.authorizeURL(q("Unknown", "notes.read"))), "access_denied")
		wantRedirectError(t, e, a.get(e.authorizeURL(q("Gmail", "admin"))), "invalid_scope")
		page := e.consentPage(a, q("GitHub", ""))
		if !strings.Contains(page.body, "<code>repo</code>") || !strings.Contains(page.body, "<code>read:org</code>") {
			t.Errorf("consent page lacks the route's scopes: %s", page.body)
		}
	})
}
