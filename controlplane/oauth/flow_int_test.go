package oauth_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/internal/testenv"
)

// TestFullFlow drives the whole authorization with a scripted browser, as an
// MCP client would: register, /authorize, sign-in, consent, upstream
// consent, callback, token, refresh; then a second person gets their own
// upstream token.
func TestFullFlow(t *testing.T) {
	e := newEnv(t, nil)
	client := e.registerClient(`{"redirect_uris":["http://127.0.0.1/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"response_types":["code"],"client_name":"Scripted MCP Client","application_type":"native"}`)
	id := client["client_id"].(string)
	for _, person := range []struct{ name, key string }{{"alice", aliceKey}, {"bob", bobKey}} {
		t.Run(person.name, func(t *testing.T) {
			b := newBrowser(t)
			q := url.Values{
				"response_type": {"code"}, "client_id": {id}, "redirect_uri": {"http://127.0.0.1:61000/callback"},
				"code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}, "state": {"st-" + person.name},
				"resource": {e.pub + "/Gmail/mcp"},
			}
			// 1. /authorize without a session → sign-in page.
			r := b.get(e.authorizeURL(q))
			if r.status != http.StatusFound {
				t.Fatalf("authorize: %d", r.status)
			}
			r = b.get(r.location(t).String())
			if r.status != http.StatusOK {
				t.Fatalf("sign-in page: %d", r.status)
			}
			// 2. Sign in → consent page.
			r = b.post(e.pub+"/signin", url.Values{"key": {person.key}, "request": {formValue(t, r.body, "request")}, "next": {formValue(t, r.body, "next")}})
			if r.status != http.StatusSeeOther {
				t.Fatalf("sign-in: %d %s", r.status, r.body)
			}
			r = b.get(r.location(t).String())
			if r.status != http.StatusOK || !strings.Contains(r.body, "Scripted MCP Client") || !strings.Contains(r.body, "notes.read") || !strings.Contains(r.body, "notes.write") {
				t.Fatalf("consent: %d %s", r.status, r.body)
			}
			// 3. Approve → upstream consent → callback → client redirect.
			r = e.approve(b, r, "approve")
			cb := e.upstreamApprove(b, r.location(t), person.name)
			r = b.get(cb.String())
			loc := r.location(t)
			if loc.Host != "127.0.0.1:61000" || loc.Query().Get("state") != "st-"+person.name || loc.Query().Get("iss") != e.pub {
				t.Fatalf("client redirect %s", loc)
			}
			// 4. Token.
			tr := call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{
				"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "code_verifier": {verifier},
				"redirect_uri": {"http://127.0.0.1:61000/callback"}, "client_id": {id}, "resource": {e.pub + "/Gmail/mcp"},
			}.Encode())
			if tr.status != http.StatusOK || tr.json(t)["scope"] != "notes.read notes.write" {
				t.Fatalf("token: %d %s", tr.status, tr.body)
			}
			rec, ok := e.accessRecord(tr.json(t)["access_token"].(string))
			if !ok || rec.GetPrincipal() != person.name || rec.GetRoute() != "Gmail" {
				t.Fatalf("token record %v", rec)
			}
			// 5. The person's own upstream token is in the vault.
			e.sync()
			g, ok := e.st.Grant(person.name, "Gmail")
			if !ok {
				t.Fatal("no grant")
			}
			if user, _, ok := e.up.Verify(g.Token.GetAccessToken()); !ok || user != person.name {
				t.Fatalf("upstream token of %q", user)
			}
			// 6. Refresh.
			rr := call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{
				"grant_type": {"refresh_token"}, "refresh_token": {tr.json(t)["refresh_token"].(string)}, "client_id": {id},
			}.Encode())
			if rr.status != http.StatusOK {
				t.Fatalf("refresh: %d %s", rr.status, rr.body)
			}
		})
	}
	if n := e.up.Stats().AuthorizationCodeGrants; n != 2 {
		t.Errorf("upstream code grants %d, want 2", n)
	}
}

const chromiumBin = "/usr/bin/chromium"

// needChromium skips the test without Chromium, or fails it under
// `bash .ci/test` (testenv.Missing).
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumBin); err != nil {
		testenv.Missing(t, "Chromium ("+chromiumBin+", apt-get install -y chromium)", err)
	}
}

