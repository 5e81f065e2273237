package dataplane_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/dataplane"
)

// TestWireRouteGrammar: the data plane routes exactly the server names the
// admin API accepts (api/wire): a name with a dot or longer than 64
// characters, which no server can have, is an unknown path (404, fixed
// body) without asking the control plane, on the MCP route and on its
// metadata alike. Before issue 12 the data plane accepted both.
func TestWireRouteGrammar(t *testing.T) {
	cp, _ := world(t)
	g := newGateway(t, cp, nil)
	long := strings.Repeat("a", 65)
	for _, path := range []string{
		"/a.b/mcp", "/" + long + "/mcp", "/Echo.x/mcp", "/-Echo/mcp",
		"/.well-known/oauth-protected-resource/a.b/mcp",
		"/.well-known/oauth-protected-resource/" + long + "/mcp",
	} {
		cp.mu.Lock()
		before := len(cp.requests)
		cp.mu.Unlock()
		resp, body := g.do(t, "POST", path, with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), initBody)
		if resp.StatusCode != http.StatusNotFound || body != bodyNotFound {
			t.Errorf("POST %s: %d %s, want 404 %s", path, resp.StatusCode, body, bodyNotFound)
		}
		if got := resp.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("POST %s: Cache-Control %q, want no-store", path, got)
		}
		cp.mu.Lock()
		after := len(cp.requests)
		cp.mu.Unlock()
		if after != before {
			t.Errorf("POST %s asked the control plane", path)
		}
	}
	// The longest valid name is routed: the control plane decides.
	max := strings.Repeat("a", 64)
	resp, body := g.do(t, "POST", "/"+max+"/mcp", with(map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}), initBody)
	if resp.StatusCode != http.StatusNotFound || body != echoID(rpcUnknownServer, initBody) {
		t.Errorf("64-character name: %d %s, want 404 %s", resp.StatusCode, body, rpcUnknownServer)
	}
	resp, _ = g.do(t, "GET", "/.well-known/oauth-protected-resource/"+max+"/mcp", nil, "")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("metadata of a 64-character name: %d, want 200", resp.StatusCode)
	}
}

// TestWirePublicBase: the data plane normalises its public URL by the one
// rule (api/wire.PublicBase): scheme and host lower-cased and the default
// port dropped, everywhere it sends or shows it — the metadata document,
// the challenge, AuthorizeRequest.public_base_url and the relay's
// X-MCPGate-Public-URL — so it names the same resource URL the control
// plane issues tokens for. Before issue 12 the data plane kept ":443".
func TestWirePublicBase(t *testing.T) {
	cp, _ := world(t)
	g := newGateway(t, cp, func(c *dataplane.Config) { c.PublicURL = "HTTPS://GW.Example.COM:443/" })
	const base = "https://gw.example.com"
	host := map[string]string{"Host": "GW.example.com:443"}

	resp, body := g.do(t, "GET", "/.well-known/oauth-protected-resource/Echo/mcp", host, "")
	var doc struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &doc) != nil {
		t.Fatalf("metadata: %d %s", resp.StatusCode, body)
	}
	if doc.Resource != base+"/Echo/mcp" || len(doc.AuthorizationServers) != 1 || doc.AuthorizationServers[0] != base {
		t.Errorf("metadata %s: want resource %s/Echo/mcp and authorization server %s", body, base, base)
	}

	h := with(nil)
	h["Host"] = "gw.example.com"
	resp, _ = g.do(t, "POST", "/Gmail/mcp", h, initBody)
	want := `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/Gmail/mcp", scope="gmail.read gmail.send"`
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
		t.Errorf("challenge: %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
	}
	cp.mu.Lock()
	if n := len(cp.requests); n == 0 || cp.requests[n-1].GetPublicBaseUrl() != base {
		t.Errorf("Authorize saw public base %v, want %s", cp.requests, base)
	}
	cp.mu.Unlock()

	g.do(t, "POST", "/token", host, "grant_type=x")
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if n := len(cp.relayed); n == 0 || cp.relayed[n-1].Header.Get("X-MCPGate-Public-URL") != base {
		t.Errorf("relay did not send X-MCPGate-Public-URL %s", base)
	}
}
