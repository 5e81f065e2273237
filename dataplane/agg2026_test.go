package dataplane_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// newAgg2026World is newAggWorld plus a fourth member, modern, a Go SDK
// server in stateless mode (it speaks 2026-07-28, and answers confirm with
// input_required); alice and bob are both granted echo and modern.
func newAgg2026World(t *testing.T) (*aggWorld, *upstream2026) {
	t.Helper()
	w := newAggWorld(t)
	w.connect()
	both := map[string]bool{"alice": true, "bob": true}
	up := newUpstream2026(t, false)
	w.cp.setRoute("modern", &route{mode: "none", upstream: up.url(), principals: both})
	w.cp.setRoute("echo", &route{mode: "static", upstream: w.echo.url(), principals: both})
	return w, up
}

// client2026 connects a Go SDK client that speaks 2026-07-28 (the SDK's
// default: server/discover, no initialize, no session) to path on g.
func client2026(t *testing.T, g *gateway, path string, rt http.RoundTripper, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "client-2026", Version: "1"}, opts)
	tr := &mcp.StreamableClientTransport{Endpoint: g.srv.URL + path, HTTPClient: &http.Client{Transport: rt}, MaxRetries: -1}
	cs, err := c.Connect(t.Context(), tr, nil)
	if err != nil {
		t.Fatalf("connect %s: %v", path, err)
	}
	return cs
}

// TestAggregate2026And2025Clients: a 2026-07-28 Go SDK client and a
// 2025-11-25 Go SDK client use the same /mcp at once: both get the same
// merged tool list and call a tool of each member; the 2026 client never
// sends initialize, gets no session, negotiates 2026-07-28 from the
// gateway's merged server/discover, and its calls reach the 2026 member as
// 2026-07-28 requests while the 2025-only members get them on sessions.
func TestAggregate2026And2025Clients(t *testing.T) {
	w, up := newAgg2026World(t)
	want := []string{"echo__echo", "echo__secret", "echo__slow", "events__block", "events__change", "events__sample", "events__work",
		"modern__confirm", "modern__echo", "notes__add", "notes__link"}
	bt := &bodyTransport{key: "mcpg_alice"}
	var wg sync.WaitGroup
	for _, modern := range []bool{true, false} {
		wg.Go(func() {
			var cs *mcp.ClientSession
			if modern {
				cs = client2026(t, w.g, "/mcp", bt, nil)
			} else {
				cs = aggClient(t, w.g, "/mcp", &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}, nil)
			}
			defer cs.Close()
			wantVersion := map[bool]string{true: "2026-07-28", false: "2025-11-25"}[modern]
			if got := cs.InitializeResult().ProtocolVersion; got != wantVersion {
				t.Errorf("modern=%v negotiated %q", modern, got)
			}
			if got := allTools(t, cs); !slices.Equal(got, want) {
				t.Errorf("modern=%v tools %v, want %v", modern, got, want)
			}
			for i, c := range []struct{ tool, arg, want string }{
				{"echo__echo", "text", "echo: a"},
				{"notes__add", "text", "noted: a"},
				{"modern__echo", "text", "echo: a"},
			} {
				res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: c.tool, Arguments: map[string]any{c.arg: "a"}})
				if err != nil || res.IsError || text(t, res) != c.want {
					t.Errorf("modern=%v call %d %s: %v %v", modern, i, c.tool, res, err)
				}
			}
			var rpcErr *jsonrpc.Error
			if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo__secret", Arguments: map[string]any{}}); !errors.As(err, &rpcErr) || rpcErr.Code != -32602 || rpcErr.Message != "Not allowed" {
				t.Errorf("modern=%v echo__secret: %v, want -32602 Not allowed", modern, err)
			}
		})
	}
	wg.Wait()
	// Then the 2026 client uses the fourth member (whose tool changes the
	// list) and the prompt and resource of notes.
	cs := client2026(t, w.g, "/mcp", bt, nil)
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "events__change", Arguments: map[string]any{}})
	if err != nil || text(t, res) != "changed" {
		t.Fatalf("events__change: %v %v", res, err)
	}
	pr, err := cs.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "notes__summarize"})
	if err != nil || pr.Messages[0].Content.(*mcp.TextContent).Text != "summarize the notes" {
		t.Errorf("notes__summarize: %v %v", pr, err)
	}
	rl, err := cs.ListResources(t.Context(), nil)
	if err != nil || len(rl.Resources) != 1 {
		t.Fatalf("resources/list: %v %v", rl, err)
	}
	rr, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: rl.Resources[0].URI})
	if err != nil || rr.Contents[0].Text != "first note" || rr.Contents[0].URI != rl.Resources[0].URI {
		t.Errorf("resources/read %s: %v %v", rl.Resources[0].URI, rr, err)
	}

	bt.mu.Lock()
	defer bt.mu.Unlock()
	for _, b := range bt.sent {
		if strings.Contains(b, `"method":"initialize"`) || !strings.Contains(b, `"io.modelcontextprotocol/protocolVersion":"2026-07-28"`) {
			t.Errorf("2026 client sent %s", b)
		}
	}
	// The 2026 member got the 2026 client's call as 2026-07-28, with the
	// client's own clientInfo, and the 2025 client's on a session.
	modernCalls := 0
	for _, b := range up.bodies {
		if strings.Contains(b, `"name":"echo"`) && strings.Contains(b, `"io.modelcontextprotocol/protocolVersion":"2026-07-28"`) && strings.Contains(b, `"name":"client-2026"`) {
			modernCalls++
		}
	}
	if modernCalls != 1 {
		t.Errorf("2026 member got %d 2026-07-28 echo calls from the 2026 client, want 1", modernCalls)
	}
	// echo (2025-only) never got a 2026-07-28 request beyond the one that
	// taught the gateway what it speaks.
	n := 0
	for _, r := range w.echo.requests() {
		if strings.Contains(r.body, "io.modelcontextprotocol/protocolVersion") {
			n++
		}
	}
	if n > 1 {
		t.Errorf("2025-only member got %d 2026-07-28 requests", n)
	}
}

