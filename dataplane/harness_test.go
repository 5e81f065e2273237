package dataplane_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	"github.com/mcpgate/mcpgate/dataplane"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

const dpToken = "dp-secret-token"

// route describes one server as the fake control plane sees it.
type route struct {
	mode       string // none, static, authcode, passthrough
	upstream   string
	scopes     []string
	principals map[string]bool // principals with a grant on the route
	vault      map[string]bool // authcode: principals with an upstream grant
	allowed    []string
	disallowed []string
	protocol   string // the server's protocol_version setting
}

// fakeCP is an AuthorizeService served over real Connect that decides like
// the control plane would, from a small fixed world: keys mcpg_alice and
// mcpg_bob, gateway token tok_alice.
type fakeCP struct {
	authorizev1connect.UnimplementedAuthorizeServiceHandler
	srv  *httptest.Server
	down atomic.Bool

	mu        sync.Mutex
	routes    map[string]*route
	virtuals  map[string][]aggDef // aggregate routes besides the root "" (aggregate_test.go)
	keys      []*authorizev1.SessionKey
	requests  []*authorizev1.AuthorizeRequest
	reports   []*authorizev1.ReportUpstreamUnauthorizedRequest
	relayed   []*http.Request
	relayBody []string

	// The decision cache's side (decisioncache_test.go): with cacheAgeMs
	// set, ALLOWs carry it and rev; with watch set, WatchInvalidations
	// streams its messages.
	cacheAgeMs atomic.Int64
	rev        atomic.Int64
	watch      *fakeWatch
}

func newFakeCP(t testing.TB) *fakeCP {
	t.Helper()
	f := &fakeCP{
		routes: map[string]*route{},
		keys:   []*authorizev1.SessionKey{{Id: "k1", Key: bytes.Repeat([]byte{1}, 32)}},
	}
	mux := http.NewServeMux()
	path, h := authorizev1connect.NewAuthorizeServiceHandler(f)
	mux.Handle(path, h)
	mux.HandleFunc("/relay/", f.relay)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+dpToken {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCP) setRoute(name string, r *route) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[name] = r
}

func principalOf(c *authorizev1.Credentials) string {
	switch {
	case c.GetApiKey() == "mcpg_alice", c.GetBearerToken() == "tok_alice":
		return "alice"
	case c.GetApiKey() == "mcpg_bob":
		return "bob"
	}
	return ""
}

