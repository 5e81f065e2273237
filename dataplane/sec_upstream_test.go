package dataplane_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/dataplane"
)

const (
	rpcUpstreamRedirect = `{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"upstream MCP server answered with a redirect"}}`
	rpcUpstreamTimeout  = `{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"upstream MCP server did not answer in time"}}`
	rpcTooManyStreams   = `{"jsonrpc":"2.0","id":null,"error":{"code":-32006,"message":"too many concurrent requests for this principal"}}`
)

// recorder is a loopback server that records every request it receives.
type recorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		rec.seen = append(rec.seen, r.Header.Clone())
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) requests() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// hostileHeaders are response headers no upstream may set on a client.
var hostileHeaders = map[string]string{
	"Set-Cookie":                       "gw=stolen; Path=/",
	"Refresh":                          "0; url=http://evil.example/",
	"Link":                             "<http://evil.example/>; rel=preload",
	"Content-Security-Policy":          "default-src *",
	"Access-Control-Allow-Origin":      "*",
	"Access-Control-Allow-Credentials": "true",
	"Access-Control-Expose-Headers":    "Set-Cookie",
	"Strict-Transport-Security":        "max-age=0",
	"Www-Authenticate":                 `Bearer resource_metadata="http://evil.example/"`,
	"X-Upstream-Secret":                "leak",
	"Vary":                             "Cookie",
}

