package dataplane_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/dataplane"
)

// Fixed answers of the 2026-07-28 rules (dataplane/protocol.go, mrtr.go).
const (
	rpcVersionHeaderMissing = `{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"MCP-Protocol-Version header is required for requests carrying _meta io.modelcontextprotocol/protocolVersion"}}`
	rpcVersionMismatch      = `{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"MCP-Protocol-Version header does not match _meta io.modelcontextprotocol/protocolVersion"}}`
	rpcMcpHeadersMissing    = `{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"Mcp-Method or Mcp-Name header missing"}}`
	rpcMetaVersionMissing   = `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"missing or invalid _meta field io.modelcontextprotocol/protocolVersion"}}`
	rpcUnsupportedVersion   = `{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"unsupported protocol version","data":{"supported":["2026-07-28"]}}}`
	rpcModernOnly           = `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"method requires protocol version 2026-07-28 or later"}}`
	rpcRemovedIn2026        = `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"method not supported in protocol version 2026-07-28"}}`
	rpcBadRequestState      = `{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"invalid or expired requestState"}}`
	rpcHeaderMismatch1      = `{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"Mcp-Method or Mcp-Name header does not match the body"}}`

	meta2026 = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}}`
)

// modernCall is a 2026-07-28 request body with params (without braces)
// plus the _meta triple.
func modernCall(method, params string) string {
	if params != "" {
		params += ","
	}
	return `{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":{` + params + meta2026 + `}}`
}

// modernHeaders are the headers a 2026-07-28 client sends for method/name.
func modernHeaders(key, method, name string) map[string]string {
	h := with(map[string]string{"X-MCPGate-API-Key": key, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method})
	if name != "" {
		h["Mcp-Name"] = name
	}
	return h
}

// upstream2026 is an official-SDK server in stateless mode (the Go SDK
// speaks 2026-07-28 only so) with an echo tool and a confirm tool that asks
// for input with resultType input_required and its own requestState.
type upstream2026 struct {
	srv *httptest.Server

	mu     sync.Mutex
	states []string // requestState of each confirm call, as the upstream saw it
	bodies []string
}

func newUpstream2026(t testing.TB, jsonResponse bool) *upstream2026 {
	t.Helper()
	u := &upstream2026{}
	s := mcp.NewServer(&mcp.Implementation{Name: "upstream-2026", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "echoes"}, func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + in.Text}}}, nil, nil
	})
	s.AddTool(&mcp.Tool{Name: "confirm", Description: "asks first", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		u.mu.Lock()
		u.states = append(u.states, req.Params.RequestState)
		u.mu.Unlock()
		if req.Params.RequestState == "" {
			return &mcp.CallToolResult{
				InputRequests: mcp.InputRequestMap{"ok": &mcp.ElicitParams{Message: "proceed?", RequestedSchema: json.RawMessage(`{"type":"object","properties":{"ok":{"type":"boolean"}}}`)}},
				RequestState:  "upstream-state-1",
			}, nil
		}
		answer := "none"
		if r, ok := req.Params.InputResponses["ok"].(*mcp.ElicitResult); ok {
			answer = r.Action
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "confirmed " + req.Params.RequestState + " " + answer}}}, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: jsonResponse})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		u.mu.Lock()
		u.bodies = append(u.bodies, string(b))
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream2026) url() string { return u.srv.URL + "/mcp" }

func (u *upstream2026) seenStates() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.states)
}

func (u *upstream2026) requestCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.bodies)
}