// TestAggregate2026Discover: server/discover on /mcp is the gateway's own
// merged answer: 2026-07-28, the capabilities, the members' instructions
// under their names, the aggregate's serverInfo, private and immediately
// stale; no session handle.
func TestAggregate2026Discover(t *testing.T) {
	w, _ := newAgg2026World(t)
	resp, body := w.g.do(t, "POST", "/mcp", modernHeaders("mcpg_alice", "server/discover", ""), modernCall("server/discover", ""))
	if resp.StatusCode != 200 || resp.Header.Get("Mcp-Session-Id") != "" {
		t.Fatalf("discover %d %q %s", resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), body)
	}
	var msg struct {
		ID     int `json:"id"`
		Result struct {
			SupportedVersions []string                   `json:"supportedVersions"`
			Capabilities      map[string]json.RawMessage `json:"capabilities"`
			Instructions      string                     `json:"instructions"`
			Meta              map[string]json.RawMessage `json:"_meta"`
			TTLMs             *int                       `json:"ttlMs"`
			CacheScope        string                     `json:"cacheScope"`
			ResultType        string                     `json:"resultType"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil {
		t.Fatal(err)
	}
	r := msg.Result
	if msg.ID != 1 || !slices.Equal(r.SupportedVersions, []string{"2026-07-28"}) || r.ResultType != "complete" || r.CacheScope != "private" || r.TTLMs == nil || *r.TTLMs != 0 {
		t.Errorf("discover %s", body)
	}
	for _, k := range []string{"tools", "prompts", "resources", "completions"} {
		if _, ok := r.Capabilities[k]; !ok {
			t.Errorf("capabilities lack %s: %s", k, body)
		}
	}
	if strings.Contains(body, "listChanged") {
		t.Errorf("listChanged offered without subscriptions/listen: %s", body)
	}
	if !strings.Contains(r.Instructions, "## notes\nKeeps notes.") || !strings.Contains(r.Instructions, "## events\nEmits events.") {
		t.Errorf("instructions %q", r.Instructions)
	}
	if string(r.Meta["io.modelcontextprotocol/serverInfo"]) != `{"name":"mcpgate","version":"1"}` {
		t.Errorf("serverInfo %s", r.Meta["io.modelcontextprotocol/serverInfo"])
	}
	// A method the aggregate does not have: 404 with -32601 (SEP-2575).
	resp, body = w.g.do(t, "POST", "/mcp", modernHeaders("mcpg_alice", "subscriptions/listen", ""), modernCall("subscriptions/listen", ""))
	if resp.StatusCode != 404 || body != `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}` {
		t.Errorf("subscriptions/listen %d %s", resp.StatusCode, body)
	}
}

// TestAggregate2026ListCacheHint: a 2026-07-28 tools/list on an
// aggregate carries the members' cache hints merged — ttlMs the smallest (a
// member without one counts as 0), cacheScope private, resultType complete
// — and nothing is cached across principals: each list reaches the member,
// each principal gets its own tools.
func TestAggregate2026ListCacheHint(t *testing.T) {
	w, _ := newAgg2026World(t)
	srv, n := listUpstream(t, true)
	both := map[string]bool{"alice": true, "bob": true}
	w.cp.setRoute("Tools", &route{mode: "authcode", upstream: srv.URL + "/mcp", principals: both, vault: both})
	w.cp.virtuals = map[string][]aggDef{"lists": {{server: "Tools"}}, "mixed": {{server: "Tools"}, {server: "modern"}}}
	for i, c := range []struct{ who, path, ttl string }{
		{"alice", "/lists/mcp", `"ttlMs":60000`},
		{"bob", "/lists/mcp", `"ttlMs":60000`},
		{"alice", "/mixed/mcp", `"ttlMs":0`},
		{"bob", "/mixed/mcp", `"ttlMs":0`},
	} {
		resp, body := w.g.do(t, "POST", c.path, modernHeaders("mcpg_"+c.who, "tools/list", ""), modernCall("tools/list", ""))
		other := map[string]string{"alice": "bob", "bob": "alice"}[c.who]
		if resp.StatusCode != 200 || !strings.Contains(body, `"cacheScope":"private"`) || !strings.Contains(body, `"resultType":"complete"`) || !strings.Contains(body, c.ttl) ||
			!strings.Contains(body, "tool-of-"+c.who+`"`) || strings.Contains(body, "tool-of-"+other) {
			t.Errorf("%s %s: %d %s", c.who, c.path, resp.StatusCode, body)
		}
		if int(n.Load()) != i+1 {
			t.Errorf("%s %s: member served %d lists, want %d", c.who, c.path, n.Load(), i+1)
		}
	}
}

