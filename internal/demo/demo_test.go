package demo_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/demo"
)

func TestUpstream(t *testing.T) {
	up, err := demo.Start("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = up.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	progress := make(chan *mcp.ProgressNotificationParams, 16)
	c := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress <- req.Params
		},
	})
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: up.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Tools) != 2 {
		t.Errorf("tools: %+v", tools.Tools)
	}
	tests := []struct {
		name      string
		args      map[string]any
		wantText  string
		wantError bool
		progress  int
	}{
		{"echo", map[string]any{"text": "hello"}, "hello", false, 0},
		{"countdown", map[string]any{"from": 3, "delay_ms": 1}, "liftoff", false, 3},
		{"countdown", map[string]any{"from": 0}, "", true, 0},
		{"countdown", map[string]any{"from": 2, "delay_ms": 5000}, "", true, 0},
	}
	for _, tc := range tests {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tc.name, Arguments: tc.args, Meta: mcp.Meta{"progressToken": "tok"}})
		if err != nil {
			t.Fatalf("%s %v: %v", tc.name, tc.args, err)
		}
		if res.IsError != tc.wantError {
			t.Errorf("%s %v: IsError = %v", tc.name, tc.args, res.IsError)
		}
		if !tc.wantError {
			if txt, ok := res.Content[0].(*mcp.TextContent); !ok || txt.Text != tc.wantText {
				t.Errorf("%s %v: content %+v", tc.name, tc.args, res.Content)
			}
		}
		for i := range tc.progress {
			select {
			case p := <-progress:
				if p.ProgressToken != "tok" || p.Progress != float64(i+1) || p.Total != 3 {
					t.Errorf("progress %d: %+v", i, p)
				}
			case <-ctx.Done():
				t.Fatalf("progress %d never arrived", i)
			}
		}
	}
}