// TestProtocol2026HeaderRules is the table of the 2026-07-28 version and
// header rules on a per-server route: what is forwarded, and the exact
// status and body of each refusal (the id echoed), decided after
// authorization and before anything reaches the upstream.
func TestProtocol2026HeaderRules(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream2026(t, true)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, nil)
	const key = "mcpg_alice"
	call := modernCall("tools/call", `"name":"echo","arguments":{"text":"hi"}`)
	drop := func(h map[string]string, names ...string) map[string]string {
		for _, n := range names {
			delete(h, n)
		}
		return h
	}
	set := func(h map[string]string, k, v string) map[string]string { h[k] = v; return h }
	cases := []struct {
		name   string
		header map[string]string
		body   string
		status int
		want   string // exact body; "" = forwarded (the upstream's result)
	}{
		{name: "modern call", header: modernHeaders(key, "tools/call", "echo"), body: call, status: 200},
		{name: "modern list", header: modernHeaders(key, "tools/list", ""), body: modernCall("tools/list", ""), status: 200},
		{name: "modern discover", header: modernHeaders(key, "server/discover", ""), body: modernCall("server/discover", ""), status: 200},
		{name: "no version header", header: drop(modernHeaders(key, "tools/call", "echo"), "MCP-Protocol-Version"), body: call, status: 400, want: rpcVersionHeaderMissing},
		{name: "header 2026 without _meta version", header: modernHeaders(key, "tools/call", "echo"), body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, status: 400, want: rpcMetaVersionMissing},
		{name: "_meta version not a string", header: modernHeaders(key, "tools/list", ""), body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":20260728}}}`, status: 400, want: rpcMetaVersionMissing},
		{name: "header older than _meta", header: set(modernHeaders(key, "tools/call", "echo"), "MCP-Protocol-Version", "2025-11-25"), body: call, status: 400, want: rpcVersionMismatch},
		{name: "unknown future version", header: set(modernHeaders(key, "tools/list", ""), "MCP-Protocol-Version", "2027-01-01"), body: strings.Replace(modernCall("tools/list", ""), "2026-07-28", "2027-01-01", 1), status: 400, want: rpcUnsupportedVersion},
		{name: "no Mcp-Method", header: drop(modernHeaders(key, "tools/call", "echo"), "Mcp-Method"), body: call, status: 400, want: rpcMcpHeadersMissing},
		{name: "no Mcp-Name", header: modernHeaders(key, "tools/call", ""), body: call, status: 400, want: rpcMcpHeadersMissing},
		{name: "no Mcp-Name resources/read", header: modernHeaders(key, "resources/read", ""), body: modernCall("resources/read", `"uri":"file:///a"`), status: 400, want: rpcMcpHeadersMissing},
		{name: "no Mcp-Name prompts/get", header: modernHeaders(key, "prompts/get", ""), body: modernCall("prompts/get", `"name":"p"`), status: 400, want: rpcMcpHeadersMissing},
		{name: "Mcp-Name differs", header: modernHeaders(key, "tools/call", "secret"), body: call, status: 400, want: rpcHeaderMismatch1},
		{name: "Mcp-Name case", header: modernHeaders(key, "tools/call", "Echo"), body: call, status: 400, want: rpcHeaderMismatch1},
		{name: "Mcp-Method differs", header: modernHeaders(key, "tools/list", "echo"), body: call, status: 400, want: rpcHeaderMismatch1},
		{name: "Mcp-Name on a list", header: modernHeaders(key, "tools/list", "echo"), body: modernCall("tools/list", ""), status: 400, want: rpcHeaderMismatch1},
		{name: "modern batch", header: modernHeaders(key, "tools/list", ""), body: "[" + modernCall("tools/list", "") + "]", status: 400, want: strings.Replace(rpcHeaderMismatch1, `"id":1`, `"id":null`, 1)},
		{name: "modern initialize", header: modernHeaders(key, "initialize", ""), body: modernCall("initialize", `"protocolVersion":"2026-07-28","capabilities":{},"clientInfo":{"name":"t","version":"1"}`), status: 404, want: rpcRemovedIn2026},
		{name: "modern ping", header: modernHeaders(key, "ping", ""), body: modernCall("ping", ""), status: 404, want: rpcRemovedIn2026},
		{name: "discover without 2026", header: with(map[string]string{"X-MCPGate-API-Key": key}), body: `{"jsonrpc":"2.0","id":1,"method":"server/discover"}`, status: 400, want: rpcModernOnly},
		{name: "subscriptions/listen without 2026", header: with(map[string]string{"X-MCPGate-API-Key": key}), body: `{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{}}}`, status: 400, want: rpcModernOnly},
		{name: "discover with 2025 _meta", header: with(map[string]string{"X-MCPGate-API-Key": key, "MCP-Protocol-Version": "2025-11-25"}), body: `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}`, status: 400, want: rpcModernOnly},
		{name: "notification under 2026 header without Mcp-Method", header: drop(modernHeaders(key, "x", ""), "Mcp-Method"), body: `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`, status: 400, want: strings.Replace(rpcMcpHeadersMissing, `"id":1`, `"id":null`, 1)},
		{name: "_meta case variant", header: modernHeaders(key, "tools/list", ""), body: `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_Meta":{}}}`, status: 400, want: `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: duplicate or case-variant member names"}}`},
		// Refusals come after authorization: a request without a
		// credential is challenged whatever its headers.
		{name: "mismatch without credential", header: drop(modernHeaders(key, "tools/list", "echo"), "X-MCPGate-API-Key"), body: call, status: 401, want: strings.Replace(rpcUnauthorized, `"id":null`, `"id":1`, 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := up.requestCount()
			resp, body := g.do(t, "POST", "/Echo/mcp", tc.header, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.want == "" {
				if up.requestCount() != before+1 || !strings.Contains(body, `"result"`) {
					t.Fatalf("not forwarded: %s", body)
				}
				return
			}
			if body != tc.want {
				t.Errorf("body\n%s\nwant\n%s", body, tc.want)
			}
			if up.requestCount() != before {
				t.Errorf("refused request reached the upstream")
			}
		})
	}
}

// TestProtocol2025Unchanged: a 2025-11-25 request without any 2026 header or
// _meta is forwarded exactly as before, on the same route a 2026 client
// uses.
func TestProtocol2025Unchanged(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream2026(t, true)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, nil)
	resp, body := g.do(t, "POST", "/Echo/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), initBody)
	if resp.StatusCode != 200 || !strings.Contains(body, `"protocolVersion":"2025-06-18"`) {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	if got := up.bodies[0]; got != initBody {
		t.Errorf("upstream saw %s", got)
	}
}

// TestSDKClients2026And2025 runs a 2026-07-28 Go SDK client (stateless
// discovery) and a 2025-11-25 Go SDK client on the same per-server route
// at once, against a 2026 upstream (Go SDK, Stateless) and a 2025-only one
// (Go SDK, stateful): both list and call on both. The 2026 client speaks
// 2026-07-28 on both routes: the gateway bridges it to the 2025-only
// upstream (server/discover answered from the upstream's initialize).
func TestSDKClients2026And2025(t *testing.T) {
	for _, jsonResponse := range []bool{true, false} {
		t.Run(fmt.Sprintf("json=%v", jsonResponse), func(t *testing.T) {
			cp := newFakeCP(t)
			up26 := newUpstream2026(t, jsonResponse)
			up25 := newUpstream(t, jsonResponse)
			alice := map[string]bool{"alice": true}
			cp.setRoute("New", &route{mode: "none", upstream: up26.url(), principals: alice})
			cp.setRoute("Old", &route{mode: "none", upstream: up25.url(), principals: alice})
			g := newGateway(t, cp, nil)
			var wg sync.WaitGroup
			for _, rt := range []string{"New", "Old"} {
				for _, version := range []string{"", "2025-11-25"} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
						// With a list-changed handler a 2026 client opens
						// subscriptions/listen when the server offers
						// listChanged (natively on New; the bridge to Old
						// offers none).
						c := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, &mcp.ClientOptions{
							ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {},
						})
						tr := &mcp.StreamableClientTransport{Endpoint: g.srv.URL + "/" + rt + "/mcp", HTTPClient: &http.Client{Transport: kt}, MaxRetries: -1}
						cs, err := c.Connect(t.Context(), tr, &mcp.ClientSessionOptions{ProtocolVersion: version})
						if err != nil {
							t.Errorf("%s %q connect: %v", rt, version, err)
							return
						}
						defer cs.Close()
						for i := range 3 {
							if _, err := cs.ListTools(t.Context(), nil); err != nil {
								t.Errorf("%s %q tools/list: %v", rt, version, err)
								return
							}
							res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": fmt.Sprint(i)}})
							if err != nil || res.Content[0].(*mcp.TextContent).Text != "echo: "+fmt.Sprint(i) {
								t.Errorf("%s %q tools/call: %v %v", rt, version, res, err)
								return
							}
						}
						got := cs.InitializeResult().ProtocolVersion
						want := "2025-11-25"
						if version == "" && rt == "New" {
							// The default client tries server/discover first;
							// the 2025-only upstream's own answer makes it fall
							// back to initialize, exactly as directly: sessions
							// and streams are kept.
							want = "2026-07-28"
						}
						if got != want {
							t.Errorf("%s %q negotiated %q, want %q", rt, version, got, want)
						}
					}()
				}
			}
			wg.Wait()
			// The 2026 client really spoke 2026-07-28 to the 2026 upstream:
			// tools/call with the _meta triple, no initialize.
			modern := 0
			for _, b := range up26.bodies {
				if strings.Contains(b, `"tools/call"`) && strings.Contains(b, `"io.modelcontextprotocol/protocolVersion":"2026-07-28"`) {
					modern++
				}
			}
			if modern != 3 {
				t.Errorf("2026 upstream saw %d modern tools/call, want 3", modern)
			}
			// The 2025-only upstream got both clients' calls natively (no
			// bridge: each client negotiated 2025-11-25 after the upstream's
			// own discover answer), never a 2026 request beyond the
			// probing server/discover.
			bridgeInits, calls := 0, 0
			for _, r := range up25.requests() {
				if strings.Contains(r.body, `"id":"mcpgate-bridge-init"`) {
					bridgeInits++
					if !strings.Contains(r.body, `"protocolVersion":"2025-11-25"`) || !strings.Contains(r.body, `"clientInfo":{"name":"c","version":"1"}`) {
						t.Errorf("bridge initialize %s", r.body)
					}
				}
				if strings.Contains(r.body, "io.modelcontextprotocol/protocolVersion") && !strings.Contains(r.body, `"server/discover"`) {
					t.Errorf("2025-only upstream got a 2026 request: %s", r.body)
				}
				if strings.Contains(r.body, `"tools/call"`) {
					calls++
				}
			}
			if bridgeInits != 0 || calls != 6 {
				t.Errorf("2025-only upstream: %d bridge sessions, %d calls; want 0 and 6", bridgeInits, calls)
			}
		})
	}
}