// TestAggregate2026HeaderRules: the Mcp-Method / Mcp-Name mirrors of a
// 2026-07-28 request on /mcp are checked against the body (Mcp-Name is the
// EXPOSED name) with the per-server routes' fixed answers, before any
// member is contacted.
func TestAggregate2026HeaderRules(t *testing.T) {
	w, up := newAgg2026World(t)
	call := modernCall("tools/call", `"name":"modern__echo","arguments":{"text":"x"}`)
	for _, c := range []struct {
		name   string
		header map[string]string
		status int
		want   string
	}{
		{"upstream name", modernHeaders("mcpg_alice", "tools/call", "echo"), 400, rpcHeaderMismatch1},
		{"other tool", modernHeaders("mcpg_alice", "tools/call", "modern__confirm"), 400, rpcHeaderMismatch1},
		{"other method", modernHeaders("mcpg_alice", "tools/list", "modern__echo"), 400, rpcHeaderMismatch1},
		{"no Mcp-Name", modernHeaders("mcpg_alice", "tools/call", ""), 400, rpcMcpHeadersMissing},
		{"no version header", func() map[string]string {
			h := modernHeaders("mcpg_alice", "tools/call", "modern__echo")
			delete(h, "MCP-Protocol-Version")
			return h
		}(), 400, rpcVersionHeaderMissing},
	} {
		before := up.requestCount()
		resp, body := w.g.do(t, "POST", "/mcp", c.header, call)
		if resp.StatusCode != c.status || body != c.want {
			t.Errorf("%s: %d %s, want %d %s", c.name, resp.StatusCode, body, c.status, c.want)
		}
		if up.requestCount() != before {
			t.Errorf("%s: reached the member", c.name)
		}
	}
	resp, body := w.g.do(t, "POST", "/mcp", modernHeaders("mcpg_alice", "tools/call", "modern__echo"), call)
	if resp.StatusCode != 200 || !strings.Contains(body, `"text":"echo: x"`) {
		t.Errorf("matching headers: %d %s", resp.StatusCode, body)
	}
	// initialize is not a 2026-07-28 method.
	resp, body = w.g.do(t, "POST", "/mcp", modernHeaders("mcpg_alice", "initialize", ""), modernCall("initialize", ""))
	if resp.StatusCode != 404 || body != rpcRemovedIn2026 {
		t.Errorf("modern initialize: %d %s", resp.StatusCode, body)
	}
}

