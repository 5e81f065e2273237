package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/stacktest"
	"github.com/mcpgate/mcpgate/internal/testenv"
)

// nodeTimeout is a hang guard for one node run, never a timing assertion.
const nodeTimeout = 2 * time.Minute

// node returns the node binary. Without node or the npm dependencies the
// test is skipped under `go test ./...` and fails under `bash .ci/test`
// (testenv.Missing).
func node(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, "Node.js (node)", err)
	}
	if _, err := os.Stat(filepath.Join("node_modules", "@modelcontextprotocol", "sdk", "package.json")); err != nil {
		testenv.Missing(t, "interop/node_modules/@modelcontextprotocol/sdk (npm ci in interop/)", err)
	}
	return bin
}

// runScript runs a script with env and decodes its one JSON output line.
func runScript(t *testing.T, script string, env map[string]string, out any) {
	t.Helper()
	if stderr, err := runScriptErr(t, script, env, out); err != nil {
		t.Fatalf("node %s failed: %v; output %+v; stderr %s", script, err, out, stderr)
	}
}

// runScriptErr runs a script with env, decodes its one JSON output line
// (failing the test when there is none) and returns the script's stderr
// and exit error: for scripts expected to fail.
func runScriptErr(t *testing.T, script string, env map[string]string, out any) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), nodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node(t), script)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if jerr := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), out); jerr != nil {
		t.Fatalf("node %s: %v; output %q; stderr %s; decode: %v", script, err, stdout.String(), stderr.String(), jerr)
	}
	return stderr.String(), err
}

type clientOutput struct {
	OK         bool   `json:"ok"`
	Error      string `json:"error"`
	ServerName string `json:"serverName"`
	SessionID  string `json:"sessionId"`
	Tools      []string
	Events     []struct {
		Kind     string  `json:"kind"`
		Progress float64 `json:"progress"`
		IsError  bool    `json:"isError"`
	} `json:"events"`
	ResultText string `json:"resultText"`
	Denied     *struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
		Code  int    `json:"code"`
	} `json:"denied"`
	Terminated bool `json:"terminated"`
}

// TestTypeScriptSDK_APIKey: the TypeScript SDK client through the gateway
// with an API key: initialize, filtered tools/list, a tools/call whose
// result exists only after the client has received its progress
// notification (its progress handler releases the tool), DELETE, and no
// admission credential reaching the upstream.
func TestTypeScriptSDK_APIKey(t *testing.T) {
	node(t) // skip (or fail) before starting a gateway
	s := stacktest.Start(t)
	key := s.AddUser("ts", stacktest.GateRoute)
	var out clientOutput
	runScript(t, "client.mjs", map[string]string{
		"MCPGATE_URL":              s.RouteURL(stacktest.GateRoute),
		"MCPGATE_KEY":              key,
		"MCPGATE_TOOL":             "gated",
		"MCPGATE_TOOL_ARGS":        `{"key":"ts1"}`,
		"MCPGATE_ON_PROGRESS_TOOL": "release",
		"MCPGATE_ON_PROGRESS_ARGS": `{"key":"ts1"}`,
		"MCPGATE_DENIED_TOOL":      "secret",
	}, &out)
	if !out.OK {
		t.Fatalf("client failed: %s", out.Error)
	}
	if out.ServerName != "stacktest-upstream" || out.SessionID == "" {
		t.Errorf("server %q, session %q", out.ServerName, out.SessionID)
	}
	if want := []string{"echo", "gated", "release"}; !slices.Equal(out.Tools, want) {
		t.Errorf("tools %v, want %v", out.Tools, want)
	}
	if out.Denied == nil || out.Denied.OK || out.Denied.Code != http.StatusForbidden || !strings.Contains(out.Denied.Error, `"code":-32003`) {
		t.Errorf("tools/call secret: %+v, want the gateway's 403", out.Denied)
	}
	var kinds []string
	for _, e := range out.Events {
		kinds = append(kinds, e.Kind)
	}
	if want := []string{"progress", "result"}; !slices.Equal(kinds, want) || out.Events[1].IsError {
		t.Errorf("events %+v, want progress then a successful result", out.Events)
	}
	if out.ResultText != "released ts1" || !out.Terminated {
		t.Errorf("result %q, terminated %v", out.ResultText, out.Terminated)
	}
	var deletes int
	for _, r := range s.Upstream.Recorder.Requests() {
		if r.Method == http.MethodDelete {
			deletes++
		}
		if r.Tool == "secret" {
			t.Error("the upstream saw tools/call secret")
		}
		if bad := stacktest.AdmissionHeaders(r.Header, key, s.DataPlaneToken); len(bad) > 0 {
			t.Errorf("%s %s reached the upstream with %q", r.Method, r.RPCMethod, bad)
		}
	}
	if deletes != 1 {
		t.Errorf("upstream saw %d DELETEs, want 1 (terminateSession)", deletes)
	}
}