// bodyTransport records what an SDK client sends and receives.
type bodyTransport struct {
	key string

	mu        sync.Mutex
	sent, got []string
}

func (b *bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-MCPGate-API-Key", b.key)
	if r.Body != nil {
		bs, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(bs))
		b.mu.Lock()
		b.sent = append(b.sent, string(bs))
		b.mu.Unlock()
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	bs, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(bs))
	b.mu.Lock()
	b.got = append(b.got, string(bs))
	b.mu.Unlock()
	return resp, err
}

// TestMRTRRoundTripSDK: the Go SDK client (2026-07-28) calls a tool whose
// Go SDK upstream answers input_required; the client's elicitation handler
// answers and the client retries with the requestState it got. The client
// only ever sees the gateway's sealed state; the upstream gets its own
// state back on the retry.
func TestMRTRRoundTripSDK(t *testing.T) {
	for _, jsonResponse := range []bool{true, false} {
		t.Run(fmt.Sprintf("json=%v", jsonResponse), func(t *testing.T) {
			cp := newFakeCP(t)
			up := newUpstream2026(t, jsonResponse)
			cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
			g := newGateway(t, cp, nil)
			bt := &bodyTransport{key: "mcpg_alice"}
			var asked atomic.Int32
			c := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, &mcp.ClientOptions{
				ElicitationHandler: func(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					asked.Add(1)
					return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"ok": true}}, nil
				},
			})
			cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: g.srv.URL + "/Echo/mcp", HTTPClient: &http.Client{Transport: bt}, MaxRetries: -1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "confirm", Arguments: map[string]any{}})
			if err != nil {
				t.Fatalf("tools/call: %v", err)
			}
			if got := res.Content[0].(*mcp.TextContent).Text; got != "confirmed upstream-state-1 accept" {
				t.Errorf("result %q", got)
			}
			if asked.Load() != 1 {
				t.Errorf("elicitation handler ran %d times", asked.Load())
			}
			if got := up.seenStates(); !slices.Equal(got, []string{"", "upstream-state-1"}) {
				t.Errorf("upstream saw states %q", got)
			}
			bt.mu.Lock()
			defer bt.mu.Unlock()
			for _, b := range append(slices.Clone(bt.sent), bt.got...) {
				if strings.Contains(b, "upstream-state-1") && !strings.Contains(b, "confirmed upstream-state-1") {
					t.Errorf("client saw the upstream's state: %s", b)
				}
			}
			retried := false
			for _, b := range bt.sent {
				if strings.Contains(b, `"requestState":"`) {
					retried = true
				}
			}
			if !retried {
				t.Errorf("client never retried with a requestState")
			}
		})
	}
}