// TestAggregate2026MemberSessionsPerPrincipal: a 2025-only member of a
// 2026-07-28 client's calls gets one session per principal (reused across
// that principal's stateless requests, never another principal's), opened
// without the client's input capabilities, and gets no 2026 _meta; the
// client's result carries resultType complete.
func TestAggregate2026MemberSessionsPerPrincipal(t *testing.T) {
	w, _ := newAgg2026World(t)
	for _, key := range []string{"mcpg_alice", "mcpg_bob", "mcpg_alice", "mcpg_bob"} {
		resp, body := w.g.do(t, "POST", "/mcp", modernHeaders(key, "tools/call", "echo__echo"), modernCall("tools/call", `"name":"echo__echo","arguments":{"text":"`+key+`"}`))
		if resp.StatusCode != 200 || !strings.Contains(body, `"echo: `+key+`"`) || !strings.Contains(body, `"resultType":"complete"`) || resp.Header.Get("Mcp-Session-Id") != "" {
			t.Fatalf("%s: %d %s", key, resp.StatusCode, body)
		}
	}
	inits, probes := 0, 0
	sessionOf := map[string]string{} // the text echoed -> member session
	for _, r := range w.echo.requests() {
		if strings.Contains(r.body, `"method":"initialize"`) {
			inits++
			if strings.Contains(r.body, `"elicitation"`) {
				t.Errorf("member session opened with input capabilities: %s", r.body)
			}
		}
		if strings.Contains(r.body, `"tools/call"`) && r.header.Get("Mcp-Session-Id") == "" {
			// The request that taught the gateway what echo speaks
			// (refused by it, unprocessed).
			probes++
			continue
		}
		if strings.Contains(r.body, `"tools/call"`) {
			for _, key := range []string{"mcpg_alice", "mcpg_bob"} {
				if strings.Contains(r.body, key) {
					sid := r.header.Get("Mcp-Session-Id")
					if prev, ok := sessionOf[key]; ok && prev != sid {
						t.Errorf("%s used sessions %q and %q", key, prev, sid)
					}
					sessionOf[key] = sid
				}
			}
			if strings.Contains(r.body, "io.modelcontextprotocol/") {
				t.Errorf("2025 member session got 2026 _meta: %s", r.body)
			}
		}
	}
	if probes > 1 {
		t.Errorf("%d 2026-07-28 probes of a 2025-only member", probes)
	}
	if inits != 2 || sessionOf["mcpg_alice"] == "" || sessionOf["mcpg_alice"] == sessionOf["mcpg_bob"] {
		t.Errorf("%d member sessions opened, sessions %v; want 2, one per principal", inits, sessionOf)
	}
}

