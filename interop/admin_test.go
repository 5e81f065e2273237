package interop

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/stacktest"
	"github.com/mcpgate/mcpgate/internal/testenv"
)

type adminOutput struct {
	OK        bool     `json:"ok"`
	Error     string   `json:"error"`
	Code      string   `json:"code"`
	Servers   []string `json:"servers"`
	Principal struct {
		Name     string   `json:"name"`
		UID      string   `json:"uid"`
		Servers  []string `json:"servers"`
		Revision string   `json:"revision"`
	} `json:"principal"`
	Key struct {
		ID        string `json:"id"`
		Principal string `json:"principal"`
		Prefix    string `json:"prefix"`
		Created   string `json:"created"`
		Value     string `json:"value"`
	} `json:"key"`
	Revoked struct {
		ID      string `json:"id"`
		Value   string `json:"value"`
		Revoked bool   `json:"revoked"`
	} `json:"revoked"`
	Listed []struct {
		ID      string `json:"id"`
		Revoked bool   `json:"revoked"`
	} `json:"listed"`
}

// compileAdmin type-checks and compiles admin/ (admin.ts and the
// buf-generated client in admin/gen) with the pinned TypeScript compiler
// into admin/dist, where node resolves interop/node_modules.
func compileAdmin(t *testing.T) string {
	t.Helper()
	bin := node(t)
	for _, pkg := range []string{"typescript", "@connectrpc/connect-node", "@bufbuild/protobuf"} {
		if _, err := os.Stat(filepath.Join("node_modules", pkg, "package.json")); err != nil {
			testenv.Missing(t, "interop/node_modules/"+pkg+" (npm ci in interop/)", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), nodeTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, filepath.Join("node_modules", "typescript", "bin", "tsc"), "-p", filepath.Join("admin", "tsconfig.json")).CombinedOutput()
	if err != nil {
		t.Fatalf("tsc -p admin/tsconfig.json: %v\n%s", err, out)
	}
	return filepath.Join("admin", "dist", "admin.js")
}

// TestTypeScriptAdminClient: the buf-generated TypeScript admin client
// (@bufbuild/protoc-gen-es + @connectrpc/connect-node) against a running
// gateway lists its servers, creates a principal and two keys and revokes
// one; the kept key then works on the data plane and the revoked one is
// refused with the gateway's 401.
func TestTypeScriptAdminClient(t *testing.T) {
	script := compileAdmin(t)
	s := stacktest.Start(t)
	var out adminOutput
	runScript(t, script, map[string]string{
		"MCPGATE_CONTROL_PLANE": s.ControlURL,
		"MCPGATE_ADMIN_KEY":     s.AdminKey,
		"MCPGATE_PRINCIPAL":     "ts-bot",
		"MCPGATE_SERVERS":       stacktest.GateRoute + "," + stacktest.EchoRoute,
	}, &out)
	if !out.OK {
		t.Fatalf("admin client failed: %s %s", out.Code, out.Error)
	}
	if want := []string{stacktest.EchoRoute, stacktest.GateRoute, stacktest.NotesRoute}; !slices.Equal(out.Servers, want) {
		t.Errorf("servers %v, want %v", out.Servers, want)
	}
	if p := out.Principal; p.Name != "ts-bot" || p.UID == "" || p.Revision == "0" ||
		!slices.Equal(p.Servers, []string{stacktest.GateRoute, stacktest.EchoRoute}) {
		t.Errorf("principal %+v", p)
	}
	k := out.Key
	if k.Principal != "ts-bot" || k.ID == "" || !strings.HasPrefix(k.Value, "mcpg_") || !strings.HasPrefix(k.Value, k.Prefix) || k.Created == "" {
		t.Errorf("created key %+v", k)
	}
	if !out.Revoked.Revoked || out.Revoked.ID == k.ID || out.Revoked.Value == k.Value {
		t.Errorf("revoked key %+v", out.Revoked)
	}
	listed := map[string]bool{}
	for _, l := range out.Listed {
		listed[l.ID] = l.Revoked
	}
	if len(listed) != 2 || listed[k.ID] || !listed[out.Revoked.ID] {
		t.Errorf("listed keys %+v, want %s active and %s revoked", out.Listed, k.ID, out.Revoked.ID)
	}

	// The created key works on the data plane: the gate route's tools,
	// "secret" filtered out.
	ctx := t.Context()
	hc := &http.Client{Transport: keyTransport{key: k.Value}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "ts-admin-check", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.RouteURL(stacktest.GateRoute), HTTPClient: hc}, nil)
	if err != nil {
		t.Fatalf("connect with the created key: %v", err)
	}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list with the created key: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if want := []string{"echo", "gated", "release"}; !slices.Equal(names, want) {
		t.Errorf("tools %v, want %v", names, want)
	}
	_ = cs.Close()

	// The revoked key is refused.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.RouteURL(stacktest.GateRoute),
		strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-MCPGate-API-Key", out.Revoked.Value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	want := `Bearer resource_metadata="` + s.PRMURL(stacktest.GateRoute) + `", ` +
		`error="invalid_token", error_description="The credential is unknown revoked or expired."`
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
		t.Errorf("revoked key: %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
	}
}

type keyTransport struct{ key string }

func (k keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-MCPGate-API-Key", k.key)
	return http.DefaultTransport.RoundTrip(r)
}