// chromium runs headless Chromium against url: a screenshot and the DOM.
func chromium(t *testing.T, target string) (png []byte, dom string) {
	t.Helper()
	needChromium(t)
	bin := chromiumBin
	dir := t.TempDir()
	shot := filepath.Join(dir, "page.png")
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1000,800"}
	// Chromium occasionally crashes on start on a loaded machine; a crash
	// is retried twice, anything else fails the test.
	run := func(extra ...string) []byte {
		var err error
		var errb bytes.Buffer
		for range 3 {
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			cmd := exec.CommandContext(ctx, bin, append(append(args, extra...), target)...)
			var out bytes.Buffer
			errb.Reset()
			cmd.Stdout, cmd.Stderr = &out, &errb
			err = cmd.Run()
			cancel()
			if err == nil {
				return out.Bytes()
			}
		}
		t.Fatalf("chromium %v: %v\n%s", extra, err, errb.String())
		return nil
	}
	run("--screenshot=" + shot)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(png))
	}
	if d := os.Getenv("MCPGATE_SCREENSHOT_DIR"); d != "" {
		_ = os.WriteFile(filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_")+".png"), png, 0o644)
	}
	return png, string(run("--dump-dom"))
}

// TestPages_Chromium renders the sign-in, consent and connections pages in
// headless Chromium. Chromium has no cookie: a test relay in front of the
// gateway adds the session cookie of a signed-in scripted browser.
func TestPages_Chromium(t *testing.T) {
	needChromium(t)
	e := newEnv(t, nil)
	id := e.registerClient(`{"redirect_uris":["http://127.0.0.1:7777/callback"],"token_endpoint_auth_method":"none","client_name":"Screenshot Client"}`)["client_id"].(string)
	b := newBrowser(t)
	e.signIn(b, aliceKey)
	u, _ := url.Parse(e.pub)
	var cookie string
	for _, c := range b.c.Jar.Cookies(u) {
		cookie = c.Name + "=" + c.Value
	}
	if cookie == "" {
		t.Fatal("no session cookie")
	}
	// A relay that adds the cookie, so Chromium sees the signed-in pages.
	relay := e.serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2, _ := http.NewRequestWithContext(r.Context(), r.Method, e.pub+r.URL.RequestURI(), r.Body)
		r2.Header = r.Header.Clone()
		r2.Header.Del("X-MCPGate-Public-URL")
		r2.Header.Set("X-Test-Public-URL", e.pub)
		r2.Header.Set("Cookie", cookie)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(r2)
		if err != nil {
			http.Error(w, "relay", http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		_, _ = w.Write(buf.Bytes())
	}))

	q := e.authQuery(id)
	q.Set("redirect_uri", "http://127.0.0.1:7777/callback")
	t.Run("sign-in", func(t *testing.T) {
		r := call(t, http.MethodGet, e.authorizeURL(q), nil, "")
		_, dom := chromium(t, r.location(t).String())
		if !strings.Contains(dom, "Sign in to the gateway") || !strings.Contains(dom, `name="key"`) {
			t.Errorf("DOM: %s", dom)
		}
	})
	t.Run("consent", func(t *testing.T) {
		_, dom := chromium(t, relay+"/authorize?"+q.Encode())
		if !strings.Contains(dom, "Screenshot Client") || !strings.Contains(dom, "127.0.0.1:7777") || !strings.Contains(dom, "notes.read") {
			t.Errorf("DOM lacks the client name or redirect host: %s", dom)
		}
	})
	t.Run("connections", func(t *testing.T) {
		now := timestamppb.Now()
		if _, err := e.st.PutGrant(t.Context(), &vaultv1.Connection{
			Principal: "alice", Server: "Gmail", Scopes: []string{"notes.read", "notes.write"},
			State: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, CreateTime: now, UpdateTime: now, HasRefreshToken: true,
		}, &storev1.UpstreamToken{AccessToken: "upstream-secret-token", RefreshToken: "upstream-secret-refresh"}, 0); err != nil {
			t.Fatal(err)
		}
		e.sync()
		_, dom := chromium(t, relay+"/connections")
		for _, want := range []string{"Your connections", "alice", "Gmail", "notes.read notes.write", "connected", "Disconnect"} {
			if !strings.Contains(dom, want) {
				t.Errorf("DOM lacks %q: %s", want, dom)
			}
		}
		if strings.Contains(dom, "upstream-secret") {
			t.Errorf("the page shows a token")
		}
	})
}