// TestAggregate2026ConnectRequired: notes not connected. A 2026-07-28
// client that declared URL elicitation gets input_required with one
// URL-mode elicitation of the connect page (2026-07-28 has no -32042) and a
// sealed requestState; its retry while still unconnected gets the tool
// error with the link (no endless loop); a client without URL elicitation
// gets that tool error at once.
func TestAggregate2026ConnectRequired(t *testing.T) {
	w := newAggWorld(t)
	link := w.g.srv.URL + "/connect/notes"
	urlMeta := strings.Replace(meta2026, `"elicitation":{}`, `"elicitation":{"url":{}}`, 1)
	call := func(extra string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"notes__add","arguments":{"text":"x"},` + extra + urlMeta + `}}`
	}
	resp, got := w.g.do(t, "POST", "/mcp", modernHeaders("mcpg_alice", "tools/call", "notes__add"), call(""))
	var msg struct {
		Result struct {
			ResultType    string
			RequestState  string
			InputRequests map[string]struct {
				Method string
				Params struct{ Mode, URL, Message, ElicitationID string }
			}
		} `json:"result"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(got), &msg) != nil || msg.Result.ResultType != "input_required" || msg.Result.RequestState == "" || len(msg.Result.InputRequests) != 1 {
		t.Fatalf("with url elicitation: %d %s", resp.StatusCode, got)
	}
	for _, ir := range msg.Result.InputRequests {
		if ir.Method != "elicitation/create" || ir.Params.Mode != "url" || ir.Params.URL != link || ir.Params.ElicitationID == "" {
			t.Errorf("input request %+v", ir)
		}
	}
	toolError := `{"jsonrpc":"2.0","id":1,"result":{"content":[{"text":"Connect your notes account to use this: ` + link + `","type":"text"}],"isError":true,"resultType":"complete"}}`
	q, _ := json.Marshal(msg.Result.RequestState)
	resp, got = w.g.do(t, "POST", "/mcp", modernHeaders("mcpg_alice", "tools/call", "notes__add"), call(`"inputResponses":{"mcpgate-connect":{"action":"accept"}},"requestState":`+string(q)+`,`))
	if resp.StatusCode != 200 || got != toolError {
		t.Errorf("retry still unconnected: %d %s", resp.StatusCode, got)
	}
	resp, got = w.g.do(t, "POST", "/mcp", modernHeaders("mcpg_alice", "tools/call", "notes__add"), modernCall("tools/call", `"name":"notes__add","arguments":{"text":"x"}`))
	if resp.StatusCode != 200 || got != toolError {
		t.Errorf("without url elicitation: %d %s", resp.StatusCode, got)
	}
}

// TestAggregate2026ConnectThenCall: the Go SDK 2026-07-28 client calls a
// tool of the unconnected notes member; its URL elicitation handler gets
// the connect page, the person connects meanwhile, and the client's retry
// reaches notes: the call succeeds without reconnecting the client.
func TestAggregate2026ConnectThenCall(t *testing.T) {
	w := newAggWorld(t)
	var asked atomic.Int32
	cs := client2026(t, w.g, "/mcp", &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}, &mcp.ClientOptions{
		Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
		ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			asked.Add(1)
			if req.Params.Mode != "url" || req.Params.URL != w.g.srv.URL+"/connect/notes" {
				return nil, fmt.Errorf("elicitation %+v", req.Params)
			}
			w.connect() // the person completes the connect page
			return &mcp.ElicitResult{Action: "accept"}, nil
		},
	})
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "notes__add", Arguments: map[string]any{"text": "x"}})
	if err != nil || res.IsError || text(t, res) != "noted: x" {
		t.Fatalf("notes__add: %v %v", res, err)
	}
	if asked.Load() != 1 {
		t.Errorf("elicitation handler ran %d times", asked.Load())
	}
}