func (f *fakeCP) Authorize(ctx context.Context, req *authorizev1.AuthorizeRequest) (*authorizev1.AuthorizeResponse, error) {
	f.mu.Lock()
	f.requests = append(f.requests, req)
	rt := f.routes[req.GetRoute()]
	f.mu.Unlock()
	c := req.GetCredentials()
	switch c.GetApiKey() {
	case "mcpg_unspec":
		return &authorizev1.AuthorizeResponse{}, nil
	case "mcpg_future":
		return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision(42), Allow: &authorizev1.Allow{UpstreamUrl: "http://127.0.0.1:1/mcp"}}, nil
	case "mcpg_err":
		return nil, connect.NewError(connect.CodeInternal, errors.New("internal error"))
	case "mcpg_misconfigured":
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("server misconfigured"))
	case "mcpg_unavailable":
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("upstream token endpoint unavailable"))
	case "mcpg_slow":
		<-ctx.Done()
		return nil, connect.NewError(connect.CodeDeadlineExceeded, ctx.Err())
	}
	if res, ok := f.authorizeAggregate(ctx, req); ok {
		return res, nil
	}
	if rt == nil {
		return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_NOT_FOUND, Reason: "unknown route"}, nil
	}
	chal := func(errCode, desc string) *authorizev1.AuthorizeResponse {
		return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_CHALLENGE, Challenge: &authorizev1.Challenge{
			Scopes: rt.scopes, Error: errCode, ErrorDescription: desc,
		}}
	}
	p := principalOf(c)
	if p == "" {
		if c.GetApiKey() != "" || c.GetBearerToken() != "" {
			return chal("invalid_token", "unknown credential"), nil
		}
		return chal("", ""), nil
	}
	if !rt.principals[p] {
		return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Principal: p, Deny: &authorizev1.Deny{}}, nil
	}
	// A rate limit refuses tools over_limit (limit writes) and
	// over_limit_hostile (an id outside the grammar).
	if lid, ok := map[string]string{"over_limit": "writes", "over_limit_hostile": "w\"x\n"}[req.GetToolName()]; ok {
		return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_RATE_LIMITED, Principal: p, KeyId: fakeKeyID(c.GetApiKey()),
			Reason: "rate limit exceeded", RateLimited: &authorizev1.RateLimited{LimitId: lid, Window: "minute", RetryAfterSeconds: 30}}, nil
	}
	if req.GetToolName() == "secret" {
		return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY, Principal: p, Deny: &authorizev1.Deny{}, Reason: "tool not allowed on this server"}, nil
	}
	allow := &authorizev1.Allow{UpstreamUrl: rt.upstream, AllowedTools: rt.allowed, DisallowedTools: rt.disallowed, UpstreamProtocolVersion: rt.protocol}
	switch rt.mode {
	case "static":
		allow.UpstreamHeaders = []*authorizev1.Header{{Name: "X-API-Key", Value: "upstream-static-secret"}}
	case "authcode":
		if !rt.vault[p] {
			res := chal("", "")
			res.Principal = p
			return res, nil
		}
		allow.VaultGrant = true
		allow.UpstreamHeaders = []*authorizev1.Header{{Name: "Authorization", Value: "Bearer upstream-" + p}}
	case "passthrough":
		if c.GetPassthroughAuthorization() == "" {
			res := chal("", "")
			res.Principal = p
			return res, nil
		}
		allow.UpstreamHeaders = []*authorizev1.Header{{Name: "Authorization", Value: c.GetPassthroughAuthorization()}}
	}
	return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_ALLOW, Allow: allow, Principal: p, KeyId: fakeKeyID(c.GetApiKey()),
		DecisionRevision: f.rev.Load(), CacheMaxAgeMs: f.cacheAgeMs.Load(), AccessTokenId: fakeTokenID(c.GetBearerToken())}, nil
}

// fakeKeyID is the key id the fake control plane reports for an API key.
func fakeKeyID(apiKey string) string {
	if apiKey == "" {
		return ""
	}
	return "id-" + strings.TrimPrefix(apiKey, "mcpg_") + "-0123456789"
}

func (f *fakeCP) DescribeRoute(_ context.Context, req *authorizev1.DescribeRouteRequest) (*authorizev1.DescribeRouteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rt := f.routes[req.GetRoute()]
	if rt == nil {
		return &authorizev1.DescribeRouteResponse{}, nil
	}
	return &authorizev1.DescribeRouteResponse{Found: true, Scopes: rt.scopes}, nil
}

func (f *fakeCP) GetSessionKeys(context.Context, *authorizev1.GetSessionKeysRequest) (*authorizev1.GetSessionKeysResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &authorizev1.GetSessionKeysResponse{Keys: f.keys}, nil
}

func (f *fakeCP) ReportUpstreamUnauthorized(_ context.Context, req *authorizev1.ReportUpstreamUnauthorizedRequest) (*authorizev1.ReportUpstreamUnauthorizedResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, req)
	return &authorizev1.ReportUpstreamUnauthorizedResponse{}, nil
}

func (f *fakeCP) relay(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.relayed = append(f.relayed, r.Clone(context.Background()))
	f.relayBody = append(f.relayBody, string(b))
	f.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "mcpgate_flow", Value: "abc", Path: "/"})
	w.Header().Set("Location", "https://accounts.example.com/o/oauth2/auth?state=s")
	w.WriteHeader(http.StatusFound)
}

// upstream is an official-SDK MCP server behind a handler that records every
// request header it sees.
type upstream struct {
	srv         *httptest.Server
	release     chan struct{}
	releaseOnce sync.Once

	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	method string
	header http.Header
	body   string
}

type echoIn struct {
	Text string `json:"text"`
}

