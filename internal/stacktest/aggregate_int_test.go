package stacktest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// TestGoSDK_Aggregate runs the official Go SDK client against the root
// aggregate /mcp of a whole stack (real control plane and data plane) with
// three members: echo (no upstream auth), gate (the stack's upstream, with
// its disallowed tool) and notes (the demo provider's authorization_code
// server, which alice has not connected yet). Merged tools/list, calls
// routed with progress, the unconnected member's call answered with the
// URL elicitation naming the gateway's connect page; once alice has
// connected notes (through the gateway's sign-in with upstream consent),
// the same client session calls it.
func TestGoSDK_Aggregate(t *testing.T) {
	s := stacktest.Start(t)
	alice := s.AddUser("alice", stacktest.EchoRoute, stacktest.GateRoute, stacktest.NotesRoute)
	var progress atomic.Int32
	client := mcp.NewClient(&mcp.Implementation{Name: "stacktest-aggregate", Version: "1"}, &mcp.ClientOptions{
		Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) {
			if progress.Add(1) == 1 {
				s.Upstream.Release("agg1")
			}
		},
	})
	// A 2025-11-25 session (the default client would speak 2026-07-28,
	// whose connect answer is an input_required URL elicitation: that path
	// is dataplane's TestAggregate2026ConnectThenCall).
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: s.PublicURL + "/mcp", HTTPClient: keyClient(alice)}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("initialize /mcp: %v", err)
	}
	defer cs.Close()

	names := func() []string {
		var out []string
		for tool, err := range cs.Tools(t.Context(), nil) {
			if err != nil {
				t.Fatalf("tools/list: %v", err)
			}
			out = append(out, tool.Name)
		}
		slices.Sort(out)
		return out
	}
	want := []string{"echo__countdown", "echo__echo", "gate__echo", "gate__gated", "gate__release"}
	if got := names(); !slices.Equal(got, want) {
		t.Errorf("tools %v, want %v (gate's secret filtered, notes not connected)", got, want)
	}

	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "gate__echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || res.IsError || !strings.Contains(textOf(t, res), "hi") {
		t.Fatalf("gate__echo: %v %v", res, err)
	}
	params := &mcp.CallToolParams{Name: "gate__gated", Arguments: map[string]any{"key": "agg1"}}
	params.SetProgressToken("p-agg")
	if res, err := cs.CallTool(t.Context(), params); err != nil || res.IsError || progress.Load() == 0 {
		t.Fatalf("gate__gated: %v %v, progress %d", res, err, progress.Load())
	}
	var rpcErr *jsonrpc.Error
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "gate__secret", Arguments: map[string]any{}}); !errors.As(err, &rpcErr) || rpcErr.Code != -32602 || rpcErr.Message != "Not allowed" {
		t.Errorf("gate__secret: %v, want -32602 Not allowed", err)
	}

	_, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "notes__whoami", Arguments: map[string]any{}})
	if !errors.As(err, &rpcErr) || rpcErr.Code != -32042 {
		t.Fatalf("notes__whoami before connecting: %v, want -32042", err)
	}
	if data := string(rpcErr.Data); !strings.Contains(data, `"mode":"url"`) || !strings.Contains(data, `"url":"`+s.PublicURL+`/connections?connect=notes"`) {
		t.Errorf("URL elicitation data %s", data)
	}

	// alice connects notes: the gateway's sign-in with upstream consent.
	csNotes, _, _ := oauthSession(t, s, alice, "alice@provider")
	_ = csNotes.Close()

	res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "notes__whoami", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("notes__whoami after connecting: %v %v", res, err)
	}
	if got := names(); !slices.Contains(got, "notes__whoami") || !slices.Contains(got, "notes__add_note") {
		t.Errorf("tools after connecting %v", got)
	}
	for _, r := range s.Notes.Requests() {
		if r.Header.Get("X-Mcpgate-Api-Key") != "" {
			t.Errorf("notes saw the gateway key")
		}
	}
}
