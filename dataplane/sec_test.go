package dataplane_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/ops/audit"
)

const rpcAmbiguous = `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: duplicate or case-variant member names"}}`

// openSession initializes a session through the gateway with raw requests
// and returns the gateway's session handle.
func openSession(t *testing.T, g *gateway, route string, key map[string]string) string {
	t.Helper()
	resp, body := g.do(t, "POST", "/"+route+"/mcp", with(key), initBody)
	h := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || h == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	hdr := with(key)
	hdr["Mcp-Session-Id"] = h
	hdr["MCP-Protocol-Version"] = "2025-06-18"
	if resp, body := g.do(t, "POST", "/"+route+"/mcp", hdr, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); resp.StatusCode != 202 {
		t.Fatalf("initialized: %d %s", resp.StatusCode, body)
	}
	return h
}

// TestSec01ToolNameCaseBypass: a body whose members the gateway reads have
// case variants or duplicates (which encoding/json resolves one way and the
// upstream SDK another) is refused with 400 and a fixed -32600 answer and
// never reaches the upstream; Mcp-Method / Mcp-Name must agree with the
// body; what is forwarded is the canonical re-encoding of what was
// authorized. The fake control plane denies the tool "secret".
func TestSec01ToolNameCaseBypass(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, nil)
	alice := map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}
	handle := openSession(t, g, "Echo", alice)
	hdr := with(alice)
	hdr["Mcp-Session-Id"] = handle
	hdr["MCP-Protocol-Version"] = "2025-06-18"

	// The control: asking for secret plainly is denied.
	if resp, body := g.do(t, "POST", "/Echo/mcp", hdr, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"secret","arguments":{}}}`); resp.StatusCode != 403 {
		t.Fatalf("plain secret: %d %s", resp.StatusCode, body)
	}
	for _, tc := range []struct{ name, body string }{
		{"NAME", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"secret","NAME":"echo","arguments":{}}}`},
		{"Name first", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"Name":"echo","name":"secret","arguments":{}}}`},
		{"duplicate name", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","name":"secret","arguments":{}}}`},
		{"escaped duplicate", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"secret","\u006eame":"echo","arguments":{}}}`},
		{"long s params", "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"secret\",\"arguments\":{}},\"param\u017f\":{\"name\":\"echo\"}}"},
		{"METHOD", `{"jsonrpc":"2.0","id":5,"method":"tools/call","METHOD":"ping","params":{"name":"secret","arguments":{}}}`},
		{"Params", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"secret","arguments":{}},"Params":{"name":"echo"}}`},
		{"batch", `[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"secret","Name":"echo","arguments":{}}}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.requests())
			resp, body := g.do(t, "POST", "/Echo/mcp", hdr, tc.body)
			if resp.StatusCode != 400 || body != rpcAmbiguous {
				t.Errorf("status %d body %s; want 400 %s", resp.StatusCode, body, rpcAmbiguous)
			}
			if len(up.requests()) != before {
				t.Errorf("the upstream saw the request")
			}
		})
	}
	// Header mirrors must agree with the body (and may not describe a batch).
	for name, h := range map[string]map[string]string{
		"Mcp-Name differs":   {"Mcp-Method": "tools/call", "Mcp-Name": "secret"},
		"Mcp-Name case":      {"Mcp-Method": "tools/call", "Mcp-Name": "Echo"},
		"Mcp-Method differs": {"Mcp-Method": "ping"},
	} {
		hh := with(hdr)
		for k, v := range h {
			hh[k] = v
		}
		before := len(up.requests())
		resp, body := g.do(t, "POST", "/Echo/mcp", hh, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`)
		if want := strings.Replace(rpcHeaderMismatch, `"id":null`, `"id":7`, 1); resp.StatusCode != 400 || body != want {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
		if len(up.requests()) != before {
			t.Errorf("%s: the upstream saw the request", name)
		}
	}
	hb := with(hdr)
	hb["Mcp-Method"] = "ping"
	if resp, body := g.do(t, "POST", "/Echo/mcp", hb, `[{"jsonrpc":"2.0","id":8,"method":"ping"}]`); resp.StatusCode != 400 || body != rpcHeaderMismatch {
		t.Errorf("batch with Mcp-Method: %d %s", resp.StatusCode, body)
	}

	// Allowed: escapes and whitespace are the client's; the upstream gets
	// the canonical form of what was authorized, and runs it.
	before := len(up.requests())
	resp, body := g.do(t, "POST", "/Echo/mcp", hdr, "{ \"jsonrpc\":\"2.0\", \"id\":9, \"method\":\"tools\\/call\",\n \"params\":{\"\\u006eame\":\"\\u0065cho\",\"arguments\":{\"text\":\"hi\"}} }")
	if resp.StatusCode != 200 || !strings.Contains(body, "echo: hi") {
		t.Fatalf("allowed call: %d %s", resp.StatusCode, body)
	}
	reqs := up.requests()[before:]
	if len(reqs) != 1 || reqs[0].body != `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}` {
		t.Errorf("upstream received %+v", reqs)
	}
}

