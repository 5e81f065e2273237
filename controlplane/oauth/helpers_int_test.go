package oauth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
	"github.com/mcpgate/mcpgate/internal/oauthdemo"
)

// The vault's refresher is what the gateway stores grants with.
var _ oauth.Grants = (*grants.Grants)(nil)

// API keys of the test principals.
const (
	aliceKey   = "mcpg_alice_000000000000000000000000"
	bobKey     = "mcpg_bob_00000000000000000000000000"
	malloryKey = "mcpg_mallory_000000000000000000000000"
	loopbackCB = "http://127.0.0.1/cb"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// syncBuffer collects log output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a gateway authorization server over a real embedded etcd, with
// the demo OAuth provider as the upstream of the Gmail route.
type env struct {
	t     *testing.T
	etcd  *etcdtest.Server
	st    *store.Store
	pub   string // the gateway's public URL
	up    *oauthdemo.Provider
	upURL string
	clock *clock
	logs  *syncBuffer
	as    *oauth.Server // the authorization server behind pub
}

// newEnv seeds principals alice and bob (every server), mallory (GitHub
// only), the oauth2 route Gmail (upstream: the demo provider) and the plain
// route GitHub.
func newEnv(t *testing.T, mod func(*oauth.Config)) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{}, logs: &syncBuffer{}}
	e.etcd = etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e.st = store.New(e.etcd.Client(t), kr, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := e.st.WaitSynced(t.Context()); err != nil {
		t.Fatal(err)
	}
	cfg := oauth.Config{Now: e.clock.Now, Grants: grants.New(e.st, grants.Config{}, slog.New(slog.DiscardHandler))}
	if mod != nil {
		mod(&cfg)
	}
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.as = oauth.New(e.st, cfg, log)
	e.pub = e.serve(e.as)

	e.up = oauthdemo.New(oauthdemo.Config{
		ClientID: "gw-client", ClientSecret: "gw-secret",
		RedirectURIs: []string{e.pub + "/oauth/callback"},
		Scopes:       []string{"notes.read", "notes.write"},
	}, slog.New(slog.DiscardHandler))
	upTS := httptest.NewServer(e.up.Handler())
	t.Cleanup(upTS.Close)
	e.upURL = upTS.URL
	e.up.SetIssuer(upTS.URL)

	e.putServer(&configv1.McpServer{
		Name: "Gmail", Url: upTS.URL + "/mcp", AuthType: configv1.AuthType_AUTH_TYPE_OAUTH2,
		Oauth2Flow: configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE, ClientId: "gw-client", ClientSecret: "gw-secret",
		AuthorizationUrl: upTS.URL + "/authorize", TokenUrl: upTS.URL + "/token", RevocationUrl: upTS.URL + "/revoke",
		Issuer: upTS.URL, Scopes: []string{"notes.read", "notes.write"},
	}, &storev1.ServerSecrets{ClientSecret: "gw-secret"})
	e.putServer(&configv1.McpServer{
		Name: "GitHub", Url: "https://api.github.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_NONE,
		Scopes: []string{"repo", "read:org"},
	}, nil)
	e.putPrincipal("alice", "*")
	e.putPrincipal("bob", "*")
	e.putPrincipal("mallory", "GitHub")
	e.putKey("alice", aliceKey)
	e.putKey("bob", bobKey)
	e.putKey("mallory", malloryKey)
	return e
}

// serve starts h behind a stand-in for the data-plane relay: it sets the
// public URL, moves Authorization to X-MCPGate-Client-Authorization and
// sets the client address (X-Test-Addr, default 192.0.2.1). A request may
// override the public URL with X-Test-Public-URL.
func (e *env) serve(h http.Handler) string {
	var pub string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := pub
		if v := r.Header.Get("X-Test-Public-URL"); v != "" {
			p = v
		}
		if v, ok := r.Header["X-Test-Public-Url"]; ok && len(v) == 1 && v[0] == "-" {
			p = ""
		}
		r.Header.Del("X-Test-Public-URL")
		if p != "" {
			r.Header.Set(wire.HeaderPublicURL, p)
		}
		if a := r.Header.Get("Authorization"); a != "" {
			r.Header.Set(wire.HeaderClientAuthorization, a)
			r.Header.Del("Authorization")
		}
		addr := r.Header.Get("X-Test-Addr")
		if addr == "" {
			addr = "192.0.2.1"
		}
		r.Header.Del("X-Test-Addr")
		r.Header.Set(wire.HeaderClientAddress, addr)
		if standInResource(w, r, p) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	e.t.Cleanup(ts.Close)
	pub = ts.URL
	return pub
}

