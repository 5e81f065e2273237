package oauth_test

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
)

// Checklist C 22-24.
func TestMetadata(t *testing.T) {
	e := newEnv(t, nil)
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
		t.Run(path, func(t *testing.T) {
			r := call(t, http.MethodGet, e.pub+path, nil, "")
			if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("%d %s %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			m := r.json(t)
			strs := func(k string) []string {
				var out []string
				for _, v := range m[k].([]any) {
					out = append(out, v.(string))
				}
				return out
			}
			want := map[string]string{
				"issuer":                 e.pub,
				"authorization_endpoint": e.pub + "/authorize",
				"token_endpoint":         e.pub + "/token",
				"registration_endpoint":  e.pub + "/register",
				"revocation_endpoint":    e.pub + "/revoke",
			}
			for k, v := range want {
				if m[k] != v {
					t.Errorf("%s = %v, want %s", k, m[k], v)
				}
			}
			if got := strs("code_challenge_methods_supported"); !slices.Equal(got, []string{"S256"}) {
				t.Errorf("code_challenge_methods_supported = %v", got)
			}
			if got := strs("response_types_supported"); !slices.Equal(got, []string{"code"}) {
				t.Errorf("response_types_supported = %v", got)
			}
			if got := strs("grant_types_supported"); !slices.Equal(got, []string{"authorization_code", "refresh_token", oauth.GrantJWTBearer}) {
				t.Errorf("grant_types_supported = %v", got)
			}
			if got := strs("token_endpoint_auth_methods_supported"); !slices.Contains(got, "none") || !slices.Contains(got, "client_secret_basic") || !slices.Contains(got, "client_secret_post") {
				t.Errorf("token_endpoint_auth_methods_supported = %v", got)
			}
			if got := strs("scopes_supported"); !slices.Equal(got, []string{"notes.read", "notes.write", "read:org", "repo"}) {
				t.Errorf("scopes_supported = %v", got)
			}
			if m["authorization_response_iss_parameter_supported"] != true || m["client_id_metadata_document_supported"] != true {
				t.Errorf("iss/CIMD flags: %v", m)
			}
		})
	}
	t.Run("issuer follows the public URL", func(t *testing.T) {
		r := call(t, http.MethodGet, e.pub+"/.well-known/oauth-authorization-server", http.Header{"X-Test-Public-URL": {"https://GW.example.com/"}}, "")
		if m := r.json(t); m["issuer"] != "https://gw.example.com" || m["token_endpoint"] != "https://gw.example.com/token" {
			t.Errorf("%v", m)
		}
	})
	t.Run("24 path-suffixed", func(t *testing.T) {
		r := call(t, http.MethodGet, e.pub+"/.well-known/oauth-authorization-server/Gmail/mcp", nil, "")
		if r.status != http.StatusNotFound || strings.Contains(r.body, "issuer") {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("bad public URL", func(t *testing.T) {
		for _, p := range []string{"-", "ftp://gw.example.com", "https://gw.example.com/base", "gw.example.com"} {
			r := call(t, http.MethodGet, e.pub+"/.well-known/oauth-authorization-server", http.Header{"X-Test-Public-URL": {p}}, "")
			if r.status != http.StatusBadRequest || strings.Contains(r.body, "issuer") {
				t.Errorf("%q: %d %s", p, r.status, r.body)
			}
		}
	})
	t.Run("POST", func(t *testing.T) {
		r := call(t, http.MethodPost, e.pub+"/.well-known/oauth-authorization-server", nil, "")
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%d %v", r.status, r.header)
		}
	})
}

// Checklist D 25-34.
func TestRegister(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	created := []struct {
		name, body string
		secret     bool
	}{
		{"25 VS Code", `{"redirect_uris":["http://127.0.0.1/","http://127.0.0.1:33418/","https://vscode.dev/redirect"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"response_types":["code"],"client_name":"Visual Studio Code","application_type":"native"}`, false},
		// Cursor's own set: cursor:// is not in the RFC 8252 reverse-DNS
		// form, but it is a known client's scheme (knownClientSchemes).
		{"26 Cursor", `{"redirect_uris":["cursor://anysphere.cursor-mcp/oauth/callback","https://www.cursor.com/agents/mcp/oauth/callback","http://localhost:8787/callback"],"token_endpoint_auth_method":"none","client_name":"Cursor","application_type":"web"}`, false},
		{"27 no scope", `{"redirect_uris":["http://[::1]:9999/cb"],"token_endpoint_auth_method":"none","client_name":"Copilot CLI"}`, false},
		{"33 client_secret_basic", `{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_basic","client_name":"Web app","scope":"repo"}`, true},
		{"33 default method is client_secret_basic", `{"redirect_uris":["https://app.example/cb"]}`, true},
		{"client_secret_post", `{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_post"}`, true},
	}
	for i, c := range created {
		t.Run(c.name, func(t *testing.T) {
			h := jsonHeader()
			h.Set("X-Test-Addr", fmt.Sprintf("203.0.113.%d", i))
			r := call(t, http.MethodPost, e.pub+"/register", h, c.body)
			if r.status != http.StatusCreated {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if r.header.Get("Content-Type") != "application/json" || r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v", r.header)
			}
			m := r.json(t)
			id, _ := m["client_id"].(string)
			if id == "" || m["client_id_issued_at"] == nil {
				t.Fatalf("no client_id / client_id_issued_at: %s", r.body)
			}
			req := map[string]any{}
			_ = jsonUnmarshal(c.body, &req)
			for k, v := range req {
				if fmt.Sprint(m[k]) != fmt.Sprint(v) {
					t.Errorf("%s echoed as %v, want %v", k, m[k], v)
				}
			}
			secret, hasSecret := m["client_secret"].(string)
			if hasSecret != c.secret {
				t.Fatalf("client_secret present = %v, want %v", hasSecret, c.secret)
			}
			if c.secret {
				if m["client_secret_expires_at"] != float64(0) || len(secret) < 32 {
					t.Errorf("secret %q expires_at %v", secret, m["client_secret_expires_at"])
				}
			} else if _, ok := m["client_secret_expires_at"]; ok {
				t.Errorf("client_secret_expires_at without a secret")
			}
			// The record holds a hash, never the secret.
			b, _, err := e.st.Get(ctx, oauth.KindClient, id)
			if err != nil {
				t.Fatal(err)
			}
			var rec storev1.OAuthClientRecord
			if err := proto.Unmarshal(b, &rec); err != nil {
				t.Fatal(err)
			}
			if c.secret {
				sum := sha256.Sum256([]byte(secret))
				if string(rec.GetSecretSha256()) != string(sum[:]) || strings.Contains(string(b), secret) {
					t.Errorf("stored secret is not only its hash")
				}
			}
		})
	}

	rejected := []struct {
		name, body, code string
	}{
		{"28 fragment", `{"redirect_uris":["http://127.0.0.1/cb#frag"],"token_endpoint_auth_method":"none"}`, "invalid_redirect_uri"},
		{"29 javascript", `{"redirect_uris":["javascript:alert(1)"],"token_endpoint_auth_method":"none"}`, "invalid_redirect_uri"},
		{"29 data", `{"redirect_uris":["data:text/html,hi"],"token_endpoint_auth_method":"none"}`, "invalid_redirect_uri"},
		{"29 file", `{"redirect_uris":["file:///etc/passwd"],"token_endpoint_auth_method":"none"}`, "invalid_redirect_uri"},
		{"30 non-loopback http", `{"redirect_uris":["http://attacker.example/cb"],"token_endpoint_auth_method":"none"}`, "invalid_redirect_uri"},
		{"30 one bad uri fails the set", `{"redirect_uris":["http://127.0.0.1/cb","http://10.0.0.1/cb"],"token_endpoint_auth_method":"none"}`, "invalid_redirect_uri"},
		{"user info", `{"redirect_uris":["https://user:pw@app.example/cb"],"token_endpoint_auth_method":"none"}`, "invalid_redirect_uri"},
		{"relative", `{"redirect_uris":["/cb"],"token_endpoint_auth_method":"none"}`, "invalid_redirect_uri"},
		{"31 no redirect_uris", `{"token_endpoint_auth_method":"none","client_name":"x"}`, "invalid_redirect_uri"},
		{"32 not JSON", `redirect_uris=http://127.0.0.1/cb`, "invalid_client_metadata"},
		{"32 implicit", `{"redirect_uris":["http://127.0.0.1/cb"],"grant_types":["implicit"]}`, "invalid_client_metadata"},
		{"32 password", `{"redirect_uris":["http://127.0.0.1/cb"],"grant_types":["authorization_code","password"]}`, "invalid_client_metadata"},
		{"response type token", `{"redirect_uris":["http://127.0.0.1/cb"],"response_types":["token"]}`, "invalid_client_metadata"},
		{"private_key_jwt", `{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, "invalid_client_metadata"},
		{"JSON array", `[1,2]`, "invalid_client_metadata"},
	}
	for i, c := range rejected {
		t.Run(c.name, func(t *testing.T) {
			before := e.count(oauth.KindClient)
			h := jsonHeader()
			h.Set("X-Test-Addr", fmt.Sprintf("203.0.113.%d", 100+i))
			r := call(t, http.MethodPost, e.pub+"/register", h, c.body)
			wantJSONError(t, r, http.StatusBadRequest, c.code)
			if d, _ := r.json(t)["error_description"].(string); d == "" {
				t.Errorf("no error_description")
			}
			if e.count(oauth.KindClient) != before {
				t.Errorf("a client was stored")
			}
		})
	}
	t.Run("32 text/plain body", func(t *testing.T) {
		r := call(t, http.MethodPost, e.pub+"/register", http.Header{"Content-Type": {"text/plain"}}, `{"redirect_uris":["http://127.0.0.1/cb"]}`)
		wantJSONError(t, r, http.StatusBadRequest, "invalid_client_metadata")
	})
	t.Run("34 oversized body", func(t *testing.T) {
		big := `{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"` + strings.Repeat("a", 70<<10) + `"}`
		r := call(t, http.MethodPost, e.pub+"/register", http.Header{"Content-Type": {"application/json"}, "X-Test-Addr": {"198.51.100.9"}}, big)
		wantJSONError(t, r, http.StatusRequestEntityTooLarge, "invalid_client_metadata")
	})
	t.Run("34 rate limit", func(t *testing.T) {
		h := http.Header{"Content-Type": {"application/json"}, "X-Test-Addr": {"198.51.100.7"}}
		body := `{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`
		for i := range oauth.DefaultRegisterPerMin {
			if r := call(t, http.MethodPost, e.pub+"/register", h, body); r.status != http.StatusCreated {
				t.Fatalf("registration %d: %d %s", i, r.status, r.body)
			}
		}
		r := call(t, http.MethodPost, e.pub+"/register", h, body)
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
			t.Fatalf("%d %v %s", r.status, r.header, r.body)
		}
		if r.json(t)["error"] == nil {
			t.Errorf("no error body")
		}
		// Another address is not limited.
		h.Set("X-Test-Addr", "198.51.100.8")
		if r := call(t, http.MethodPost, e.pub+"/register", h, body); r.status != http.StatusCreated {
			t.Errorf("other address: %d", r.status)
		}
	})
	t.Run("GET", func(t *testing.T) {
		r := call(t, http.MethodGet, e.pub+"/register", nil, "")
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
			t.Errorf("%d %v", r.status, r.header)
		}
	})
}

// Checklist E 53 and the CIMD happy path.
func TestClientIDMetadataDocument(t *testing.T) {
	var docs atomic.Pointer[map[string]string]
	var hits atomic.Int32
	doc := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, ok := (*docs.Load())[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(doc.Close)
	e := newEnv(t, func(c *oauth.Config) { c.CIMDClient = doc.Client() })
	good := doc.URL + "/good.json"
	m := map[string]string{
		"/good.json":     `{"client_id":"` + good + `","client_name":"Claude Code","redirect_uris":["http://localhost/callback"],"grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none"}`,
		"/other.json":    `{"client_id":"https://client.example/meta.json","client_name":"Impostor","redirect_uris":["http://localhost/callback"]}`,
		"/noredirs.json": `{"client_id":"` + doc.URL + `/noredirs.json","client_name":"No redirects"}`,
		"/big.json":      `{"client_id":"` + doc.URL + `/big.json","client_name":"` + strings.Repeat("x", 70<<10) + `"}`,
	}
	docs.Store(&m)
	q := func(id, redirect string) url.Values {
		v := e.authQuery(id)
		v.Set("redirect_uri", redirect)
		return v
	}
	t.Run("document accepted", func(t *testing.T) {
		b := newBrowser(t)
		e.signIn(b, aliceKey)
		r := b.get(e.authorizeURL(q(good, "http://localhost:51000/callback")))
		if r.status != http.StatusOK || !strings.Contains(r.body, "Claude Code") || !strings.Contains(r.body, "localhost:51000") {
			t.Fatalf("%d %s", r.status, r.body)
		}
		loc := e.code(b, q(good, "http://localhost:51000/callback"), "alice")
		// The token endpoint knows the client by its URL.
		f := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "code_verifier": {verifier},
			"redirect_uri": {"http://localhost:51000/callback"}, "client_id": {good}}
		tr := call(t, http.MethodPost, e.pub+"/token", formHeader(), f.Encode())
		if tr.status != http.StatusOK || tr.json(t)["refresh_token"] == nil {
			t.Fatalf("%d %s", tr.status, tr.body)
		}
	})
	t.Run("document rejects", func(t *testing.T) {
		for _, c := range []struct{ path, redirect string }{
			{"/other.json", "http://localhost/callback"},
			{"/noredirs.json", "http://localhost/callback"},
			{"/big.json", "http://localhost/callback"},
			{"/missing.json", "http://localhost/callback"},
			{"/good.json", "http://localhost.evil.example/callback"},
		} {
			r := call(t, http.MethodGet, e.authorizeURL(q(doc.URL+c.path, c.redirect)), nil, "")
			if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
				t.Errorf("%s: %d %s", c.path, r.status, r.header.Get("Location"))
			}
			if c.path != "/good.json" && !strings.Contains(r.body, "invalid_client") {
				t.Errorf("%s: body %s", c.path, r.body)
			}
			wantPageHeaders(t, r)
		}
	})

	// The production fetcher refuses non-public addresses before dialing.
	safe := newEnv(t, nil)
	for _, id := range []string{
		doc.URL + "/good.json", // 127.0.0.1
		strings.Replace(doc.URL, "127.0.0.1", "localhost", 1) + "/good.json",
		"https://10.1.2.3/meta.json",
		"https://169.254.169.254/latest/meta-data",
		"https://[::1]/meta.json",
		"https://192.168.1.1/meta.json",
		"https://[fe80::1]/meta.json",
	} {
		t.Run("53 refused "+id, func(t *testing.T) {
			before := hits.Load()
			r := call(t, http.MethodGet, safe.authorizeURL(q(id, "http://localhost/callback")), nil, "")
			if r.status != http.StatusBadRequest || r.header.Get("Location") != "" || !strings.Contains(r.body, "invalid_client") {
				t.Errorf("%d %s %s", r.status, r.header.Get("Location"), r.body)
			}
			if hits.Load() != before {
				t.Errorf("the document was fetched")
			}
		})
	}
}