// auditEvents parses the audit log lines.
func auditEvents(t *testing.T, buf *lockedBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %s: %v", sc.Bytes(), err)
		}
		out = append(out, l)
	}
	return out
}

// TestSec01AuditRecordsAuthorizedTool: the audit event names the tool the
// decision was about: the allowed one, the refused one in a batch, none
// for a body refused as ambiguous.
func TestSec01AuditRecordsAuthorizedTool(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	var buf lockedBuffer
	g := newGateway(t, cp, func(c *dataplane.Config) { c.Audit = audit.New(&buf) })
	alice := with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"})
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"secret"}}]`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"secret","NAME":"echo"}}`,
	} {
		g.do(t, "POST", "/Echo/mcp", alice, body)
	}
	var got []string
	for _, e := range auditEvents(t, &buf) {
		tool, _ := e["tool"].(string)
		got = append(got, fmt.Sprintf("%v/%s/%v", e["decision"], tool, e["status"]))
	}
	want := []string{"allow/echo/200", "deny/secret/403", "allow//400"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("audit %v, want %v", got, want)
	}
}

// scripted is an upstream answering every POST with a fixed content type
// and body.
func scripted(t *testing.T, contentType, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", contentType)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

// TestSec02ToolsListFilteredWhateverTheID: an upstream answering tools/list
// with the id spelled differently (3.0, 4e0, a \u escape) still has its
// tools filtered, as JSON and as SSE; a reply that cannot be decoded
// exactly (a duplicate or case-variant id, result or tools) is answered
// 502 or ends the stream with an error event, never relayed.
func TestSec02ToolsListFilteredWhateverTheID(t *testing.T) {
	cp := newFakeCP(t)
	g := newGateway(t, cp, nil)
	alice := with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"})
	tools := `{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"secret","inputSchema":{"type":"object"}}]}`
	n := 0
	for _, id := range []string{`3.0`, `4e0`, `"\u0033"`, `30e-1`, `99`} {
		reply := `{"jsonrpc":"2.0","id":` + id + `,"result":` + tools + `}`
		for _, ct := range []string{"application/json", "text/event-stream"} {
			body := reply
			if ct == "text/event-stream" {
				body = "event: message\ndata: " + reply + "\n\n"
			}
			n++
			r := fmt.Sprintf("R%d", n)
			cp.setRoute(r, &route{mode: "none", upstream: scripted(t, ct, body), principals: map[string]bool{"alice": true}, disallowed: []string{"secret"}})
			resp, got := g.do(t, "POST", "/"+r+"/mcp", alice, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
			if resp.StatusCode != 200 || strings.Contains(got, "secret") || !strings.Contains(got, `"echo"`) {
				t.Errorf("id %s %s: %d %s", id, ct, resp.StatusCode, got)
			}
		}
	}
	unchecked := `{"jsonrpc":"2.0","id":3,"error":{"code":-32002,"message":"upstream MCP server reply could not be checked"}}`
	for name, reply := range map[string]string{
		"duplicate Id":   `{"jsonrpc":"2.0","id":3,"Id":4,"result":` + tools + `}`,
		"duplicate id":   `{"jsonrpc":"2.0","id":4,"id":3,"result":` + tools + `}`,
		"Result":         `{"jsonrpc":"2.0","id":3,"Result":` + tools + `}`,
		"tools twice":    `{"jsonrpc":"2.0","id":3,"result":{"tools":[],"tools":[{"name":"secret"}]}}`,
		"trailing reply": `{"jsonrpc":"2.0","id":3,"result":{"tools":[]}}{"jsonrpc":"2.0","id":3,"result":` + tools + `}`,
	} {
		for _, ct := range []string{"application/json", "text/event-stream", "text/plain"} {
			body := reply
			if ct == "text/event-stream" {
				body = "event: message\ndata: " + reply + "\n\n"
			}
			n++
			r := fmt.Sprintf("R%d", n)
			cp.setRoute(r, &route{mode: "none", upstream: scripted(t, ct, body), principals: map[string]bool{"alice": true}, disallowed: []string{"secret"}})
			resp, got := g.do(t, "POST", "/"+r+"/mcp", alice, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
			switch ct {
			case "text/event-stream":
				if want := "event: message\ndata: " + unchecked + "\n\n"; resp.StatusCode != 200 || got != want {
					t.Errorf("%s %s: %d %q", name, ct, resp.StatusCode, got)
				}
			default:
				if resp.StatusCode != 502 || got != unchecked {
					t.Errorf("%s %s: %d %s", name, ct, resp.StatusCode, got)
				}
			}
		}
	}
}

// rawPartial sends headers announcing a body of total bytes, then only
// sent bytes of it, and reads the response without sending the rest. The
// read deadline only keeps an old gateway (which waits for the whole body)
// from hanging the test.
func rawPartial(t *testing.T, base, path string, header map[string]string, total, sent int) (*http.Response, string) {
	t.Helper()
	u, _ := url.Parse(base)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var h bytes.Buffer
	fmt.Fprintf(&h, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\n", path, u.Host, total)
	for k, v := range header {
		fmt.Fprintf(&h, "%s: %s\r\n", k, v)
	}
	h.WriteString("\r\n")
	h.Write(bigBatch(total)[:sent])
	if _, err := c.Write(h.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer before the body was sent: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestSec03UnauthenticatedBodyNotParsed: without a usable credential the
// body does not inform the decision and is read only up to 64 KiB: a
// request announcing 4 MB is answered 401 after 64 KiB + 1 bytes, with a
// single identity-only Authorize (no method, no tool). A good credential
// with a small body costs one Authorize per call, as before; with a large
// body, one identity-only Authorize, then one per call.
func TestSec03UnauthenticatedBodyNotParsed(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, nil)
	reqs := func() int {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		return len(cp.requests)
	}
	last := func(n int) []string {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		var out []string
		for _, r := range cp.requests[len(cp.requests)-n:] {
			out = append(out, r.GetJsonrpcMethod()+"/"+r.GetToolName())
		}
		return out
	}
	prm := g.srv.URL + "/.well-known/oauth-protected-resource/Echo/mcp"

	for name, hdr := range map[string]map[string]string{
		"no credential": nil,
		"unknown key":   {"X-MCPGate-API-Key": "mcpg_nobody"},
		"basic":         {"Authorization": "Basic dXNlcjpwdw=="},
	} {
		t.Run(name, func(t *testing.T) {
			before := reqs()
			resp, body := rawPartial(t, g.srv.URL, "/Echo/mcp", hdr, 4<<20, 64<<10+1)
			if resp.StatusCode != 401 || body != rpcUnauthorized {
				t.Errorf("status %d body %s", resp.StatusCode, body)
			}
			www := `Bearer resource_metadata="` + prm + `"`
			if name == "unknown key" {
				www += `, error="invalid_token", error_description="unknown credential"`
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != www {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if n := reqs() - before; n != 1 || last(1)[0] != "/" {
				t.Errorf("Authorize calls %d %v, want one identity-only", n, last(n))
			}
		})
	}
	// A small body without a credential: the decision is identity-only,
	// the id is still echoed.
	before := reqs()
	resp, body := g.do(t, "POST", "/Echo/mcp", with(nil), `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"secret"}}`)
	if want := strings.Replace(rpcUnauthorized, `"id":null`, `"id":2`, 1); resp.StatusCode != 401 || body != want {
		t.Errorf("small anonymous: %d %s", resp.StatusCode, body)
	}
	if got := last(reqs() - before); len(got) != 1 || got[0] != "/" {
		t.Errorf("small anonymous: Authorize calls %v", got)
	}
	// Good credential, small body: one Authorize per call, no extra one.
	alice := with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"})
	before = reqs()
	resp, body = g.do(t, "POST", "/Echo/mcp", alice, initBody)
	if resp.StatusCode != 200 {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	if got := last(reqs() - before); len(got) != 1 || got[0] != "initialize/" {
		t.Errorf("small body: Authorize calls %v", got)
	}
	// Good credential, large body: identity first, then each call.
	big := `[` + initBody + `,{"jsonrpc":"2.0","method":"notifications/x","params":{"pad":"` + strings.Repeat("a", 100<<10) + `"}}]`
	before = reqs()
	upBefore := len(up.requests())
	g.do(t, "POST", "/Echo/mcp", alice, big)
	if len(up.requests()) != upBefore+1 {
		t.Errorf("large batch not forwarded")
	}
	if got := last(reqs() - before); strings.Join(got, " ") != "/ initialize/ notifications/x/" {
		t.Errorf("large body: Authorize calls %v", got)
	}
	// Unknown key, large body: refused on identity, nothing parsed.
	before = reqs()
	resp, _ = g.do(t, "POST", "/Echo/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_nobody"}), big)
	if got := last(reqs() - before); resp.StatusCode != 401 || len(got) != 1 || got[0] != "/" {
		t.Errorf("unknown key, large body: %d %v", resp.StatusCode, got)
	}
}