// sealedState runs the first leg of the confirm tool as key on route and
// returns the requestState the client got.
func sealedState(t *testing.T, g *gateway, key, route string) string {
	t.Helper()
	resp, body := g.do(t, "POST", "/"+route+"/mcp", modernHeaders(key, "tools/call", "confirm"), modernCall("tools/call", `"name":"confirm","arguments":{}`))
	if resp.StatusCode != 200 {
		t.Fatalf("first leg: %d %s", resp.StatusCode, body)
	}
	var msg struct {
		Result struct {
			ResultType   string `json:"resultType"`
			RequestState string `json:"requestState"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &msg); err != nil {
		t.Fatalf("first leg body %s: %v", body, err)
	}
	if msg.Result.ResultType != "input_required" || msg.Result.RequestState == "" || strings.Contains(body, "upstream-state-1") {
		t.Fatalf("first leg result %s", body)
	}
	return msg.Result.RequestState
}

// retryBody is the confirm tool's retry with state.
func retryBody(tool, state string) string {
	return modernCall("tools/call", `"name":"`+tool+`","arguments":{},"inputResponses":{"ok":{"action":"accept","content":{"ok":true}}},"requestState":`+state)
}

// TestSecMRTRStateBinding: a sealed requestState is accepted only on a
// retry by the same principal, on the same route, for the same tool, before
// its expiry; forged, tampered, another principal's or route's, another
// tool's, expired, a session handle used as a state, a non-string state and
// a state on a 2025 request all get the fixed 400 and never reach the
// upstream.
func TestSecMRTRStateBinding(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream2026(t, true)
	both := map[string]bool{"alice": true, "bob": true}
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: both})
	cp.setRoute("Other", &route{mode: "none", upstream: up.url(), principals: both})
	g := newGateway(t, cp, nil)
	state := sealedState(t, g, "mcpg_alice", "Echo")
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }

	tampered := []byte(state)
	tampered[len(tampered)-3] ^= 1
	if tampered[len(tampered)-3] == state[len(state)-3] {
		t.Fatal("tamper failed")
	}
	expired, err := dataplane.SealRequestStateForTest(t.Context(), g.proxy, "alice", "Echo", "tools/call", "confirm", "upstream-state-1", time.Now().Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	// A 2025 session handle is sealed with the same keys, under another label.
	resp, _ := g.do(t, "POST", "/Echo/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), initBody)
	handle := resp.Header.Get("Mcp-Session-Id")

	cases := []struct {
		name, key, route, tool, body string
		header                       map[string]string
	}{
		{name: "forged", key: "mcpg_alice", route: "Echo", tool: "confirm", body: retryBody("confirm", q("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))},
		{name: "upstream state verbatim", key: "mcpg_alice", route: "Echo", tool: "confirm", body: retryBody("confirm", q("upstream-state-1"))},
		{name: "tampered", key: "mcpg_alice", route: "Echo", tool: "confirm", body: retryBody("confirm", q(string(tampered)))},
		{name: "other principal", key: "mcpg_bob", route: "Echo", tool: "confirm", body: retryBody("confirm", q(state))},
		{name: "other route", key: "mcpg_alice", route: "Other", tool: "confirm", body: retryBody("confirm", q(state))},
		{name: "other tool", key: "mcpg_alice", route: "Echo", tool: "echo", body: retryBody("echo", q(state))},
		{name: "expired", key: "mcpg_alice", route: "Echo", tool: "confirm", body: retryBody("confirm", q(expired))},
		{name: "session handle", key: "mcpg_alice", route: "Echo", tool: "confirm", body: retryBody("confirm", q(handle))},
		{name: "not a string", key: "mcpg_alice", route: "Echo", tool: "confirm", body: retryBody("confirm", `7`)},
		{name: "empty", key: "mcpg_alice", route: "Echo", tool: "confirm", body: retryBody("confirm", `""`)},
		{
			name: "2025 request", key: "mcpg_alice", route: "Echo", tool: "confirm",
			body:   `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"confirm","requestState":"upstream-state-1"}}`,
			header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := up.requestCount()
			h := tc.header
			if h == nil {
				h = modernHeaders(tc.key, "tools/call", tc.tool)
			}
			resp, body := g.do(t, "POST", "/"+tc.route+"/mcp", h, tc.body)
			if resp.StatusCode != 400 || body != rpcBadRequestState {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
			if up.requestCount() != before {
				t.Errorf("refused retry reached the upstream")
			}
		})
	}

	// The right principal, route and tool: the upstream gets its own state.
	resp, body := g.do(t, "POST", "/Echo/mcp", modernHeaders("mcpg_alice", "tools/call", "confirm"), retryBody("confirm", q(state)))
	if resp.StatusCode != 200 || !strings.Contains(body, "confirmed upstream-state-1 accept") {
		t.Fatalf("retry: %d %s", resp.StatusCode, body)
	}
	if got := up.seenStates(); !slices.Equal(got, []string{"", "upstream-state-1"}) {
		t.Errorf("upstream saw states %q", got)
	}
}

// listUpstream answers tools/list with a tool named after the upstream
// credential it got (so each principal's list differs), ttlMs and
// cacheScope private, and counts the lists it served.
func listUpstream(t *testing.T, sse bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msg struct {
			ID json.RawMessage `json:"id"`
		}
		_ = json.Unmarshal(b, &msg)
		who := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer upstream-")
		c := n.Add(1)
		out := `{"jsonrpc":"2.0","id":` + string(msg.ID) + `,"result":{"tools":[{"name":"tool-of-` + who + `","inputSchema":{"type":"object"}},{"name":"hidden","inputSchema":{"type":"object"}}],"ttlMs":60000,"cacheScope":"private","resultType":"complete","_meta":{"n":` + fmt.Sprint(c) + `}}}`
		if sse {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: message\ndata: "+out+"\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, out)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestCacheScopePrivateNotShared: list results marked cacheScope private
// (each principal's own, through its own upstream credential) are never
// served to another principal: every list reaches the upstream, each
// principal gets its own tools, and ttlMs / cacheScope pass through
// unchanged, with and without a tool filter, JSON and SSE. A data plane
// that cached list results across principals fails this test.
func TestCacheScopePrivateNotShared(t *testing.T) {
	for _, sse := range []bool{false, true} {
		for _, filtered := range []bool{false, true} {
			t.Run(fmt.Sprintf("sse=%v/filtered=%v", sse, filtered), func(t *testing.T) {
				cp := newFakeCP(t)
				srv, n := listUpstream(t, sse)
				rt := &route{mode: "authcode", upstream: srv.URL + "/mcp", principals: map[string]bool{"alice": true, "bob": true}, vault: map[string]bool{"alice": true, "bob": true}}
				if filtered {
					rt.disallowed = []string{"hidden"}
				}
				cp.setRoute("Tools", rt)
				g := newGateway(t, cp, nil)
				for i, who := range []string{"alice", "bob", "alice", "bob"} {
					resp, body := g.do(t, "POST", "/Tools/mcp", modernHeaders("mcpg_"+who, "tools/list", ""), modernCall("tools/list", ""))
					if resp.StatusCode != 200 {
						t.Fatalf("%s: %d %s", who, resp.StatusCode, body)
					}
					if !strings.Contains(body, `"tool-of-`+who+`"`) || strings.Contains(body, "tool-of-"+map[string]string{"alice": "bob", "bob": "alice"}[who]) {
						t.Errorf("%s got %s", who, body)
					}
					if !strings.Contains(body, `"ttlMs":60000,"cacheScope":"private","resultType":"complete","_meta":{"n":`+fmt.Sprint(i+1)+`}`) {
						t.Errorf("%s: cache fields not passed through: %s", who, body)
					}
					if filtered == strings.Contains(body, `"hidden"`) {
						t.Errorf("filter=%v: %s", filtered, body)
					}
				}
				if n.Load() != 4 {
					t.Errorf("upstream served %d lists, want 4", n.Load())
				}
			})
		}
	}
}

// TestBridgeSessionReopenedOn404: when the 2025-only upstream forgets the
// bridge session (here: ended with DELETE behind the gateway's back), the
// next 2026-07-28 call is answered on a new session, transparently.
func TestBridgeSessionReopenedOn404(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	cp.setRoute("Old", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, nil)
	call := func() {
		t.Helper()
		resp, body := g.do(t, "POST", "/Old/mcp", modernHeaders("mcpg_alice", "tools/call", "echo"), modernCall("tools/call", `"name":"echo","arguments":{"text":"hi"}`))
		if resp.StatusCode != 200 || !strings.Contains(body, `"echo: hi"`) || resp.Header.Get("Mcp-Session-Id") != "" {
			t.Fatalf("call: %d %v %s", resp.StatusCode, resp.Header, body)
		}
	}
	call() // probes (forwarded as is, refused), then bridges
	sessions := func() []string {
		var ids []string
		for _, r := range up.requests() {
			if strings.Contains(r.body, `"id":"mcpgate-bridge-init"`) {
				continue
			}
			if id := r.header.Get("Mcp-Session-Id"); id != "" && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		return ids
	}
	first := sessions()
	if len(first) != 1 {
		t.Fatalf("bridge sessions %v", first)
	}
	call() // same session
	if got := sessions(); len(got) != 1 {
		t.Fatalf("second call opened a session: %v", got)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, up.url(), nil)
	req.Header.Set("Mcp-Session-Id", first[0])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	call() // 404 upstream, reopened, answered
	if got := sessions(); len(got) != 2 || got[0] != first[0] {
		t.Fatalf("sessions after expiry %v", got)
	}
}

// newUpstreamOnly2026 is a Go SDK server (stateless) restricted to
// 2026-07-28: it answers a 2025 initialize but refuses every later 2025
// request with 400.
func newUpstreamOnly2026(t testing.TB) *upstream2026 {
	t.Helper()
	u := &upstream2026{}
	s := mcp.NewServer(&mcp.Implementation{Name: "only-2026", Version: "3"}, &mcp.ServerOptions{SupportedProtocolVersions: []string{"2026-07-28"}, Instructions: "new only"})
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "echoes"}, func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echo: " + in.Text}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		u.mu.Lock()
		u.bodies = append(u.bodies, r.Method+" "+r.Header.Get("Mcp-Protocol-Version")+" "+string(b))
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// TestReverseBridge2025ClientOn2026OnlyUpstream: 2025-11-25 Go SDK clients
// on a route whose upstream speaks only 2026-07-28. The first client's
// initialize reaches the upstream (nothing is known yet); its first list is
// refused by the upstream as a 2025 request and sent again as 2026-07-28;
// from then on the gateway answers initialize from the upstream's
// server/discover with a sealed handle carrying the client's capabilities
// and info, and sends every request as 2026-07-28. A 2026-07-28 client uses
// the same route at the same time.
func TestReverseBridge2025ClientOn2026OnlyUpstream(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstreamOnly2026(t)
	cp.setRoute("New", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, nil)
	use := func(name, version string) *mcp.ClientSession {
		t.Helper()
		kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
		c := mcp.NewClient(&mcp.Implementation{Name: name, Version: "1"}, nil)
		cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: g.srv.URL + "/New/mcp", HTTPClient: &http.Client{Transport: kt}, MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: version})
		if err != nil {
			t.Fatalf("%s connect: %v", name, err)
		}
		tools, err := cs.ListTools(t.Context(), nil)
		if err != nil || len(tools.Tools) != 1 {
			t.Fatalf("%s tools/list: %v %v", name, tools, err)
		}
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": name}})
		if err != nil || res.Content[0].(*mcp.TextContent).Text != "echo: "+name {
			t.Fatalf("%s tools/call: %v %v", name, res, err)
		}
		return cs
	}
	first := use("first", "2025-11-25")
	modern := use("modern", "")
	second := use("second", "2025-11-25")
	if got := second.InitializeResult(); got.ProtocolVersion != "2025-11-25" || got.Instructions != "new only" || got.ServerInfo.Name != "only-2026" {
		t.Errorf("second initialize %+v", got)
	}
	if got := modern.InitializeResult().ProtocolVersion; got != "2026-07-28" {
		t.Errorf("modern client negotiated %q", got)
	}
	for _, cs := range []*mcp.ClientSession{first, modern, second} {
		if err := cs.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	inits, secondCall := 0, ""
	for _, b := range up.bodies {
		if strings.Contains(b, `"method":"initialize"`) {
			inits++
		}
		if strings.Contains(b, `"tools/call"`) && strings.Contains(b, `"second"`) {
			secondCall = b
		}
	}
	if inits != 1 {
		t.Errorf("upstream saw %d initialize, want only the first client's", inits)
	}
	if !strings.HasPrefix(secondCall, "POST 2026-07-28 ") || !strings.Contains(secondCall, `"io.modelcontextprotocol/clientInfo":{"name":"second","version":"1"}`) {
		t.Errorf("second client's call reached the upstream as %s", secondCall)
	}
}

// TestProtocolVersionSetting: with the server's protocol_version set, the
// data plane bridges from the first request without learning anything:
// 2025-11-25 → a 2026-07-28 request never reaches the upstream as such (no
// probe); 2026-07-28 → a 2025 client's initialize is answered from the
// upstream's server/discover, the upstream never sees an initialize.
func TestProtocolVersionSetting(t *testing.T) {
	cp := newFakeCP(t)
	old := newUpstream(t, true)
	only26 := newUpstreamOnly2026(t)
	alice := map[string]bool{"alice": true}
	cp.setRoute("Old", &route{mode: "none", upstream: old.url(), principals: alice, protocol: "2025-11-25"})
	cp.setRoute("New", &route{mode: "none", upstream: only26.url(), principals: map[string]bool{"alice": true, "bob": true}, protocol: "2026-07-28"})
	g := newGateway(t, cp, nil)

	resp, body := g.do(t, "POST", "/Old/mcp", modernHeaders("mcpg_alice", "tools/list", ""), modernCall("tools/list", ""))
	if resp.StatusCode != 200 || !strings.Contains(body, `"name":"echo"`) {
		t.Fatalf("bridged list: %d %s", resp.StatusCode, body)
	}
	for _, r := range old.requests() {
		if strings.Contains(r.body, "io.modelcontextprotocol/protocolVersion") {
			t.Errorf("2025-only upstream got a 2026 request: %s", r.body)
		}
	}

	resp, body = g.do(t, "POST", "/New/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), initBody)
	handle := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || handle == "" || body != `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{"logging":{},"tools":{"listChanged":true}},"serverInfo":{"name":"only-2026","version":"3"},"instructions":"new only"}}` {
		t.Fatalf("initialize: %d %q %s", resp.StatusCode, handle, body)
	}
	h := with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Mcp-Session-Id": handle, "MCP-Protocol-Version": "2025-06-18"})
	for _, step := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, 202, ""},
		{`{"jsonrpc":"2.0","id":2,"method":"ping"}`, 200, `{"jsonrpc":"2.0","id":2,"result":{}}`},
		{`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"up"}}}`, 200, `"echo: up"`},
	} {
		resp, body := g.do(t, "POST", "/New/mcp", h, step.body)
		if resp.StatusCode != step.status || !strings.Contains(body, step.want) {
			t.Errorf("%s: %d %s", step.body, resp.StatusCode, body)
		}
	}
	if resp, _ := g.do(t, "GET", "/New/mcp", map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Mcp-Session-Id": handle, "Accept": "text/event-stream"}, ""); resp.StatusCode != 405 {
		t.Errorf("GET on a bridged session: %d", resp.StatusCode)
	}
	if resp, _ := g.do(t, "DELETE", "/New/mcp", map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Mcp-Session-Id": handle}, ""); resp.StatusCode != 204 {
		t.Errorf("DELETE on a bridged session: %d", resp.StatusCode)
	}
	// The handle is bound like any other: another principal cannot use it.
	if resp, body := g.do(t, "POST", "/New/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_bob", "Mcp-Session-Id": handle}), `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`); resp.StatusCode != 404 || body != strings.Replace(rpcUnknownSession, `"id":null`, `"id":4`, 1) {
		t.Errorf("bob with alice's handle: %d %s", resp.StatusCode, body)
	}
	for _, b := range only26.bodies {
		if strings.Contains(b, `"method":"initialize"`) || strings.Contains(b, `"method":"ping"`) {
			t.Errorf("2026-only upstream got %s", b)
		}
	}
}

// TestReverseBridgeInitializeRefused: an upstream that refuses a 2025
// initialize itself as a 2026-07-28-only server (JSON-RPC -32022 listing
// only 2026-07-28) is learnt from that refusal, and the same initialize is
// answered from its server/discover.
func TestReverseBridgeInitializeRefused(t *testing.T) {
	only26 := newUpstreamOnly2026(t)
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"method":"initialize"`) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32022,"message":"unsupported protocol version","data":{"supported":["2026-07-28"],"requested":"2025-06-18"}}}`)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		only26.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(refusing.Close)
	cp := newFakeCP(t)
	cp.setRoute("New", &route{mode: "none", upstream: refusing.URL, principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, nil)
	resp, body := g.do(t, "POST", "/New/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), initBody)
	if resp.StatusCode != 200 || resp.Header.Get("Mcp-Session-Id") == "" || !strings.Contains(body, `"serverInfo":{"name":"only-2026","version":"3"}`) {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	h := with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Mcp-Session-Id": resp.Header.Get("Mcp-Session-Id"), "MCP-Protocol-Version": "2025-06-18"})
	if resp, body := g.do(t, "POST", "/New/mcp", h, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`); resp.StatusCode != 200 || !strings.Contains(body, `"echo: x"`) {
		t.Fatalf("call: %d %s", resp.StatusCode, body)
	}
}