// TestSec04UpstreamRedirectNotRelayed: an upstream answering 3xx to a
// second listener gets the client 502 with a fixed JSON-RPC error (the
// request's id echoed), no Location and none of the upstream's other
// headers; the official SDK client, sending the gateway key on every
// request, never reaches the second listener. This also holds with a
// configured UpstreamClient that would follow redirects, and for every 3xx.
func TestSec04UpstreamRedirectNotRelayed(t *testing.T) {
	elsewhere := newRecorder(t)
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		code := http.StatusTemporaryRedirect
		if c, err := strconv.Atoi(r.URL.Query().Get("code")); err == nil {
			code = c
		}
		for k, v := range hostileHeaders {
			w.Header().Set(k, v)
		}
		w.Header().Set("Location", elsewhere.srv.URL+"/mcp")
		w.WriteHeader(code)
	}))
	t.Cleanup(hostile.Close)
	cp := newFakeCP(t)
	cp.setRoute("Hostile", &route{mode: "static", upstream: hostile.URL + "/mcp", principals: map[string]bool{"alice": true}})
	for _, code := range []int{300, 301, 302, 303, 304, 305, 307, 308, 399} {
		cp.setRoute("Hostile"+strconv.Itoa(code), &route{mode: "static", upstream: hostile.URL + "/mcp?code=" + strconv.Itoa(code), principals: map[string]bool{"alice": true}})
	}

	check := func(t *testing.T, g *gateway) {
		t.Run("sdk client", func(t *testing.T) {
			kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
			c := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1.0.0"}, nil)
			// The SDK's transport follows redirects with http.Client's
			// default policy; keyTransport adds the key to each hop.
			tr := &mcp.StreamableClientTransport{Endpoint: g.srv.URL + "/Hostile/mcp", HTTPClient: &http.Client{Transport: kt}, MaxRetries: -1}
			cs, err := c.Connect(t.Context(), tr, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
			if err == nil {
				cs.Close()
				t.Fatalf("connect through a redirecting upstream succeeded")
			}
			resps := kt.responses()
			if len(resps) != 1 || resps[0].status != http.StatusBadGateway || resps[0].header.Get("Location") != "" {
				t.Errorf("client saw %+v, want one 502 without Location", resps)
			}
		})
		for _, code := range []int{300, 301, 302, 303, 304, 305, 307, 308, 399} {
			t.Run(strconv.Itoa(code), func(t *testing.T) {
				resp, body := g.do(t, "POST", "/Hostile"+strconv.Itoa(code)+"/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), initBody)
				if resp.StatusCode != http.StatusBadGateway {
					t.Fatalf("status %d, want 502", resp.StatusCode)
				}
				if want := echoID(rpcUpstreamRedirect, initBody); body != want {
					t.Errorf("body %s, want %s", body, want)
				}
				if resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
				}
				for _, h := range append(slices.Collect(mapsKeys(hostileHeaders)), "Location") {
					if h == "Access-Control-Expose-Headers" {
						if got := resp.Header.Get(h); got != "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version" {
							t.Errorf("Expose-Headers %q", got)
						}
						continue
					}
					if v := resp.Header.Values(h); len(v) != 0 {
						t.Errorf("upstream header %s relayed: %q", h, v)
					}
				}
			})
		}
		if got := elsewhere.requests(); len(got) != 0 {
			t.Fatalf("the redirect target received %d requests (first: %v)", len(got), got[0])
		}
	}
	t.Run("default upstream client", func(t *testing.T) {
		check(t, newGateway(t, cp, nil))
	})
	t.Run("configured upstream client that follows redirects", func(t *testing.T) {
		check(t, newGateway(t, cp, func(c *dataplane.Config) { c.UpstreamClient = &http.Client{} }))
	})
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestSec04UpstreamResponseHeadersAllowlisted: of an upstream's response
// headers only the allowlisted ones reach the client, on JSON and SSE
// answers alike; the session id is replaced by the gateway's handle.
func TestSec04UpstreamResponseHeadersAllowlisted(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for k, v := range hostileHeaders {
			w.Header().Set(k, v)
		}
		w.Header().Set("Location", "http://evil.example/")
		w.Header().Set("Cache-Control", "no-cache, no-transform")
		w.Header().Set("Retry-After", "3")
		w.Header().Set("Mcp-Protocol-Version", "2025-11-25")
		w.Header().Set("Mcp-Session-Id", "upstream-session-1")
		if r.URL.Query().Get("sse") != "" {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
	}))
	t.Cleanup(up.Close)
	cp := newFakeCP(t)
	cp.setRoute("Json", &route{mode: "none", upstream: up.URL + "/mcp", principals: map[string]bool{"alice": true}})
	cp.setRoute("Sse", &route{mode: "none", upstream: up.URL + "/mcp?sse=1", principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, nil)
	for _, tc := range []struct {
		route, contentType string
		want               []string
	}{
		{route: "Json", contentType: "application/json",
			want: []string{"Access-Control-Expose-Headers", "Cache-Control", "Content-Length", "Content-Type", "Date", "Mcp-Protocol-Version", "Mcp-Session-Id", "Retry-After"}},
		{route: "Sse", contentType: "text/event-stream",
			want: []string{"Access-Control-Expose-Headers", "Cache-Control", "Content-Type", "Date", "Mcp-Protocol-Version", "Mcp-Session-Id", "Retry-After", "X-Accel-Buffering"}},
	} {
		t.Run(tc.route, func(t *testing.T) {
			resp, body := g.do(t, "POST", "/"+tc.route+"/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), initBody)
			if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"result"`) {
				t.Fatalf("status %d body %s", resp.StatusCode, body)
			}
			var got []string
			for k := range resp.Header {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("headers %q, want exactly %q", got, tc.want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != tc.contentType {
				t.Errorf("Content-Type %q", ct)
			}
			if sid := resp.Header.Get("Mcp-Session-Id"); sid == "" || sid == "upstream-session-1" {
				t.Errorf("Mcp-Session-Id %q: want the gateway's handle", sid)
			}
			if got := resp.Header.Get("Retry-After"); got != "3" {
				t.Errorf("Retry-After %q", got)
			}
		})
	}
}

// blockingUpstream answers GET with an SSE stream that starts with first
// and stays open until endStream or the request ends (reported on gone),
// and POST with a result or 202. With holdHeaders it never answers at all.
type blockingUpstream struct {
	srv  *httptest.Server
	gone chan string // the method of each request whose context ended
	hits atomic.Int64

	mu      sync.Mutex
	streams []chan struct{} // close to end the GET stream with that index
}

func newBlockingUpstream(t *testing.T, first string, holdHeaders bool) *blockingUpstream {
	t.Helper()
	u := &blockingUpstream{gone: make(chan string, 64)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		if holdHeaders {
			<-r.Context().Done()
			u.gone <- r.Method
			return
		}
		if r.Method != http.MethodGet {
			// Requests get a result; notifications, responses and DELETE 202.
			if !strings.Contains(string(b), `"id"`) || !strings.Contains(string(b), `"method"`) {
				w.WriteHeader(http.StatusAccepted)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{}}`)
			return
		}
		end := make(chan struct{})
		u.mu.Lock()
		u.streams = append(u.streams, end)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, first)
		w.(http.Flusher).Flush()
		select {
		case <-end:
		case <-r.Context().Done():
			u.gone <- r.Method
		}
	}))
	t.Cleanup(u.srv.Close)
	t.Cleanup(func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		for _, c := range u.streams {
			select {
			case <-c:
			default:
				close(c)
			}
		}
	})
	return u
}