func (e *env) putServer(def *configv1.McpServer, sec *storev1.ServerSecrets) {
	e.t.Helper()
	rev, err := e.st.PutServer(e.t.Context(), def, sec, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(rev)
}

func (e *env) putPrincipal(name string, servers ...string) {
	e.t.Helper()
	rev, err := e.st.PutPrincipal(e.t.Context(), &configv1.Principal{Name: name, Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: servers}, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(rev)
}

func (e *env) putKey(principal, key string) {
	e.t.Helper()
	sum := store.HashKey(key)
	rev, err := e.st.PutKey(e.t.Context(), &storev1.KeyRecord{
		Key:    &configv1.ApiKey{Id: store.KeyID(sum), Name: principal + "-key", Principal: principal},
		Sha256: sum[:],
	}, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(rev)
}

func (e *env) wait(rev int64) {
	e.t.Helper()
	if err := e.st.WaitRevision(e.t.Context(), rev); err != nil {
		e.t.Fatal(err)
	}
}

// ---- HTTP helpers

type response struct {
	status int
	header http.Header
	body   string
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body is not JSON (%v): %q", err, r.body)
	}
	return m
}

// location parses the Location header.
func (r response) location(t *testing.T) *url.URL {
	t.Helper()
	l := r.header.Get("Location")
	if l == "" {
		t.Fatalf("no Location header (status %d, body %q)", r.status, r.body)
	}
	u, err := url.Parse(l)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// browser is a scripted browser: a cookie jar and no automatic redirects.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(req *http.Request) response {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

func (b *browser) get(u string) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) response {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// formValue extracts a hidden input's value from a page.
func formValue(t *testing.T, page, name string) string {
	t.Helper()
	m := regexp.MustCompile(`name="` + regexp.QuoteMeta(name) + `" value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form field %q in page:\n%s", name, page)
	}
	return html.UnescapeString(m[1])
}

// call sends one request from a non-browser client (an MCP client).
func call(t *testing.T, method, u string, header http.Header, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func formHeader() http.Header {
	return http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
}

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// ---- OAuth helpers

const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-test-verifier"

func challenge(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// registerClient registers a client and returns its response body.
func (e *env) registerClient(body string) map[string]any {
	e.t.Helper()
	r := call(e.t, http.MethodPost, e.pub+"/register", jsonHeader(), body)
	if r.status != http.StatusCreated {
		e.t.Fatalf("register: %d %s", r.status, r.body)
	}
	return r.json(e.t)
}

// publicClient registers a public client with the loopback redirect.
func (e *env) publicClient(name string) string {
	e.t.Helper()
	m := e.registerClient(`{"redirect_uris":["` + loopbackCB + `"],"token_endpoint_auth_method":"none",` +
		`"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"client_name":"` + name + `","application_type":"native"}`)
	return m["client_id"].(string)
}

// authQuery is the checklist's base authorization query for the Gmail route.
func (e *env) authQuery(clientID string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {loopbackCB},
		"code_challenge":        {challenge(verifier)},
		"code_challenge_method": {"S256"},
		"state":                 {"S1"},
		"scope":                 {"notes.read"},
		"resource":              {e.pub + "/Gmail/mcp"},
	}
}

func (e *env) authorizeURL(q url.Values) string { return e.pub + "/authorize?" + q.Encode() }

// signIn signs the browser in with key.
func (e *env) signIn(b *browser, key string) {
	e.t.Helper()
	r := b.post(e.pub+"/signin", url.Values{"key": {key}, "next": {"connections"}})
	if r.status != http.StatusSeeOther {
		e.t.Fatalf("sign in: %d %s", r.status, r.body)
	}
}

// consentPage runs /authorize in a signed-in browser and returns the
// consent page.
func (e *env) consentPage(b *browser, q url.Values) response {
	e.t.Helper()
	r := b.get(e.authorizeURL(q))
	if r.status != http.StatusOK {
		e.t.Fatalf("authorize: want the consent page, got %d %s %s", r.status, r.header.Get("Location"), r.body)
	}
	return r
}

// approve posts Approve on a consent page.
func (e *env) approve(b *browser, page response, action string) response {
	e.t.Helper()
	return b.post(e.pub+"/consent", url.Values{
		"request": {formValue(e.t, page.body, "request")},
		"csrf":    {formValue(e.t, page.body, "csrf")},
		"action":  {action},
	})
}

// upstreamApprove follows a redirect to the demo provider, approves as
// user and returns the provider's redirect back to the gateway callback.
func (e *env) upstreamApprove(b *browser, to *url.URL, user string) *url.URL {
	e.t.Helper()
	page := b.get(to.String())
	if page.status != http.StatusOK {
		e.t.Fatalf("upstream authorize: %d %s", page.status, page.body)
	}
	r := b.post(e.upURL+"/authorize", url.Values{"request": {formValue(e.t, page.body, "request")}, "user": {user}, "action": {"approve"}})
	if r.status != http.StatusSeeOther {
		e.t.Fatalf("upstream consent: %d %s", r.status, r.body)
	}
	return r.location(e.t)
}

// code runs a whole authorization for clientID with query q in a browser
// signed in as key (the upstream user is the principal's name) and returns
// the client redirect.
func (e *env) code(b *browser, q url.Values, user string) *url.URL {
	e.t.Helper()
	r := b.get(e.authorizeURL(q))
	if r.status == http.StatusOK {
		r = e.approve(b, r, "approve")
	}
	if r.status != http.StatusFound {
		e.t.Fatalf("authorize: %d %s", r.status, r.body)
	}
	loc := r.location(e.t)
	if strings.HasPrefix(loc.String(), e.upURL) {
		cb := e.upstreamApprove(b, loc, user)
		r = b.get(cb.String())
		if r.status != http.StatusFound {
			e.t.Fatalf("callback: %d %s", r.status, r.body)
		}
		loc = r.location(e.t)
	}
	if loc.Query().Get("code") == "" {
		e.t.Fatalf("no code in %s", loc)
	}
	return loc
}

// exchange redeems a code for the base query's client.
func (e *env) exchange(clientID, code string, extra url.Values) response {
	e.t.Helper()
	f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
		"redirect_uri": {loopbackCB}, "client_id": {clientID}, "resource": {e.pub + "/Gmail/mcp"}}
	for k, v := range extra {
		if v == nil {
			delete(f, k)
		} else {
			f[k] = v
		}
	}
	return call(e.t, http.MethodPost, e.pub+"/token", formHeader(), f.Encode())
}

// accessRecord reads a gateway access token's record straight from etcd.
func (e *env) accessRecord(token string) (*storev1.AccessTokenRecord, bool) {
	e.t.Helper()
	b, _, err := e.st.Get(e.t.Context(), store.KindAccessToken, store.KeyID(sha256.Sum256([]byte(token))))
	if err != nil {
		return nil, false
	}
	var r storev1.AccessTokenRecord
	if err := proto.Unmarshal(b, &r); err != nil {
		e.t.Fatal(err)
	}
	return &r, true
}

func (e *env) count(kind string) int {
	e.t.Helper()
	m, err := e.st.List(e.t.Context(), kind)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(m)
}

// wantPageHeaders checks the headers every HTML page carries.
func wantPageHeaders(t *testing.T, r response) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Type":    "text/html; charset=utf-8",
		"X-Frame-Options": "DENY",
		"Cache-Control":   "no-store",
	} {
		if got := r.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
}

// wantJSONError checks an OAuth JSON error response.
func wantJSONError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := r.json(t)["error"]; got != code {
		t.Errorf("error = %v, want %s; body %s", got, code, r.body)
	}
}

// wantRedirectError checks an authorization error redirected to the client.
func wantRedirectError(t *testing.T, e *env, r response, code string) {
	t.Helper()
	if r.status != http.StatusFound {
		t.Fatalf("status %d, want 302; body %s", r.status, r.body)
	}
	loc := r.location(t)
	q := loc.Query()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != loopbackCB {
		t.Errorf("redirected to %s", got)
	}
	if q.Get("error") != code || q.Get("state") != "S1" || q.Get("iss") != e.pub {
		t.Errorf("redirect query %v, want error=%s state=S1 iss=%s", q, code, e.pub)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func sha(token string) [32]byte { return sha256.Sum256([]byte(token)) }

func idOf(token string) string { return store.KeyID(sha(token)) }

// sync waits until the store's cache has seen every write made so far.
func (e *env) sync() {
	e.t.Helper()
	rev, err := e.st.PutLeased(e.t.Context(), "testsync", fmt.Sprint(time.Now().UnixNano()), []byte("x"), time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	e.wait(rev)
}

// standInResource plays the data plane's part for the Gmail route: a 401
// challenge on /Gmail/mcp and its protected resource metadata.
func standInResource(w http.ResponseWriter, r *http.Request, pub string) bool {
	prm := "/.well-known/oauth-protected-resource/Gmail/mcp"
	switch r.URL.Path {
	case "/Gmail/mcp":
		w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="`+pub+prm+`", scope="notes.read"`)
		w.WriteHeader(http.StatusUnauthorized)
	case prm:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"resource": pub + "/Gmail/mcp", "authorization_servers": []string{pub},
			"scopes_supported": []string{"notes.read", "notes.write"}, "bearer_methods_supported": []string{"header"},
		})
	default:
		return false
	}
	return true
}
