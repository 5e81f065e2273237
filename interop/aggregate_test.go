package interop

import (
	"net/http"
	"slices"
	"testing"

	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// TestTypeScriptSDK_Aggregate: the TypeScript SDK client on the root
// aggregate /mcp: merged tools/list with exposed names, a routed
// tools/call whose result exists only after the client received its
// progress notification (the release call is routed to the same member's
// session), a member's refused tool answered as a JSON-RPC error without
// ending the session, and DELETE ending the members' sessions.
func TestTypeScriptSDK_Aggregate(t *testing.T) {
	node(t)
	s := stacktest.Start(t)
	key := s.AddUser("ts", stacktest.GateRoute, stacktest.EchoRoute)
	var out clientOutput
	runScript(t, "client.mjs", map[string]string{
		"MCPGATE_URL":              s.PublicURL + "/mcp",
		"MCPGATE_KEY":              key,
		"MCPGATE_TOOL":             "gate__gated",
		"MCPGATE_TOOL_ARGS":        `{"key":"tsagg"}`,
		"MCPGATE_ON_PROGRESS_TOOL": "gate__release",
		"MCPGATE_ON_PROGRESS_ARGS": `{"key":"tsagg"}`,
		"MCPGATE_DENIED_TOOL":      "gate__secret",
	}, &out)
	if !out.OK {
		t.Fatalf("client failed: %s", out.Error)
	}
	if out.ServerName != "mcpgate" || out.SessionID == "" {
		t.Errorf("server %q, session %q", out.ServerName, out.SessionID)
	}
	if want := []string{"echo__countdown", "echo__echo", "gate__echo", "gate__gated", "gate__release"}; !slices.Equal(out.Tools, want) {
		t.Errorf("tools %v, want %v", out.Tools, want)
	}
	if out.Denied == nil || out.Denied.OK || out.Denied.Code != -32602 {
		t.Errorf("tools/call gate__secret: %+v, want JSON-RPC -32602", out.Denied)
	}
	var kinds []string
	for _, e := range out.Events {
		kinds = append(kinds, e.Kind)
	}
	if want := []string{"progress", "result"}; !slices.Equal(kinds, want) || out.Events[1].IsError {
		t.Errorf("events %+v, want progress then a successful result", out.Events)
	}
	if out.ResultText != "released tsagg" || !out.Terminated {
		t.Errorf("result %q, terminated %v", out.ResultText, out.Terminated)
	}
	var deletes int
	for _, r := range s.Upstream.Recorder.Requests() {
		if r.Method == http.MethodDelete {
			deletes++
		}
		if bad := stacktest.AdmissionHeaders(r.Header, key, s.DataPlaneToken); len(bad) > 0 {
			t.Errorf("%s %s reached the upstream with %q", r.Method, r.RPCMethod, bad)
		}
	}
	if deletes != 1 {
		t.Errorf("gate saw %d DELETEs, want 1 (terminateSession)", deletes)
	}
}
