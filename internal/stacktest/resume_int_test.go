package stacktest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct{ id, data string }

// readEvent reads the next event from an SSE stream.
func readEvent(br *bufio.Reader) (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.id != "" || ev.data != "" {
				return ev, nil
			}
		case strings.HasPrefix(line, "id:"):
			ev.id = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "data:"):
			ev.data += strings.TrimSpace(line[5:])
		}
	}
}

// TestResumeWithLastEventID checks checklist I.85 through the gateway: a
// tools/call stream dropped after its progress event is resumed with GET +
// Mcp-Session-Id (the gateway handle) + Last-Event-ID, and the resumed stream
// carries the call's result. The same exchange straight against the upstream
// shows what the SDK server does on its own.
func TestResumeWithLastEventID(t *testing.T) {
	release := make(chan struct{})
	srv := mcp.NewServer(&mcp.Implementation{Name: "resumable", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "slow"}, func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1, Total: 2}); err != nil {
			return nil, nil, err
		}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
	})
	handler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)})
	s := stacktest.Start(t, stacktest.WithUpstreamRoutes(func(mux *http.ServeMux) { mux.Handle("/resume/mcp", handler) }))
	s.PutServer(&configv1.McpServer{Name: "resume", Url: strings.TrimSuffix(s.UpstreamURL, "/mcp") + "/resume/mcp",
		Transport: configv1.Transport_TRANSPORT_HTTP, AuthType: configv1.AuthType_AUTH_TYPE_NONE})
	key := s.AddUser("rita", "resume")

	url := s.RouteURL("resume")
	post := func(session, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "POST", url, strings.NewReader(body))
		req.Header.Set("X-MCPGate-API-Key", key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	init := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	session := init.Header.Get("Mcp-Session-Id")
	_, _ = io.Copy(io.Discard, init.Body)
	init.Body.Close()
	if init.StatusCode != 200 || session == "" {
		t.Fatalf("initialize: %d session %q", init.StatusCode, session)
	}
	if r := post(session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); r.StatusCode != 202 {
		t.Fatalf("initialized: %d", r.StatusCode)
	} else {
		r.Body.Close()
	}

	call := post(session, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow","arguments":{},"_meta":{"progressToken":"p7"}}}`)
	if call.StatusCode != 200 || !strings.HasPrefix(call.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("tools/call: %d %s", call.StatusCode, call.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(call.Body)
	var last string
	for {
		ev, err := readEvent(br)
		if err != nil {
			t.Fatalf("stream ended before the progress event: %v", err)
		}
		if ev.id != "" {
			last = ev.id
		}
		if strings.Contains(ev.data, "notifications/progress") {
			break
		}
	}
	if last == "" {
		t.Fatal("the upstream's events carry no ids: nothing to resume from")
	}
	call.Body.Close() // the connection drops mid-call
	close(release)

	// Hang guard only: without the resumed stream the result never comes.
	gctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(gctx, "GET", url, nil)
	req.Header.Set("X-MCPGate-API-Key", key)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set("Last-Event-ID", last)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("resume: %d %s", resp.StatusCode, b)
	}
	br = bufio.NewReader(resp.Body)
	for {
		ev, err := readEvent(br)
		if err != nil {
			t.Fatalf("resumed stream ended without the result: %v", err)
		}
		if ev.data == "" {
			continue
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Result *struct {
				Content []struct{ Text string } `json:"content"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(ev.data), &msg); err != nil {
			t.Fatalf("event %q: %v", ev.data, err)
		}
		if msg.Method == "notifications/progress" {
			t.Fatalf("resumed stream replayed the progress event already delivered (id %s)", last)
		}
		if string(msg.ID) == "7" {
			if msg.Result == nil || len(msg.Result.Content) != 1 || msg.Result.Content[0].Text != "done" {
				t.Fatalf("result %s", ev.data)
			}
			break
		}
	}
	for _, seen := range s.Upstream.Recorder.Requests() {
		if bad := stacktest.AdmissionHeaders(seen.Header, key); len(bad) > 0 {
			t.Fatalf("upstream saw admission credentials %v", bad)
		}
	}
}
