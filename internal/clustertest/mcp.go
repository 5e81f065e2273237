package clustertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/demo"
)

// Upstream is the demo MCP server (echo, countdown; official Go SDK) on
// loopback, counting the requests it receives.
type Upstream struct {
	URL      string
	requests atomic.Int64
}

// StartUpstream starts an upstream, closed by tb.Cleanup.
func StartUpstream(tb testing.TB) *Upstream {
	tb.Helper()
	u := &Upstream{}
	h := demo.Handler(slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	u.URL = srv.URL + "/mcp"
	return u
}

// Requests is how many HTTP requests reached the upstream.
func (u *Upstream) Requests() int64 { return u.requests.Load() }

// keyTransport presents a gateway API key on every request.
type keyTransport struct {
	key  string
	base http.RoundTripper
}

func (k keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-MCPGate-API-Key", k.key)
	return k.base.RoundTrip(r)
}

// Balancer is a client-side load balancer over data planes: each request
// goes to the next live target, as a regional load balancer would send it.
type Balancer struct {
	mu      sync.Mutex
	targets []string
	next    int
}

// NewBalancer balances over base URLs.
func NewBalancer(targets ...string) *Balancer { return &Balancer{targets: targets} }

// SetTargets replaces the live targets.
func (b *Balancer) SetTargets(targets ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.targets = targets
}

func (b *Balancer) pick() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.targets[b.next%len(b.targets)]
	b.next++
	return t
}

type balancedTransport struct {
	b    *Balancer
	base http.RoundTripper
}

func (t balancedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	u, err := url.Parse(t.b.pick())
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = u.Scheme, u.Host, u.Host
	return t.base.RoundTrip(r)
}

// Client is an MCP client (official Go SDK) session through a gateway.
type Client struct {
	*mcp.ClientSession
	progress chan struct{}
}

// ConnectOptions tune a client session.
type ConnectOptions struct {
	// Balancer spreads the session's requests over data planes (the
	// session's base URL is then only a placeholder).
	Balancer *Balancer
	// Standalone keeps the SDK's standalone GET stream and its reconnects
	// (default: off, so every failure surfaces on a call).
	Standalone bool
}

// Connect opens an MCP session on base/route/mcp with key.
func Connect(ctx context.Context, base, route, key string) (*Client, error) {
	return ConnectWith(ctx, base, route, key, ConnectOptions{})
}

// ConnectWith is Connect with options.
func ConnectWith(ctx context.Context, base, route, key string, o ConnectOptions) (*Client, error) {
	progress := make(chan struct{}, 64)
	c := mcp.NewClient(&mcp.Implementation{Name: "clustertest", Version: "1.0.0"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
			select {
			case progress <- struct{}{}:
			default:
			}
		},
	})
	var rt http.RoundTripper = http.DefaultTransport
	if o.Balancer != nil {
		rt = balancedTransport{b: o.Balancer, base: rt}
	}
	tr := &mcp.StreamableClientTransport{
		Endpoint:             base + "/" + route + "/mcp",
		HTTPClient:           &http.Client{Transport: keyTransport{key: key, base: rt}},
		MaxRetries:           -1,
		DisableStandaloneSSE: !o.Standalone,
	}
	if o.Standalone {
		tr.MaxRetries = 10
	}
	s, err := c.Connect(ctx, tr, nil)
	if err != nil {
		return nil, err
	}
	return &Client{ClientSession: s, progress: progress}, nil
}

// Echo calls the echo tool and checks the answer.
func (c *Client) Echo(ctx context.Context, text string) error {
	res, err := c.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": text}})
	if err != nil {
		return err
	}
	if res.IsError || len(res.Content) != 1 {
		return fmt.Errorf("echo: unexpected result %+v", res)
	}
	if tc, ok := res.Content[0].(*mcp.TextContent); !ok || tc.Text != text {
		return fmt.Errorf("echo: got %+v, want %q", res.Content[0], text)
	}
	return nil
}

// Post sends one raw JSON-RPC POST (no session) to base/route/mcp with key
// and returns the status, Retry-After and body. It is how tests see exact
// HTTP outcomes (401, 403, 503) that the SDK folds into errors.
func Post(ctx context.Context, base, route, key, body string) (status int, retryAfter, respBody string, err error) {
	return PostSession(ctx, base, route, key, "", body)
}

// PostSession is Post within an MCP session.
func PostSession(ctx context.Context, base, route, key, session, body string) (status int, retryAfter, respBody string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/"+route+"/mcp", strings.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if key != "" {
		req.Header.Set("X-MCPGate-API-Key", key)
	}
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b), nil
}

// InitializeBody is a JSON-RPC initialize request.
const InitializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"clustertest","version":"1"}}}`

// EchoCallBody is a JSON-RPC tools/call of echo.
const EchoCallBody = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"raw"}}}`

// Countdown calls the countdown tool (from steps, delayMS apart, one
// progress notification per step) and checks its result.
func (c *Client) Countdown(ctx context.Context, from, delayMS int) error {
	for drained := false; !drained; { // forget progress of earlier calls
		select {
		case <-c.progress:
		default:
			drained = true
		}
	}
	p := &mcp.CallToolParams{Name: "countdown", Arguments: map[string]any{"from": from, "delay_ms": delayMS}}
	p.SetProgressToken("clustertest")
	res, err := c.CallTool(ctx, p)
	if err != nil {
		return err
	}
	if res.IsError || len(res.Content) != 1 {
		return fmt.Errorf("countdown: unexpected result %+v", res)
	}
	if tc, ok := res.Content[0].(*mcp.TextContent); !ok || tc.Text != "liftoff" {
		return fmt.Errorf("countdown: got %+v", res.Content[0])
	}
	return nil
}

// WaitProgress waits for a progress notification.
func (c *Client) WaitProgress(ctx context.Context) error {
	select {
	case <-c.progress:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
