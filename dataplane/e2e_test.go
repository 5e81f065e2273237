package dataplane_test

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/dataplane"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// TestSDKClient runs the official Go SDK client through the gateway: both
// the 2026-07-28 sessionless path (server/discover) and a 2025-11-25
// session with initialize, tools/list, tools/call, the GET stream and
// DELETE.
func TestSDKClient(t *testing.T) {
	for _, version := range []string{"", "2025-11-25"} {
		for _, jsonResponse := range []bool{true, false} {
			name := "latest"
			if version != "" {
				name = version
			}
			if jsonResponse {
				name += "/json"
			} else {
				name += "/sse"
			}
			t.Run(name, func(t *testing.T) {
				cp := newFakeCP(t)
				up := newUpstream(t, jsonResponse)
				cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
				g := newGateway(t, cp, nil)
				kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
				cs := connectClient(t, g, "Echo", kt, version, nil)
				tools, err := cs.ListTools(t.Context(), nil)
				if err != nil {
					t.Fatalf("tools/list: %v", err)
				}
				if got := toolNames(tools); !slices.Equal(got, []string{"echo", "secret", "slow"}) {
					t.Errorf("tools %v", got)
				}
				res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
				if err != nil {
					t.Fatalf("tools/call: %v", err)
				}
				if txt := res.Content[0].(*mcp.TextContent).Text; txt != "echo: hi" {
					t.Errorf("result %q", txt)
				}
				if err := cs.Close(); err != nil {
					t.Errorf("close: %v", err)
				}

				// Sessions: the client saw only sealed handles, the upstream only
				// its own ids.
				upstreamIDs := map[string]bool{}
				methods := map[string]bool{}
				for _, r := range up.requests() {
					methods[r.method] = true
					if id := r.header.Get("Mcp-Session-Id"); id != "" {
						upstreamIDs[id] = true
					}
					if r.header.Get("X-Mcpgate-Api-Key") != "" {
						t.Errorf("upstream saw the API key")
					}
				}
				handle := regexp.MustCompile(`^[\x21-\x7E]+$`)
				for _, r := range kt.responses() {
					if r.status >= 400 {
						t.Errorf("%s answered %d", r.method, r.status)
					}
					if h := r.header.Get("Mcp-Session-Id"); h != "" {
						if upstreamIDs[h] || !handle.MatchString(h) {
							t.Errorf("client saw session id %q", h)
						}
					}
				}
				if version != "" {
					if len(upstreamIDs) != 1 {
						t.Errorf("upstream session ids %v", upstreamIDs)
					}
					if !methods["GET"] || !methods["DELETE"] {
						t.Errorf("upstream methods %v: want the GET stream and DELETE", methods)
					}
				}
			})
		}
	}
}

func toolNames(r *mcp.ListToolsResult) []string {
	var out []string
	for _, t := range r.Tools {
		out = append(out, t.Name)
	}
	slices.Sort(out)
	return out
}

// TestToolsListFiltered filters tools/list by the decision's lists, for JSON
// and SSE upstream replies.
func TestToolsListFiltered(t *testing.T) {
	for _, jsonResponse := range []bool{true, false} {
		t.Run(map[bool]string{true: "json", false: "sse"}[jsonResponse], func(t *testing.T) {
			cp := newFakeCP(t)
			up := newUpstream(t, jsonResponse)
			cp.setRoute("Allowed", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}, allowed: []string{"echo", "slow"}})
			cp.setRoute("Disallowed", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}, disallowed: []string{"secret"}})
			cp.setRoute("Both", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}, allowed: []string{"echo", "secret"}, disallowed: []string{"secret"}})
			g := newGateway(t, cp, nil)
			for r, want := range map[string][]string{
				"Allowed":    {"echo", "slow"},
				"Disallowed": {"echo", "slow"},
				"Both":       {"echo"},
			} {
				kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
				cs := connectClient(t, g, r, kt, "2025-11-25", nil)
				tools, err := cs.ListTools(t.Context(), nil)
				if err != nil {
					t.Fatalf("%s tools/list: %v", r, err)
				}
				if got := toolNames(tools); !slices.Equal(got, want) {
					t.Errorf("%s tools %v, want %v", r, got, want)
				}
				_ = cs.Close()
			}
		})
	}
}