func (u *blockingUpstream) endStream(i int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	close(u.streams[i])
}

// waitGone waits, for as long as the test may run, for the upstream to see
// a request of method end.
func (u *blockingUpstream) waitGone(t *testing.T, method string) {
	t.Helper()
	select {
	case m := <-u.gone:
		if m != method {
			t.Errorf("upstream %s request ended, want %s", m, method)
		}
	case <-t.Context().Done():
		t.Fatalf("the upstream %s request never ended", method)
	}
}

// open sends a request and returns the response with its body unread.
func (g *gateway) open(t *testing.T, ctx context.Context, method, path string, header map[string]string, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, g.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// TestSec05UpstreamHeaderTimeout: an upstream that never sends response
// headers gets the client a 504 with a fixed JSON-RPC error once the
// configured wait is over, and the upstream request is cancelled.
func TestSec05UpstreamHeaderTimeout(t *testing.T) {
	up := newBlockingUpstream(t, "", true)
	cp := newFakeCP(t)
	cp.setRoute("Mute", &route{mode: "none", upstream: up.srv.URL + "/mcp", principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, func(c *dataplane.Config) { c.UpstreamHeaderTimeout = 50 * time.Millisecond })
	for _, tc := range []struct{ method, body string }{{"POST", initBody}, {"GET", ""}} {
		t.Run(tc.method, func(t *testing.T) {
			h := with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"})
			resp, body := g.do(t, tc.method, "/Mute/mcp", h, tc.body)
			if resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("status %d, want 504; body %s", resp.StatusCode, body)
			}
			if want := echoID(rpcUpstreamTimeout, tc.body); body != want {
				t.Errorf("body %s, want %s", body, want)
			}
			if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v", resp.Header)
			}
			up.waitGone(t, tc.method)
		})
	}
}

const (
	sseEvent1   = "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"one\"}}\n\n"
	ssePartial2 = "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notif"
)

// TestSec05StreamLifetime: an endless upstream SSE stream ends cleanly at
// the configured lifetime — a well-formed end of the response (no
// transport error), after the last complete event and without the partial
// one — so a client resumes with Last-Event-ID; the upstream stream is
// cancelled.
func TestSec05StreamLifetime(t *testing.T) {
	up := newBlockingUpstream(t, sseEvent1+ssePartial2, false)
	cp := newFakeCP(t)
	cp.setRoute("Endless", &route{mode: "none", upstream: up.srv.URL + "/mcp", principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, func(c *dataplane.Config) { c.MaxStreamLifetime = 100 * time.Millisecond })
	resp := g.open(t, t.Context(), "GET", "/Endless/mcp", map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Accept": "text/event-stream", "Last-Event-ID": "0"}, "")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream did not end cleanly: %v (read %q)", err, b)
	}
	if string(b) != sseEvent1 {
		t.Errorf("stream %q, want exactly the complete event %q", b, sseEvent1)
	}
	up.waitGone(t, "GET")
}