// TestBridgeUpstream401: a 2026-07-28 client bridged to a 2025-only
// upstream whose vault grant is refused at the bridge's initialize gets the
// gateway's own challenge (the grant is reported), as on the direct path.
func TestBridgeUpstream401(t *testing.T) {
	cp := newFakeCP(t)
	refusing := httpUpstream(t, http.StatusUnauthorized, `Bearer resource_metadata="https://accounts.example.com/x"`)
	cp.setRoute("Drive", &route{mode: "authcode", upstream: refusing, principals: map[string]bool{"alice": true}, vault: map[string]bool{"alice": true}, scopes: []string{"drive.read"}, protocol: "2025-11-25"})
	g := newGateway(t, cp, nil)
	resp, body := g.do(t, "POST", "/Drive/mcp", modernHeaders("mcpg_alice", "tools/list", ""), modernCall("tools/list", ""))
	if resp.StatusCode != 401 || body != strings.Replace(rpcUnauthorized, `"id":null`, `"id":1`, 1) ||
		resp.Header.Get("WWW-Authenticate") != `Bearer resource_metadata="`+g.srv.URL+`/.well-known/oauth-protected-resource/Drive/mcp", scope="drive.read"` {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if len(cp.reports) != 1 || cp.reports[0].GetPrincipal() != "alice" || cp.reports[0].GetRoute() != "Drive" {
		t.Errorf("reports %v", cp.reports)
	}
}

// TestBridgeSharedSessionIDs: two 2026-07-28 requests of one principal with
// the same JSON-RPC id, in flight at once on the one bridge session they
// share, each go upstream under an id of the gateway's own (the upstream
// would refuse a duplicate in-flight id) and each client gets its own id
// back.
func TestBridgeSharedSessionIDs(t *testing.T) {
	cp := newFakeCP(t)
	old := newUpstream(t, true)
	cp.setRoute("Old", &route{mode: "none", upstream: old.url(), principals: map[string]bool{"alice": true}, protocol: "2025-11-25"})
	g := newGateway(t, cp, nil)
	h := modernHeaders("mcpg_alice", "tools/call", "slow")
	body := modernCall("tools/call", `"name":"slow","arguments":{}`)
	type answer struct {
		status int
		body   string
	}
	answers := make(chan answer, 2)
	for range 2 {
		go func() {
			resp, b := g.do(t, "POST", "/Old/mcp", h, body)
			answers <- answer{resp.StatusCode, b}
		}()
	}
	// Both calls are in the upstream before either may finish.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		ids := map[string]bool{}
		for _, r := range old.requests() {
			if strings.Contains(r.body, `"name":"slow"`) {
				i := strings.Index(r.body, `"id":`)
				ids[r.body[i:i+strings.IndexByte(r.body[i:], ',')]] = true
			}
		}
		if len(ids) == 2 {
			for id := range ids {
				if !strings.HasPrefix(id, `"id":"mcpgate-bridge-`) {
					t.Errorf("upstream got the call under %s, want a gateway id", id)
				}
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("both calls never reached the upstream together: %v", ids)
		case <-time.After(5 * time.Millisecond):
		}
	}
	old.Release()
	for range 2 {
		a := <-answers
		if a.status != 200 || !strings.Contains(a.body, `"id":1,`) || !strings.Contains(a.body, `"done"`) || strings.Contains(a.body, "mcpgate-bridge-") {
			t.Errorf("answer %d %s", a.status, a.body)
		}
	}
}