// TestStreamingNotBuffered proves SSE events are flushed one by one: the
// upstream tool only finishes after the client has read its progress event
// through the gateway. A buffering proxy deadlocks here.
func TestStreamingNotBuffered(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, false)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, nil)
	var once sync.Once
	progressed := make(chan string, 1)
	kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
	cs := connectClient(t, g, "Echo", kt, "2025-11-25", &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			once.Do(func() {
				progressed <- req.Params.Message
				up.Release()
			})
		},
	})
	defer cs.Close()
	params := &mcp.CallToolParams{Name: "slow", Arguments: map[string]any{}}
	params.SetProgressToken("p1")
	// The deadline only turns a buffering proxy's deadlock into a failure;
	// nothing here measures time.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, params)
	if err != nil {
		t.Fatalf("tools/call (a buffering proxy never delivers the progress event): %v", err)
	}
	if msg := <-progressed; msg != "working" {
		t.Errorf("progress %q", msg)
	}
	if txt := res.Content[0].(*mcp.TextContent).Text; txt != "done" {
		t.Errorf("result %q", txt)
	}
	var sse int
	for _, r := range kt.responses() {
		if strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
			sse++
			if r.header.Get("X-Accel-Buffering") != "no" || r.header.Get("Cache-Control") != "no-cache" {
				t.Errorf("SSE response headers %v", r.header)
			}
		}
	}
	if sse == 0 {
		t.Errorf("no SSE response seen")
	}
}

