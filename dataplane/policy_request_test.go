package dataplane_test

import (
	"net/http"
	"testing"
)

// TestAuthorizeCarriesResourceAndPrompt: the data plane asks the control
// plane about resources/read with the URI (field 8) and prompts/get with
// the prompt name (field 9), once per distinct call of a batch, exactly as
// it asks about tools/call with the tool name; a call without them is
// refused (400) before anything is forwarded.
func TestAuthorizeCarriesResourceAndPrompt(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	g := newGateway(t, cp, nil)
	h := map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	g.do(t, http.MethodPost, "/Echo/mcp", h, `[{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a\u002fb"}},`+
		`{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"greet"}},`+
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}]`)
	cp.mu.Lock()
	type seen struct{ method, tool, uri, prompt string }
	var got []seen
	for _, r := range cp.requests {
		got = append(got, seen{r.GetJsonrpcMethod(), r.GetToolName(), r.GetResourceUri(), r.GetPromptName()})
	}
	cp.requests = nil
	cp.mu.Unlock()
	want := []seen{{"resources/read", "", "file:///a/b", ""}, {"prompts/get", "", "", "greet"}, {"tools/call", "echo", "", ""}}
	if len(got) != len(want) {
		t.Fatalf("authorize requests %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	before := len(up.requests())
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{}}`,
		`{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":7}}`,
	} {
		resp, b := g.do(t, http.MethodPost, "/Echo/mcp", h, body)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %s", body, resp.StatusCode, b)
		}
	}
	if n := len(up.requests()); n != before {
		t.Errorf("the upstream saw %d refused calls", n-before)
	}
}
