package dataplane_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/dataplane"
)

const (
	initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	callBody = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"secret","arguments":{}}}`

	rpcUnauthorized    = `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"authentication required"}}`
	rpcForbidden       = `{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"forbidden"}}`
	rpcUnknownServer   = `{"jsonrpc":"2.0","id":null,"error":{"code":-32004,"message":"unknown MCP server"}}`
	rpcUnavailable     = `{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"authorization temporarily unavailable"}}`
	rpcParseError      = `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`
	rpcHeaderMismatch  = `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"Mcp-Method or Mcp-Name header does not match the body"}}`
	rpcTooLarge        = `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"request body too large"}}`
	rpcUnknownSession  = `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"session not found"}}`
	rpcUpstreamFailed  = `{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"upstream MCP server unreachable"}}`
	rpcUpstreamRefused = `{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"upstream MCP server rejected the gateway's credentials"}}`
	bodyNotFound       = `{"error":"not_found","error_description":"no such endpoint"}`
	bodyBadHost        = `{"error":"forbidden","error_description":"invalid Host header"}`
	bodyBadOrigin      = `{"error":"forbidden","error_description":"origin not allowed"}`
	bodyMethodNotAllow = `{"error":"method_not_allowed","error_description":"method not allowed"}`
	bodyUnavailable    = `{"error":"temporarily_unavailable","error_description":"control plane unavailable"}`
)

var mcpHeaders = map[string]string{
	"Accept":       "application/json, text/event-stream",
	"Content-Type": "application/json",
}

func with(extra map[string]string) map[string]string {
	h := map[string]string{}
	for k, v := range mcpHeaders {
		h[k] = v
	}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// world builds the fake control plane's routes over real upstreams.
func world(t *testing.T) (*fakeCP, *upstream) {
	t.Helper()
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	alice := map[string]bool{"alice": true}
	both := map[string]bool{"alice": true, "bob": true}
	unauthorized := httpUpstream(t, http.StatusUnauthorized, `Bearer resource_metadata="https://accounts.google.com/.well-known/oauth-protected-resource"`)
	dead := httpUpstream(t, 0, "")
	forbidding := httpUpstream(t, http.StatusForbidden, `Bearer error="insufficient_scope", resource_metadata="https://accounts.google.com/x"`)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: both})
	cp.setRoute("Gmail", &route{mode: "authcode", upstream: up.url(), scopes: []string{"gmail.read", "gmail.send"}, principals: alice, vault: map[string]bool{}})
	cp.setRoute("Drive", &route{mode: "authcode", upstream: up.url(), scopes: []string{"drive.read"}, principals: alice, vault: alice})
	cp.setRoute("Static", &route{mode: "static", upstream: up.url(), principals: alice})
	cp.setRoute("Pass", &route{mode: "passthrough", upstream: up.url(), principals: alice})
	cp.setRoute("Revoked", &route{mode: "authcode", upstream: unauthorized, scopes: []string{"drive.read"}, principals: alice, vault: alice})
	cp.setRoute("Refusing", &route{mode: "static", upstream: unauthorized, principals: alice})
	cp.setRoute("Forbidding", &route{mode: "static", upstream: forbidding, principals: alice})
	cp.setRoute("Dead", &route{mode: "none", upstream: dead, principals: alice})
	return cp, up
}

// httpUpstream answers every request with status and WWW-Authenticate;
// status 0 gives the URL of a closed server.
func httpUpstream(t *testing.T, status int, www string) string {
	t.Helper()
	srv := newStatusServer(status, www)
	if status == 0 {
		srv.Close()
	} else {
		t.Cleanup(srv.Close)
	}
	return srv.URL + "/mcp"
}

func TestProxyTable(t *testing.T) {
	cp, up := world(t)
	g := newGateway(t, cp, func(c *dataplane.Config) { c.MaxBodyBytes = 64 << 10; c.AuthorizeTimeout = 500 * time.Millisecond })
	prm := func(r string) string { return g.srv.URL + "/.well-known/oauth-protected-resource/" + r + "/mcp" }
	gmailChallenge := `Bearer resource_metadata="` + prm("Gmail") + `", scope="gmail.read gmail.send"`
	alice := map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}
	const forwarded = "<forwarded>"

	cases := []struct {
		name   string
		method string
		path   string
		header map[string]string
		body   string
		status int
		www    string // exact; "" = header must be absent
		want   string // exact body, or forwarded: the upstream's result
		// unparsed: the gateway never parsed the body, so its answer
		// cannot echo the request's id.
		unparsed bool
	}{
		// Checklist A.
		{name: "no credential", method: "POST", path: "/Gmail/mcp", header: with(nil), body: initBody, status: 401, www: gmailChallenge, want: rpcUnauthorized},
		{name: "no credential GET", method: "GET", path: "/Gmail/mcp", header: map[string]string{"Accept": "text/event-stream"}, status: 401, www: gmailChallenge, want: rpcUnauthorized},
		{name: "no credential DELETE", method: "DELETE", path: "/Gmail/mcp", header: map[string]string{"Mcp-Session-Id": "x"}, status: 401, www: gmailChallenge, want: rpcUnauthorized},
		{name: "basic", method: "POST", path: "/Gmail/mcp", header: with(map[string]string{"Authorization": "Basic dXNlcjpwdw=="}), body: initBody, status: 401, www: gmailChallenge, want: rpcUnauthorized},
		{name: "empty bearer", method: "POST", path: "/Gmail/mcp", header: with(map[string]string{"Authorization": "Bearer"}), body: initBody, status: 401, www: gmailChallenge, want: rpcUnauthorized},
		{name: "query token ignored", method: "POST", path: "/Gmail/mcp?access_token=query-token", header: with(nil), body: initBody, status: 401, www: gmailChallenge, want: rpcUnauthorized},
		{
			name: "unknown key", method: "POST", path: "/Gmail/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_nobody"}), body: initBody, status: 401,
			www: gmailChallenge + `, error="invalid_token", error_description="unknown credential"`, want: rpcUnauthorized,
		},
		{
			name: "unknown gateway token", method: "POST", path: "/Gmail/mcp", header: with(map[string]string{"Authorization": "Bearer tok_mallory"}), body: initBody, status: 401,
			www: gmailChallenge + `, error="invalid_token", error_description="unknown credential"`, want: rpcUnauthorized,
		},
		// The reported case: valid LiteLLM-style key, authorization_code upstream, no grant.
		{name: "litellm key no grant", method: "POST", path: "/Gmail/mcp", header: with(map[string]string{"x-litellm-api-key": "Bearer mcpg_alice"}), body: initBody, status: 401, www: gmailChallenge, want: rpcUnauthorized},
		{name: "gateway token no grant", method: "POST", path: "/Gmail/mcp", header: with(map[string]string{"Authorization": "Bearer tok_alice"}), body: initBody, status: 401, www: gmailChallenge, want: rpcUnauthorized},
		{name: "no grant on route", method: "POST", path: "/Static/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_bob"}), body: initBody, status: 403, want: rpcForbidden},
		// A DENY is a plain 403 (issue 12: Deny's insufficient_scope
		// fields were never set by the control plane and are gone).
		{name: "forbidden tool", method: "POST", path: "/Echo/mcp", header: with(alice), body: callBody, status: 403, want: rpcForbidden},
		{
			name: "batch with forbidden tool", method: "POST", path: "/Echo/mcp", header: with(alice),
			body:   `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"secret"}}]`,
			status: 403, want: rpcForbidden,
		},
		{name: "unknown server", method: "POST", path: "/Unknown/mcp", header: with(alice), body: initBody, status: 404, want: rpcUnknownServer},
		{name: "unspecified decision", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_unspec"}), body: initBody, status: 503, want: rpcUnavailable},
		{name: "future decision", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_future"}), body: initBody, status: 503, want: rpcUnavailable},
		{name: "rpc error", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_err"}), body: initBody, status: 503, want: rpcUnavailable},
		{name: "rpc timeout", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_slow"}), body: initBody, status: 503, want: rpcUnavailable},
		// Forwarding, per upstream auth mode.
		{name: "none", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Cookie": "sid=1", "X-MCP-Gmail-Authorization": "Bearer up-token"}), body: initBody, status: 200, want: forwarded},
		{name: "trailing slash", method: "POST", path: "/Echo/mcp/", header: with(alice), body: initBody, status: 200, want: forwarded},
		{name: "litellm bare key", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"x-litellm-api-key": "mcpg_alice"}), body: initBody, status: 200, want: forwarded},
		{name: "authorization key", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"Authorization": "Bearer mcpg_alice"}), body: initBody, status: 200, want: forwarded},
		{name: "vault grant", method: "POST", path: "/Drive/mcp", header: with(map[string]string{"Authorization": "Bearer tok_alice"}), body: initBody, status: 200, want: forwarded},
		{name: "static secret", method: "POST", path: "/Static/mcp", header: with(alice), body: initBody, status: 200, want: forwarded},
		{name: "passthrough", method: "POST", path: "/Pass/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "x-mcp-pass-authorization": "Bearer up-token"}), body: initBody, status: 200, want: forwarded},
		{name: "discover", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "server/discover"}), body: `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}}}`, status: 200, want: forwarded},
		// Upstream failures are never relayed.
		{name: "upstream 401 vault grant", method: "POST", path: "/Revoked/mcp", header: with(alice), body: initBody, status: 401, www: `Bearer resource_metadata="` + prm("Revoked") + `", scope="drive.read"`, want: rpcUnauthorized},
		{name: "upstream 401 static", method: "POST", path: "/Refusing/mcp", header: with(alice), body: initBody, status: 502, want: rpcUpstreamRefused},
		{name: "upstream 403 without its challenge", method: "POST", path: "/Forbidding/mcp", header: with(alice), body: initBody, status: 403, want: `{"error":"invalid_token"}`},
		{name: "upstream unreachable", method: "POST", path: "/Dead/mcp", header: with(alice), body: initBody, status: 502, want: rpcUpstreamFailed},
		// Bad input: 400 only after authorization allowed.
		{name: "malformed allowed", method: "POST", path: "/Echo/mcp", header: with(alice), body: `{"jsonrpc":`, status: 400, want: rpcParseError},
		{name: "malformed unauthenticated", method: "POST", path: "/Gmail/mcp", header: with(nil), body: `not json`, status: 401, www: gmailChallenge, want: rpcUnauthorized},
		{name: "header mismatch", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Mcp-Method": "tools/list"}), body: initBody, status: 400, want: rpcHeaderMismatch},
		{name: "too large", method: "POST", path: "/Echo/mcp", header: with(alice), body: `{"jsonrpc":"2.0","id":1,"method":"x","params":{"p":"` + strings.Repeat("a", 70<<10) + `"}}`, status: 413, want: rpcTooLarge, unparsed: true},
		{name: "forged session", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Mcp-Session-Id": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}), body: initBody, status: 404, want: rpcUnknownSession},
		// Routing, Host and Origin.
		{name: "method not allowed", method: "PUT", path: "/Echo/mcp", header: alice, status: 405, want: bodyMethodNotAllow},
		{name: "unknown path", method: "GET", path: "/Echo/other", status: 404, want: bodyNotFound},
		{name: "root", method: "GET", path: "/", status: 404, want: bodyNotFound},
		{name: "bad host", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Host": "evil.example:80"}), body: initBody, status: 403, want: bodyBadHost},
		{name: "bad origin", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Origin": "https://evil.example"}), body: initBody, status: 403, want: bodyBadOrigin},
		{name: "allowed origin", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Origin": "http://localhost:6274"}), body: initBody, status: 200, want: forwarded},
		{name: "own origin", method: "POST", path: "/Echo/mcp", header: with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Origin": g.srv.URL}), body: initBody, status: 200, want: forwarded},
		{name: "preflight", method: "OPTIONS", path: "/Gmail/mcp", header: map[string]string{"Origin": "http://localhost:6274", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type,mcp-protocol-version,mcp-session-id"}, status: 204},
		{name: "preflight bad origin", method: "OPTIONS", path: "/Gmail/mcp", header: map[string]string{"Origin": "https://evil.example"}, status: 403, want: bodyBadOrigin},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(up.requests())
			resp, body := g.do(t, tc.method, tc.path, tc.header, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			www := resp.Header.Values("WWW-Authenticate")
			if tc.www == "" && len(www) != 0 || tc.www != "" && (len(www) != 1 || www[0] != tc.www) {
				t.Errorf("WWW-Authenticate %q, want %q", www, tc.www)
			}
			// Every gateway-made answer, 403 and 404 included (issue 12), is
			// never cached; a relayed upstream answer keeps its own headers.
			if tc.status >= 400 && tc.name != "upstream 403 without its challenge" && resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", resp.Header.Get("Cache-Control"))
			}
			switch tc.want {
			case forwarded:
				if !strings.Contains(body, `"result"`) {
					t.Errorf("forwarded body %s has no result", body)
				}
				if len(up.requests()) == before {
					t.Errorf("upstream saw nothing")
				}
			default:
				// Gateway error answers echo the id of a single request.
				want := tc.want
				if !tc.unparsed { // a body over the limit is never parsed
					want = echoID(tc.want, tc.body)
				}
				if body != want {
					t.Errorf("body %s, want %s", body, want)
				}
				if tc.status >= 400 && tc.status != 502 && !strings.HasPrefix(tc.name, "upstream") && len(up.requests()) != before {
					t.Errorf("refused request reached the upstream")
				}
			}
			if got := resp.Header.Get("Access-Control-Expose-Headers"); got != "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version" {
				t.Errorf("Expose-Headers %q", got)
			}
			if tc.status == 503 && resp.Header.Get("Retry-After") != "1" {
				t.Errorf("503 without Retry-After: 1")
			}
			if tc.status == 401 && resp.Header.Get("Mcp-Session-Id") != "" {
				t.Errorf("401 carries a session")
			}
			if o := tc.header["Origin"]; o != "" && tc.status != 403 && resp.Header.Get("Access-Control-Allow-Origin") != o {
				t.Errorf("Allow-Origin %q, want %q", resp.Header.Get("Access-Control-Allow-Origin"), o)
			}
			if tc.method == "OPTIONS" && tc.status == 204 {
				if got := resp.Header.Get("Access-Control-Allow-Methods"); got != "GET, POST, DELETE, OPTIONS" {
					t.Errorf("Allow-Methods %q", got)
				}
				for _, h := range []string{"Authorization", "Content-Type", "MCP-Protocol-Version", "Mcp-Session-Id", "Last-Event-ID"} {
					if !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), h) {
						t.Errorf("Allow-Headers lacks %s", h)
					}
				}
			}
			if tc.status == 405 && resp.Header.Get("Allow") != "GET, POST, DELETE, OPTIONS" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
		})
	}

	// What the upstream saw: the decision's credential and nothing the
	// client presented to the gateway.
	injected := map[string]bool{"Bearer upstream-alice": true, "Bearer up-token": true}
	for _, r := range up.requests() {
		for k, vs := range r.header {
			lk := strings.ToLower(k)
			switch {
			case lk == "x-mcpgate-api-key", lk == "x-litellm-api-key", lk == "cookie", strings.HasPrefix(lk, "x-mcp-") && strings.HasSuffix(lk, "-authorization"):
				t.Errorf("upstream saw admission header %s", k)
			case lk == "authorization" && !injected[vs[0]]:
				t.Errorf("upstream saw Authorization %q", vs[0])
			}
			for _, v := range vs {
				if strings.Contains(v, "mcpg_") || strings.Contains(v, "tok_alice") || strings.Contains(v, "query-token") {
					t.Errorf("upstream saw admission credential in %s", k)
				}
			}
		}
	}
	// The reported upstream 401 marked the grant unusable.
	cp.mu.Lock()
	reports := cp.reports
	cp.mu.Unlock()
	if len(reports) != 1 || reports[0].GetRoute() != "Revoked" || reports[0].GetPrincipal() != "alice" {
		t.Errorf("reports %v", reports)
	}
	// The query token never reached the control plane.
	cp.mu.Lock()
	for _, r := range cp.requests {
		if strings.Contains(r.String(), "query-token") {
			t.Errorf("query token sent to the control plane")
		}
		if r.GetPublicBaseUrl() != g.srv.URL {
			t.Errorf("public base URL %q", r.GetPublicBaseUrl())
		}
	}
	cp.mu.Unlock()
}

// TestInjectedHeaders checks per upstream auth mode exactly what the
// upstream received.
func TestInjectedHeaders(t *testing.T) {
	cp, up := world(t)
	g := newGateway(t, cp, nil)
	cases := []struct {
		path   string
		header map[string]string
		name   string
		value  string
	}{
		{path: "/Drive/mcp", header: map[string]string{"Authorization": "Bearer tok_alice"}, name: "Authorization", value: "Bearer upstream-alice"},
		{path: "/Static/mcp", header: map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "X-API-Key": "client-forged"}, name: "X-Api-Key", value: "upstream-static-secret"},
		{path: "/Pass/mcp", header: map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "X-MCP-Pass-Authorization": "Bearer up-token"}, name: "Authorization", value: "Bearer up-token"},
		{path: "/Echo/mcp", header: map[string]string{"Authorization": "Bearer mcpg_alice"}, name: "Authorization", value: ""},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			h := with(tc.header)
			h["MCP-Protocol-Version"] = "2025-06-18"
			h["X-Custom"] = "not allowlisted"
			before := len(up.requests())
			resp, body := g.do(t, "POST", tc.path, h, initBody)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d %s", resp.StatusCode, body)
			}
			reqs := up.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("upstream saw %d requests", len(reqs))
			}
			got := reqs[0].header
			if v := got.Values(tc.name); tc.value == "" && len(v) != 0 || tc.value != "" && (len(v) != 1 || v[0] != tc.value) {
				t.Errorf("%s = %q, want %q", tc.name, v, tc.value)
			}
			if got.Get("Mcp-Protocol-Version") != "2025-06-18" || got.Get("X-Custom") != "" || got.Get("Accept") != "application/json, text/event-stream" {
				t.Errorf("end-to-end headers not passed: %v", got)
			}
		})
	}
}

// echoID is want with the id of reqBody in place of null, when reqBody is a
// single request whose id is a number or a string.
func echoID(want, reqBody string) string {
	var m struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
	}
	if json.Unmarshal([]byte(reqBody), &m) != nil || m.Method == "" || len(m.ID) == 0 || string(m.ID) == "null" || m.ID[0] == '{' || m.ID[0] == '[' {
		return want
	}
	return strings.Replace(want, `"id":null`, `"id":`+string(m.ID), 1)
}