// TestSessionReplay: a handle is bound to its principal and route; any
// replica with the key ring opens it; the upstream id never leaks.
func TestSessionReplay(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	both := map[string]bool{"alice": true, "bob": true}
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: both})
	cp.setRoute("Other", &route{mode: "none", upstream: up.url(), principals: both})
	g := newGateway(t, cp, nil)

	resp, body := g.do(t, "POST", "/Echo/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), initBody)
	if resp.StatusCode != 200 {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	handle := resp.Header.Get("Mcp-Session-Id")
	if handle == "" {
		t.Fatal("no session handle")
	}
	list := `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`
	cases := []struct {
		name   string
		path   string
		key    string
		handle string
		status int
	}{
		{name: "owner", path: "/Echo/mcp", key: "mcpg_alice", handle: handle, status: 200},
		{name: "owner by token", path: "/Echo/mcp", key: "", handle: handle, status: 200},
		{name: "other principal", path: "/Echo/mcp", key: "mcpg_bob", handle: handle, status: 404},
		{name: "other route", path: "/Other/mcp", key: "mcpg_alice", handle: handle, status: 404},
		{name: "tampered", path: "/Echo/mcp", key: "mcpg_alice", handle: handle[:len(handle)-2] + "AA", status: 404},
		{name: "garbage", path: "/Echo/mcp", key: "mcpg_alice", handle: "not a handle!", status: 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := with(map[string]string{"Mcp-Session-Id": tc.handle, "MCP-Protocol-Version": "2025-06-18"})
			if tc.key != "" {
				h["X-MCPGate-API-Key"] = tc.key
			} else {
				h["Authorization"] = "Bearer tok_alice"
			}
			before := len(up.requests())
			resp, body := g.do(t, "POST", tc.path, h, list)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 404 {
				if body != echoID(rpcUnknownSession, list) {
					t.Errorf("body %s", body)
				}
				if len(up.requests()) != before {
					t.Errorf("replayed session reached the upstream")
				}
			}
		})
	}

	// A second replica sharing only the control plane opens the handle.
	g2 := newGateway(t, cp, nil)
	h := with(map[string]string{"Mcp-Session-Id": handle, "MCP-Protocol-Version": "2025-06-18", "X-MCPGate-API-Key": "mcpg_alice"})
	if resp, body := g2.do(t, "POST", "/Echo/mcp", h, list); resp.StatusCode != 200 {
		t.Fatalf("second replica: %d %s", resp.StatusCode, body)
	}

	// Key rotation: a new first key seals; handles under the old key still
	// open; a replica that has not seen the new key refreshes on demand.
	cp.mu.Lock()
	cp.keys = append([]*authorizev1.SessionKey{{Id: "k2", Key: []byte("0123456789abcdef0123456789abcdef")}}, cp.keys...)
	cp.mu.Unlock()
	g3 := newGateway(t, cp, nil)
	resp, body = g3.do(t, "POST", "/Echo/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), initBody)
	if resp.StatusCode != 200 {
		t.Fatalf("initialize on g3: %d %s", resp.StatusCode, body)
	}
	newHandle := resp.Header.Get("Mcp-Session-Id")
	for name, gw := range map[string]*gateway{"g": g, "g3": g3} {
		for _, hd := range []string{handle, newHandle} {
			h := with(map[string]string{"Mcp-Session-Id": hd, "MCP-Protocol-Version": "2025-06-18", "X-MCPGate-API-Key": "mcpg_alice"})
			if resp, body := gw.do(t, "POST", "/Echo/mcp", h, list); resp.StatusCode != 200 {
				t.Errorf("%s: handle after rotation: %d %s", name, resp.StatusCode, body)
			}
		}
	}
}

// TestControlPlaneDown: 503 + Retry-After while no replica answers, recovery
// without restart, failover to a healthy replica, and an unauthenticated
// data plane fails closed.
func TestControlPlaneDown(t *testing.T) {
	cp, _ := world(t)
	g := newGateway(t, cp, nil)
	alice := with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"})
	if resp, body := g.do(t, "POST", "/Echo/mcp", alice, initBody); resp.StatusCode != 200 {
		t.Fatalf("before: %d %s", resp.StatusCode, body)
	}
	cp.down.Store(true)
	for _, path := range []string{"/Echo/mcp", "/Gmail/mcp"} {
		resp, body := g.do(t, "POST", path, alice, initBody)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || body != echoID(rpcUnavailable, initBody) {
			t.Fatalf("down: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	// The metadata document is built by the data plane alone.
	resp, body := g.do(t, "GET", "/.well-known/oauth-protected-resource/Gmail/mcp", nil, "")
	if resp.StatusCode != 200 || body != `{"resource":"`+g.srv.URL+`/Gmail/mcp","authorization_servers":["`+g.srv.URL+`"],"bearer_methods_supported":["header"]}` {
		t.Fatalf("PRM down: %d %s", resp.StatusCode, body)
	}
	resp, body = g.do(t, "GET", "/authorize?client_id=c", nil, "")
	if resp.StatusCode != 503 || body != bodyUnavailable {
		t.Fatalf("relay down: %d %s", resp.StatusCode, body)
	}
	cp.down.Store(false)
	if resp, body := g.do(t, "POST", "/Echo/mcp", alice, initBody); resp.StatusCode != 200 {
		t.Fatalf("after recovery: %d %s", resp.StatusCode, body)
	}

	// Failover: a dead replica first in the list.
	dead := newStatusServer(0, "")
	dead.Close()
	gf := newGateway(t, cp, func(c *dataplane.Config) { c.ControlPlaneURLs = []string{dead.URL, cp.srv.URL} })
	for range 4 {
		if resp, body := gf.do(t, "POST", "/Echo/mcp", alice, initBody); resp.StatusCode != 200 {
			t.Fatalf("failover: %d %s", resp.StatusCode, body)
		}
	}

	// A data plane with the wrong credential is refused by the control
	// plane and fails closed.
	gw := newGateway(t, cp, func(c *dataplane.Config) { c.DataPlaneToken = "wrong" })
	if resp, body := gw.do(t, "POST", "/Echo/mcp", alice, initBody); resp.StatusCode != 503 || body != echoID(rpcUnavailable, initBody) {
		t.Fatalf("wrong token: %d %s", resp.StatusCode, body)
	}
}

// TestProtectedResourceMetadata covers checklist B.
func TestProtectedResourceMetadata(t *testing.T) {
	cp, _ := world(t)
	cp.setRoute("Open", &route{mode: "none", upstream: "http://127.0.0.1:1/mcp"})
	g := newGateway(t, cp, nil)
	base := g.srv.URL
	cases := []struct {
		name   string
		method string
		path   string
		header map[string]string
		status int
		body   string
	}{
		// No scopes_supported, and unknown routes alike: the document
		// must not tell anonymous callers which routes exist (issue 8
		// item 16).
		{name: "gmail", method: "GET", path: "/.well-known/oauth-protected-resource/Gmail/mcp", status: 200,
			body: `{"resource":"` + base + `/Gmail/mcp","authorization_servers":["` + base + `"],"bearer_methods_supported":["header"]}`},
		{name: "drive", method: "GET", path: "/.well-known/oauth-protected-resource/Drive/mcp", header: map[string]string{"Origin": "http://localhost:6274"}, status: 200,
			body: `{"resource":"` + base + `/Drive/mcp","authorization_servers":["` + base + `"],"bearer_methods_supported":["header"]}`},
		{name: "no scopes", method: "GET", path: "/.well-known/oauth-protected-resource/Open/mcp", status: 200,
			body: `{"resource":"` + base + `/Open/mcp","authorization_servers":["` + base + `"],"bearer_methods_supported":["header"]}`},
		{name: "unknown", method: "GET", path: "/.well-known/oauth-protected-resource/Unknown/mcp", status: 200,
			body: `{"resource":"` + base + `/Unknown/mcp","authorization_servers":["` + base + `"],"bearer_methods_supported":["header"]}`},
		{name: "malformed route", method: "GET", path: "/.well-known/oauth-protected-resource/a%20b/mcp", status: 404, body: bodyNotFound},
		{name: "root", method: "GET", path: "/.well-known/oauth-protected-resource", status: 404, body: bodyNotFound},
		{name: "trailing slash", method: "GET", path: "/.well-known/oauth-protected-resource/Gmail/mcp/", status: 404, body: bodyNotFound},
		{name: "options", method: "OPTIONS", path: "/.well-known/oauth-protected-resource/Gmail/mcp", header: map[string]string{"Origin": "http://localhost:6274"}, status: 204},
		{name: "post", method: "POST", path: "/.well-known/oauth-protected-resource/Gmail/mcp", status: 405, body: bodyMethodNotAllow},
		{name: "foreign origin still readable", method: "GET", path: "/.well-known/oauth-protected-resource/Gmail/mcp", header: map[string]string{"Origin": "https://evil.example"}, status: 200,
			body: `{"resource":"` + base + `/Gmail/mcp","authorization_servers":["` + base + `"],"bearer_methods_supported":["header"]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := g.do(t, tc.method, tc.path, tc.header, "")
			if resp.StatusCode != tc.status || body != tc.body {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, tc.status, tc.body)
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("Allow-Origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
			}
			if tc.status == 200 && resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
	// The challenge points at the document (checklist 21).
	resp, _ := g.do(t, "POST", "/Gmail/mcp", with(nil), initBody)
	if want := `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/Gmail/mcp", scope="gmail.read gmail.send"`; resp.Header.Get("WWW-Authenticate") != want {
		t.Errorf("challenge %q", resp.Header.Get("WWW-Authenticate"))
	}
}

// TestRelay checks the OAuth relay's headers, path and query, that redirects
// are returned rather than followed, that cookies pass, and that a client
// cannot forge the gateway's own headers.
func TestRelay(t *testing.T) {
	cp, _ := world(t)
	g := newGateway(t, cp, nil)
	cases := []struct {
		method, path, body string
		header             map[string]string
	}{
		{method: "GET", path: "/authorize?response_type=code&client_id=c1&state=s%2F1"},
		{method: "POST", path: "/token", body: "grant_type=authorization_code&code=x", header: map[string]string{
			"Content-Type": "application/x-www-form-urlencoded", "Authorization": "Basic Y2xpZW50OnNlY3JldA==",
			"X-MCPGate-Public-URL": "https://evil.example", "X-MCPGate-Client-Address": "6.6.6.6", "X-MCPGate-Client-Authorization": "forged",
		}},
		{method: "GET", path: "/.well-known/oauth-authorization-server"},
		{method: "GET", path: "/.well-known/openid-configuration"},
		{method: "POST", path: "/register", body: `{"redirect_uris":["http://127.0.0.1/cb"]}`},
		{method: "POST", path: "/revoke", body: "token=t"},
		{method: "GET", path: "/oauth/callback?code=u&state=v"},
		{method: "GET", path: "/connections/Gmail"},
		{method: "GET", path: "/signin"},
		{method: "POST", path: "/consent", body: "approve=1"},
	}
	for i, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			resp, _ := g.do(t, tc.method, tc.path, tc.header, tc.body)
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://accounts.example.com/o/oauth2/auth?state=s" {
				t.Fatalf("status %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "mcpgate_flow=abc") {
				t.Errorf("Set-Cookie %q", resp.Header.Get("Set-Cookie"))
			}
			cp.mu.Lock()
			r, body := cp.relayed[i], cp.relayBody[i]
			cp.mu.Unlock()
			wantPath, wantQuery, _ := strings.Cut(tc.path, "?")
			if r.URL.Path != "/relay"+wantPath || r.URL.RawQuery != wantQuery || r.Method != tc.method || body != tc.body {
				t.Errorf("relayed %s %s?%s %q", r.Method, r.URL.Path, r.URL.RawQuery, body)
			}
			if r.Header.Get("Authorization") != "Bearer "+dpToken {
				t.Errorf("relay Authorization %q", r.Header.Get("Authorization"))
			}
			if r.Header.Get("X-MCPGate-Public-URL") != g.srv.URL || r.Header.Get("X-MCPGate-Client-Address") != "127.0.0.1" {
				t.Errorf("relay headers %v", r.Header)
			}
			if got, want := r.Header.Values("X-MCPGate-Client-Authorization"), tc.header["Authorization"]; want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
				t.Errorf("client authorization %q, want %q", got, want)
			}
		})
	}
}
