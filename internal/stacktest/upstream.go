package stacktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Seen is one request an upstream received.
type Seen struct {
	Method string
	Path   string
	Header http.Header
	// RPCMethod and Tool are the JSON-RPC method and params.name of a POST
	// body holding a single request.
	RPCMethod string
	Tool      string
}

// Recorder wraps an upstream handler and records every request's headers.
// It also signals each GET the upstream answered with 200 (a standalone
// SSE stream the upstream has claimed by then).
type Recorder struct {
	mu      sync.Mutex
	seen    []Seen
	streams chan struct{}
	once    sync.Once
}

func (r *Recorder) init() { r.once.Do(func() { r.streams = make(chan struct{}, 64) }) }

// Wrap returns h behind the recorder.
func (r *Recorder) Wrap(h http.Handler) http.Handler {
	r.init()
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		seen := Seen{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone()}
		if req.Body != nil && req.Method == http.MethodPost {
			b, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(b))
			var msg struct {
				Method string `json:"method"`
				Params struct {
					Name string `json:"name"`
				} `json:"params"`
			}
			if json.Unmarshal(b, &msg) == nil {
				seen.RPCMethod, seen.Tool = msg.Method, msg.Params.Name
			}
		}
		r.mu.Lock()
		r.seen = append(r.seen, seen)
		r.mu.Unlock()
		if req.Method == http.MethodGet {
			w = &getSignal{ResponseWriter: w, c: r.streams}
		}
		h.ServeHTTP(w, req)
	})
}

// Requests returns what the upstream has received so far.
func (r *Recorder) Requests() []Seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Seen(nil), r.seen...)
}

// Reset forgets the recorded requests.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = nil
}

// Streams receives one value per GET the upstream answered with 200.
func (r *Recorder) Streams() <-chan struct{} {
	r.init()
	return r.streams
}

type getSignal struct {
	http.ResponseWriter
	c    chan struct{}
	sent bool
}

func (g *getSignal) WriteHeader(code int) {
	g.ResponseWriter.WriteHeader(code)
	if code == http.StatusOK && !g.sent {
		g.sent = true
		select {
		case g.c <- struct{}{}:
		default:
		}
	}
}

func (g *getSignal) Unwrap() http.ResponseWriter { return g.ResponseWriter }

func (g *getSignal) Flush() {
	if f, ok := g.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Upstream is an MCP server built with the official Go SDK for end-to-end
// tests. Tools:
//   - echo {text}: returns text;
//   - gated {key}: sends one progress notification, then does not return
//     until Release(key) (or the release tool) is called — so a client
//     that sees the result must have received the progress first;
//   - release {key}: releases gated;
//   - secret: returns "classified" (the stack's route disallows it).
type Upstream struct {
	Server   *mcp.Server
	Recorder *Recorder

	mu    sync.Mutex
	gates map[string]chan struct{}
}

// TextInput is echo's argument.
type TextInput struct {
	Text string `json:"text"`
}

// KeyInput is gated's and release's argument.
type KeyInput struct {
	Key string `json:"key"`
}

// NewUpstream builds the server.
func NewUpstream() *Upstream {
	u := &Upstream{Recorder: &Recorder{}, gates: map[string]chan struct{}{}}
	s := mcp.NewServer(&mcp.Implementation{Name: "stacktest-upstream", Version: "1.0.0"}, nil)
	text := func(s string) *mcp.CallToolResult {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
	}
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Returns its text."},
		func(_ context.Context, _ *mcp.CallToolRequest, in TextInput) (*mcp.CallToolResult, any, error) {
			return text(in.Text), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "gated", Description: "Reports progress, then waits to be released."},
		func(ctx context.Context, req *mcp.CallToolRequest, in KeyInput) (*mcp.CallToolResult, any, error) {
			tok := req.Params.GetProgressToken()
			if tok == nil {
				return nil, nil, errors.New("gated needs a progress token")
			}
			if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: 1, Total: 2, Message: "waiting"}); err != nil {
				return nil, nil, err
			}
			select {
			case <-u.gate(in.Key):
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			return text("released " + in.Key), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "release", Description: "Releases a gated call."},
		func(_ context.Context, _ *mcp.CallToolRequest, in KeyInput) (*mcp.CallToolResult, any, error) {
			u.Release(in.Key)
			return text("ok"), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "secret", Description: "Disallowed by the gateway."},
		func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return text("classified"), nil, nil
		})
	u.Server = s
	return u
}

func (u *Upstream) gate(key string) chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	g, ok := u.gates[key]
	if !ok {
		g = make(chan struct{})
		u.gates[key] = g
	}
	return g
}

// Release lets the gated call with key return (idempotent).
func (u *Upstream) Release(key string) {
	g := u.gate(key)
	u.mu.Lock()
	defer u.mu.Unlock()
	select {
	case <-g:
	default:
		close(g)
	}
}

// Handler serves the server over Streamable HTTP (not behind the recorder;
// Start wraps the whole upstream mux).
func (u *Upstream) Handler(log *slog.Logger) http.Handler {
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return u.Server },
		&mcp.StreamableHTTPOptions{Logger: log})
}