func newUpstream(t testing.TB, jsonResponse bool) *upstream {
	t.Helper()
	u := &upstream{release: make(chan struct{})}
	s := mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "echoes"}, func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + in.Text}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "secret", Description: "admin only"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "secret"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "slow", Description: "reports progress, then waits"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if tok := req.Params.GetProgressToken(); tok != nil {
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: 1, Message: "working"}); err != nil {
				return nil, nil, err
			}
		}
		select {
		case <-u.release:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{JSONResponse: jsonResponse})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{method: r.Method, header: r.Header.Clone(), body: string(b)})
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	t.Cleanup(u.Release) // runs first: a stuck tool must not block Close
	return u
}

// Release lets the slow tool finish.
func (u *upstream) Release() { u.releaseOnce.Do(func() { close(u.release) }) }

func (u *upstream) url() string { return u.srv.URL + "/mcp" }

func (u *upstream) requests() []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenRequest(nil), u.seen...)
}

// lockedBuffer collects the proxy's logs so tests can assert no secret is
// ever logged.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// gateway is a Proxy served by httptest at its own public URL. Every
// response status is checked: a 500 fails the test.
type gateway struct {
	srv   *httptest.Server
	proxy *dataplane.Proxy
	logs  *lockedBuffer
}

// secretsNeverLogged are values that must not appear in logs.
var secretsNeverLogged = []string{"mcpg_", "tok_alice", "upstream-alice", "upstream-static-secret", "up-token", "query-token", dpToken}

func newGateway(t testing.TB, cp *fakeCP, mod func(*dataplane.Config)) *gateway {
	t.Helper()
	g := &gateway{logs: &lockedBuffer{}}
	var ready atomic.Pointer[dataplane.Proxy]
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWatch{ResponseWriter: w}
		ready.Load().ServeHTTP(sw, r)
		if sw.code == http.StatusInternalServerError {
			t.Errorf("%s %s answered 500", r.Method, r.URL.Path)
		}
	}))
	t.Cleanup(g.srv.Close)
	cfg := dataplane.Config{
		PublicURL:        g.srv.URL,
		ControlPlaneURLs: []string{cp.srv.URL},
		DataPlaneToken:   dpToken,
		AllowedOrigins:   []string{"http://localhost:6274"},
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := dataplane.New(cfg, slog.New(slog.NewJSONHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	g.proxy = p
	ready.Store(p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		logs := g.logs.String()
		for _, s := range secretsNeverLogged {
			if strings.Contains(logs, s) {
				t.Errorf("logs contain %q", s)
			}
		}
	})
	return g
}

type statusWatch struct {
	http.ResponseWriter
	code int
}

func (s *statusWatch) WriteHeader(c int) {
	if s.code == 0 {
		s.code = c
	}
	s.ResponseWriter.WriteHeader(c)
}

func (s *statusWatch) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWatch) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// do sends a raw request to the gateway and returns status, headers, body.
func (g *gateway) do(t *testing.T, method, path string, header map[string]string, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, g.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// keyTransport adds an admission header to every request of an SDK client
// and records every response's status and headers.
type keyTransport struct {
	header, value string

	mu    sync.Mutex
	resps []recordedResponse
}

type recordedResponse struct {
	method string
	status int
	header http.Header
}

func (k *keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(k.header, k.value)
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		k.mu.Lock()
		k.resps = append(k.resps, recordedResponse{method: r.Method, status: resp.StatusCode, header: resp.Header.Clone()})
		k.mu.Unlock()
	}
	return resp, err
}

func (k *keyTransport) responses() []recordedResponse {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]recordedResponse(nil), k.resps...)
}

// connectClient runs the official SDK client against route on g.
func connectClient(t *testing.T, g *gateway, route string, kt *keyTransport, version string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1.0.0"}, opts)
	tr := &mcp.StreamableClientTransport{Endpoint: g.srv.URL + "/" + route + "/mcp", HTTPClient: &http.Client{Transport: kt}, MaxRetries: -1}
	cs, err := c.Connect(t.Context(), tr, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect %s: %v", route, err)
	}
	return cs
}

// newStatusServer answers every request with status and WWW-Authenticate.
func newStatusServer(status int, www string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if www != "" {
			w.Header().Set("WWW-Authenticate", www)
		}
		if status == 0 {
			status = http.StatusOK
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"error":"invalid_token"}`)
	}))
}