// TestAggregateMRTRRoundTripSDK: the Go SDK 2026-07-28 client calls the
// 2026 member's confirm tool through /mcp; the member answers
// input_required, the client's elicitation handler answers, the client
// retries with the (sealed) requestState it got, and the member gets its
// own state back. The client never sees the member's state.
func TestAggregateMRTRRoundTripSDK(t *testing.T) {
	w, up := newAgg2026World(t)
	bt := &bodyTransport{key: "mcpg_alice"}
	var asked atomic.Int32
	cs := client2026(t, w.g, "/mcp", bt, &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			asked.Add(1)
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"ok": true}}, nil
		},
	})
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "modern__confirm", Arguments: map[string]any{}})
	if err != nil || text(t, res) != "confirmed upstream-state-1 accept" {
		t.Fatalf("modern__confirm: %v %v", res, err)
	}
	if asked.Load() != 1 {
		t.Errorf("elicitation handler ran %d times", asked.Load())
	}
	if got := up.seenStates(); !slices.Equal(got, []string{"", "upstream-state-1"}) {
		t.Errorf("member saw states %q", got)
	}
	bt.mu.Lock()
	defer bt.mu.Unlock()
	retried := false
	for _, b := range append(slices.Clone(bt.sent), bt.got...) {
		if strings.Contains(b, "upstream-state-1") && !strings.Contains(b, "confirmed upstream-state-1") {
			t.Errorf("client saw the member's state: %s", b)
		}
	}
	for _, b := range bt.sent {
		if strings.Contains(b, `"requestState":"`) {
			retried = true
		}
	}
	if !retried {
		t.Error("client never retried with a requestState")
	}
}

// TestSecAggregateMRTRStateBinding: a requestState sealed for a member's
// call on /mcp is taken only on a retry by the same principal, on the same
// aggregate, for the same member and exposed name; forged, the member's
// own state, another principal's, another aggregate's (a virtual server of
// the same member and name), the per-server route's state on the
// aggregate and the aggregate's on the per-server route, another tool's:
// each the fixed 400, and nothing reaches the member.
func TestSecAggregateMRTRStateBinding(t *testing.T) {
	w, up := newAgg2026World(t)
	w.cp.virtuals = map[string][]aggDef{"v": {{server: "modern", prefix: "modern__"}}}
	first := func(key, path, tool string) string {
		t.Helper()
		resp, body := w.g.do(t, "POST", path, modernHeaders(key, "tools/call", tool), modernCall("tools/call", `"name":"`+tool+`","arguments":{}`))
		if data, ok := strings.CutPrefix(body, "event: message\ndata: "); ok {
			body = strings.TrimSpace(data)
		}
		var msg struct {
			Result struct{ ResultType, RequestState string } `json:"result"`
		}
		if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &msg) != nil || msg.Result.ResultType != "input_required" || msg.Result.RequestState == "" || strings.Contains(body, "upstream-state-1") {
			t.Fatalf("first leg %s %s: %d %s", path, tool, resp.StatusCode, body)
		}
		return msg.Result.RequestState
	}
	state := first("mcpg_alice", "/mcp", "modern__confirm")
	routeState := first("mcpg_alice", "/modern/mcp", "confirm")
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	for _, c := range []struct{ name, key, path, tool, state string }{
		{"forged", "mcpg_alice", "/mcp", "modern__confirm", q("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")},
		{"member state verbatim", "mcpg_alice", "/mcp", "modern__confirm", q("upstream-state-1")},
		{"other principal", "mcpg_bob", "/mcp", "modern__confirm", q(state)},
		{"other aggregate", "mcpg_alice", "/v/mcp", "modern__confirm", q(state)},
		{"route state on aggregate", "mcpg_alice", "/mcp", "modern__confirm", q(routeState)},
		{"aggregate state on route", "mcpg_alice", "/modern/mcp", "confirm", q(state)},
		{"other tool", "mcpg_alice", "/mcp", "modern__echo", q(state)},
		{"not a string", "mcpg_alice", "/mcp", "modern__confirm", `7`},
	} {
		before := up.requestCount()
		resp, body := w.g.do(t, "POST", c.path, modernHeaders(c.key, "tools/call", c.tool), retryBody(c.tool, c.state))
		if resp.StatusCode != 400 || body != rpcBadRequestState {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
		}
		if up.requestCount() != before {
			t.Errorf("%s: refused retry reached the member", c.name)
		}
	}
	resp, body := w.g.do(t, "POST", "/mcp", modernHeaders("mcpg_alice", "tools/call", "modern__confirm"), retryBody("modern__confirm", q(state)))
	if resp.StatusCode != 200 || !strings.Contains(body, "confirmed upstream-state-1 accept") {
		t.Fatalf("retry: %d %s", resp.StatusCode, body)
	}
}