// TestSec05StreamLifetimeSDKClientResumes: a tool call outlasting the
// stream lifetime still completes for the official SDK client: the gateway
// ends the call's SSE stream cleanly, the client resumes it with GET and
// Last-Event-ID, and the result arrives on the resumed stream.
func TestSec05StreamLifetimeSDKClientResumes(t *testing.T) {
	release := make(chan struct{})
	s := mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "slow", Description: "waits"}, func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)})
	resumed := make(chan struct{})
	var once sync.Once
	upSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.Header.Get("Last-Event-ID") != "" {
			once.Do(func() { close(resumed) })
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(upSrv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	cp := newFakeCP(t)
	cp.setRoute("Echo", &route{mode: "none", upstream: upSrv.URL + "/mcp", principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, func(c *dataplane.Config) { c.MaxStreamLifetime = 200 * time.Millisecond })
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	c := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1.0.0"}, nil)
	// Only the call's stream: the standalone stream, idle and without event
	// ids, is no progress to the SDK's retry budget.
	tr := &mcp.StreamableClientTransport{Endpoint: g.srv.URL + "/Echo/mcp", HTTPClient: &http.Client{Transport: kt}, MaxRetries: 2, DisableStandaloneSSE: true}
	cs, err := c.Connect(t.Context(), tr, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	type result struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "slow"})
		done <- result{res, err}
	}()
	select {
	case <-resumed:
	case r := <-done:
		t.Fatalf("call ended before its stream was cut: %v %v", r.res, r.err)
	case <-t.Context().Done():
		t.Fatalf("the client never resumed the call's stream")
	}
	close(release)
	r := <-done
	if r.err != nil {
		t.Fatalf("tools/call across the lifetime cut: %v", r.err)
	}
	if txt := r.res.Content[0].(*mcp.TextContent).Text; txt != "done" {
		t.Errorf("result %q", txt)
	}
}

