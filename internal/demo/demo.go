// Package demo is the MCP server behind the `echo` route that `mcpgate dev`
// ships when it runs without a configuration file.
package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// EchoInput is the echo tool's argument.
type EchoInput struct {
	Text string `json:"text" jsonschema:"the text to send back"`
}

// CountdownInput is the countdown tool's argument.
type CountdownInput struct {
	From int `json:"from" jsonschema:"the number to count down from (1-20)"`
	// DelayMS is the pause between two progress notifications.
	DelayMS int `json:"delay_ms,omitempty" jsonschema:"milliseconds between steps (0-2000, default 100)"`
}

// NewServer returns the demo MCP server: `echo` returns its text and
// `countdown` sends one progress notification per step before its result.
func NewServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "mcpgate-demo", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Returns the text it is given."},
		func(_ context.Context, _ *mcp.CallToolRequest, in EchoInput) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "countdown", Description: "Counts down, sending a progress notification per step, then returns."},
		countdown)
	return s
}

func countdown(ctx context.Context, req *mcp.CallToolRequest, in CountdownInput) (*mcp.CallToolResult, any, error) {
	if in.From < 1 || in.From > 20 {
		return nil, nil, errors.New("from must be between 1 and 20")
	}
	if in.DelayMS < 0 || in.DelayMS > 2000 {
		return nil, nil, errors.New("delay_ms must be between 0 and 2000")
	}
	delay := 100 * time.Millisecond
	if in.DelayMS > 0 {
		delay = time.Duration(in.DelayMS) * time.Millisecond
	}
	token := req.Params.GetProgressToken()
	for i := in.From; i > 0; i-- {
		if token != nil {
			err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{
				ProgressToken: token,
				Message:       fmt.Sprint(i),
				Progress:      float64(in.From - i + 1),
				Total:         float64(in.From),
			})
			if err != nil {
				return nil, nil, fmt.Errorf("notify progress: %w", err)
			}
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "liftoff"}}}, nil, nil
}

// Handler serves the demo server over MCP Streamable HTTP.
func Handler(log *slog.Logger) http.Handler {
	s := NewServer()
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{Logger: log})
}

// Upstream is the demo server running on a loopback listener.
type Upstream struct {
	// URL is the MCP endpoint, e.g. http://127.0.0.1:41234/mcp.
	URL string
	srv *http.Server
}

// Start serves the demo server on addr (e.g. "127.0.0.1:0") at /mcp until
// Close.
func Start(addr string, log *slog.Logger) (*Upstream, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo upstream listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/mcp", Handler(log))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return &Upstream{URL: "http://" + ln.Addr().String() + "/mcp", srv: srv}, nil
}

// Close stops the server; open streams are cut after ctx ends.
func (u *Upstream) Close(ctx context.Context) error {
	if err := u.srv.Shutdown(ctx); err != nil {
		_ = u.srv.Close()
		return fmt.Errorf("demo upstream shutdown: %w", err)
	}
	return nil
}