// TestAggregate2026OnlyMember: a member that speaks only 2026-07-28 in a
// virtual server used by 2025-11-25 Go SDK clients (before and after the
// gateway learnt what it speaks) and by a 2026-07-28 client: every client
// lists and calls its tool; once learnt, its instructions come from its
// server/discover and every request it gets is 2026-07-28, with no session.
func TestAggregate2026OnlyMember(t *testing.T) {
	w := newAggWorld(t)
	only := newUpstreamOnly2026(t)
	w.cp.setRoute("only", &route{mode: "none", upstream: only.url(), principals: map[string]bool{"alice": true}})
	w.cp.virtuals = map[string][]aggDef{"new": {{server: "only"}, {server: "echo"}}}
	want := []string{"echo__echo", "echo__secret", "echo__slow", "only__echo"}
	use := func(cs *mcp.ClientSession, what string) {
		t.Helper()
		defer cs.Close()
		if got := allTools(t, cs); !slices.Equal(got, want) {
			t.Errorf("%s: tools %v, want %v", what, got, want)
		}
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "only__echo", Arguments: map[string]any{"text": what}})
		if err != nil || res.IsError || text(t, res) != "echo: "+what {
			t.Errorf("%s: only__echo %v %v", what, res, err)
		}
	}
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	use(aggClient(t, w.g, "/new/mcp", kt, nil), "first-2025")
	before := len(only.bodies)
	cs := aggClient(t, w.g, "/new/mcp", kt, nil)
	if !strings.Contains(cs.InitializeResult().Instructions, "## only\nnew only") {
		t.Errorf("instructions %q", cs.InitializeResult().Instructions)
	}
	use(cs, "second-2025")
	use(client2026(t, w.g, "/new/mcp", kt, nil), "modern")
	only.mu.Lock()
	defer only.mu.Unlock()
	for _, b := range only.bodies[before:] {
		if !strings.HasPrefix(b, "POST 2026-07-28 ") || !strings.Contains(b, `"io.modelcontextprotocol/protocolVersion":"2026-07-28"`) {
			t.Errorf("2026-only member got %s", b)
		}
	}
}

// BenchmarkAggregate2026CallTool: a 2026-07-28 Go SDK client's tools/call
// through the root aggregate /mcp and through the member's own route, for a
// member that speaks 2026-07-28 (stateless on both) and one that speaks
// only 2025-11-25 (a bridge session on the route, a member session on the
// aggregate). Gateway CPU as in BenchmarkAggregateCallTool (pprof
// -tagfocus side=gateway).
func BenchmarkAggregate2026CallTool(b *testing.B) {
	for _, member := range []string{"modern", "legacy"} {
		for _, via := range []string{"server", "aggregate"} {
			b.Run(member+"/"+via, func(b *testing.B) {
				cp := newFakeCP(b)
				url := ""
				if member == "modern" {
					url = newUpstream2026(b, false).url()
				} else {
					url = newUpstream(b, false).url()
				}
				cp.setRoute("echo", &route{mode: "static", upstream: url, principals: map[string]bool{"alice": true}})
				g := newLabeledGateway(b, cp)
				endpoint, tool := g+"/echo/mcp", "echo"
				if via == "aggregate" {
					endpoint, tool = g+"/mcp", "echo__echo"
				}
				kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
				c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
				cs, err := c.Connect(b.Context(), &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: kt}, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
				if err != nil {
					b.Fatal(err)
				}
				defer cs.Close()
				if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
					b.Fatalf("negotiated %s", v)
				}
				params := &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": "x"}}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := cs.CallTool(b.Context(), params); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