// TestSec05StreamsPerPrincipal: past the configured number of concurrent
// streams a principal gets 429 with Retry-After and a fixed JSON-RPC error
// (its request id echoed), before anything reaches the upstream; other
// principals are unaffected; notifications, responses and DELETE still
// pass (a client at its bound can cancel and answer); an ended stream
// frees its slot.
func TestSec05StreamsPerPrincipal(t *testing.T) {
	up := newBlockingUpstream(t, ": open\n\n", false)
	cp := newFakeCP(t)
	cp.setRoute("Streams", &route{mode: "none", upstream: up.srv.URL + "/mcp", principals: map[string]bool{"alice": true, "bob": true}})
	g := newGateway(t, cp, func(c *dataplane.Config) { c.MaxStreamsPerPrincipal = 2 })
	alice := map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Accept": "text/event-stream"}
	var open []*http.Response
	for range 2 {
		resp := g.open(t, t.Context(), "GET", "/Streams/mcp", alice, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: status %d", len(open), resp.StatusCode)
		}
		// Read the comment the upstream sent: the stream is established.
		if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != ": open\n" {
			t.Fatalf("stream %d: %q %v", len(open), line, err)
		}
		open = append(open, resp)
	}
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()

	refused := func(t *testing.T, method, body string) {
		t.Helper()
		resp, got := g.do(t, method, "/Streams/mcp", with(alice), body)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("%s: status %d, want 429; body %s", method, resp.StatusCode, got)
		}
		if want := echoID(rpcTooManyStreams, body); got != want {
			t.Errorf("body %s, want %s", got, want)
		}
		if resp.Header.Get("Retry-After") != "5" || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", resp.Header)
		}
	}
	before := up.hits.Load()
	refused(t, "GET", "")
	refused(t, "POST", `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`)
	refused(t, "POST", `[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}},{"jsonrpc":"2.0","id":"x","method":"ping"}]`)
	if n := up.hits.Load() - before; n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}

	for _, tc := range []struct{ name, method, body string }{
		{"notification", "POST", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`},
		{"response", "POST", `{"jsonrpc":"2.0","id":5,"result":{}}`},
		{"delete", "DELETE", ""},
	} {
		resp, body := g.do(t, tc.method, "/Streams/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), tc.body)
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("%s at the bound: status %d, want the upstream's 202; body %s", tc.name, resp.StatusCode, body)
		}
	}

	bob := g.open(t, t.Context(), "GET", "/Streams/mcp", map[string]string{"X-MCPGate-API-Key": "mcpg_bob", "Accept": "text/event-stream"}, "")
	bob.Body.Close()
	if bob.StatusCode != http.StatusOK {
		t.Errorf("another principal: status %d, want 200", bob.StatusCode)
	}

	// The upstream ends the first stream; once the client has read its end,
	// the slot is free.
	up.endStream(0)
	if _, err := io.ReadAll(open[0].Body); err != nil {
		t.Fatalf("ended stream: %v", err)
	}
	resp := g.open(t, t.Context(), "GET", "/Streams/mcp", alice, "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after a stream ended: status %d, want 200", resp.StatusCode)
	}
}

// TestSec17HostAndOriginAgree: for a loopback public URL the Origin check
// accepts exactly the authorities the Host check accepts — every loopback
// name (localhost, 127.0.0.0/8, [::1]) with the public scheme and port —
// and still refuses foreign names, other ports and other schemes; for a
// public name only that name, with or without its default port.
func TestSec17HostAndOriginAgree(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	type entry struct {
		v  string
		ok bool
	}
	tables := []struct {
		public  string
		hosts   []entry
		origins []entry
	}{{
		public: "http://localhost:8080",
		hosts: []entry{
			{"localhost:8080", true}, {"LOCALHOST:8080", true}, {"127.0.0.1:8080", true}, {"127.0.0.2:8080", true},
			{"127.255.255.254:8080", true}, {"[::1]:8080", true},
			{"localhost", false}, {"localhost:8081", false}, {"127.0.0.1:80", false}, {"evil.example:8080", false},
			{"localhost.evil.example:8080", false}, {"127.1:8080", false}, {"[::ffff:127.0.0.1]:8080", false},
			{"0.0.0.0:8080", false}, {"[0:0:0:0:0:0:0:1]:8080", false}, {"localhost.:8080", false}, {"user@localhost:8080", false},
		},
		origins: []entry{
			{"", true}, {"http://localhost:8080", true}, {"http://127.0.0.1:8080", true}, {"http://127.9.9.9:8080", true},
			{"http://[::1]:8080", true}, {"http://localhost:6274", true},
			{"https://localhost:8080", false}, {"http://localhost:8081", false}, {"http://localhost", false},
			{"http://127.0.0.1", false}, {"http://evil.example", false}, {"http://evil.example:8080", false},
			{"http://localhost.evil.example:8080", false}, {"null", false}, {"http://[::ffff:127.0.0.1]:8080", false},
			{"http://user@localhost:8080", false},
		},
	}, {
		public: "https://gw.example.com",
		hosts: []entry{
			{"gw.example.com", true}, {"GW.example.com:443", true},
			{"gw.example.com:8443", false}, {"localhost:443", false}, {"127.0.0.1", false}, {"evil.example", false},
		},
		origins: []entry{
			{"", true}, {"https://gw.example.com", true}, {"https://gw.example.com:443", true}, {"http://localhost:6274", true},
			{"http://gw.example.com", false}, {"https://gw.example.com:8443", false}, {"https://localhost", false},
			{"https://127.0.0.1", false}, {"https://evil.example", false},
		},
	}}
	for _, tab := range tables {
		t.Run(tab.public, func(t *testing.T) {
			g := newGateway(t, cp, func(c *dataplane.Config) { c.PublicURL = tab.public })
			for _, host := range tab.hosts {
				for _, origin := range tab.origins {
					h := with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Host": host.v})
					if origin.v != "" {
						h["Origin"] = origin.v
					}
					resp, body := g.do(t, "POST", "/Echo/mcp", h, initBody)
					status, want := http.StatusOK, ""
					switch {
					case !host.ok:
						status, want = http.StatusForbidden, bodyBadHost
					case !origin.ok:
						status, want = http.StatusForbidden, bodyBadOrigin
					}
					if resp.StatusCode != status || want != "" && body != want || want == "" && !strings.Contains(body, `"result"`) {
						t.Errorf("Host %q Origin %q: %d %s, want %d %s", host.v, origin.v, resp.StatusCode, body, status, want)
						continue
					}
					acao := resp.Header.Get("Access-Control-Allow-Origin")
					switch {
					case status == http.StatusOK && origin.v != "" && acao == "":
						t.Errorf("Host %q Origin %q: no Access-Control-Allow-Origin", host.v, origin.v)
					case (status != http.StatusOK || origin.v == "") && acao != "":
						t.Errorf("Host %q Origin %q: Access-Control-Allow-Origin %q", host.v, origin.v, acao)
					}
				}
			}
		})
	}
}
