package clustertest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// auditLines reads the JSON lines of an audit log.
func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// waitAudit polls until match accepts a line of path's audit log.
func waitAudit(ctx context.Context, t *testing.T, path string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	for {
		for _, l := range auditLines(t, path) {
			if match(l) {
				return l
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no matching audit line in %s", path)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func scrape(ctx context.Context, t *testing.T, n *Node) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.MetricsURL+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestObservability checks the audit trail (exactly one event per MCP
// request, one per admin write, no secret), the metrics of both planes and
// their health endpoints on a running topology.
func TestObservability(t *testing.T) {
	f := setup(t)
	p := f.c.Proxies[0]

	session, err := Connect(f.ctx, p.URL, "echo", f.key)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if err := session.Echo(f.ctx, "audited"); err != nil {
		t.Fatal(err)
	}

	// Strictly sequential requests on one keep-alive connection: each
	// event is written before the next request is read.
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	send := func(path string, hdr map[string]string, body string) int {
		req, _ := http.NewRequestWithContext(f.ctx, http.MethodPost, p.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	key := map[string]string{"X-MCPGate-API-Key": f.key}
	cases := []struct {
		name, path string
		hdr        map[string]string
		status     int
		route      string
		decision   string
	}{
		{"allowed", "/echo/mcp", key, 200, "echo", "allow"},
		{"no_credential", "/echo/mcp", nil, 401, "echo", "challenge"},
		{"unknown_key", "/echo/mcp", map[string]string{"X-MCPGate-API-Key": "mcpg_unknownunknownunknownunknown00"}, 401, "echo", "challenge"},
		{"unknown_route", "/nope/mcp", key, 404, "nope", "not_found"},
		{"bad_origin", "/echo/mcp", map[string]string{"X-MCPGate-API-Key": f.key, "Origin": "https://evil.example"}, 403, "echo", "rejected"},
	}
	before := len(auditLines(t, p.AuditLog))
	for _, c := range cases {
		if got := send(c.path, c.hdr, InitializeBody); got != c.status {
			t.Errorf("%s: status %d, want %d", c.name, got, c.status)
		}
	}
	if got := send("/sentinel/mcp", key, InitializeBody); got != 404 {
		t.Fatalf("sentinel: %d", got)
	}
	waitAudit(f.ctx, t, p.AuditLog, func(l map[string]any) bool { return l["route"] == "sentinel" })
	// The SDK session above may still log its own requests in between (its
	// GET stream, notifications: never an initialize, which it sent before
	// `before`); every request here is an initialize or refused unread.
	var lines []map[string]any
	for _, l := range auditLines(t, p.AuditLog)[before:] {
		if l["method"] == "initialize" || l["decision"] == "rejected" {
			lines = append(lines, l)
		}
	}
	if len(lines) != len(cases)+1 {
		t.Fatalf("%d audit events for %d requests: %v", len(lines), len(cases)+1, lines)
	}
	for i, c := range cases {
		l := lines[i]
		wantMethod := "initialize"
		if c.decision == "rejected" {
			wantMethod = "" // refused before the body was read
		}
		if got, _ := l["method"].(string); l["kind"] != "mcp_request" || l["route"] != c.route || l["decision"] != c.decision || l["status"] != float64(c.status) || got != wantMethod {
			t.Errorf("%s: audit event %v", c.name, l)
		}
	}
	if l := lines[0]; l["principal"] != "alice" || len(l["key_id_prefix"].(string)) != 8 || l["upstream_status"] != float64(200) {
		t.Errorf("allowed request's event lacks principal, key id prefix or upstream status: %v", l)
	}
	call := waitAudit(f.ctx, t, p.AuditLog, func(l map[string]any) bool { return l["tool"] == "echo" })
	if call["method"] != "tools/call" || call["session_hash"] == nil || call["decision"] != "allow" {
		t.Errorf("tools/call event: %v", call)
	}
	raw, _ := os.ReadFile(p.AuditLog)
	for _, secret := range []string{f.key, f.c.AdminKey, f.c.DataPlaneToken, session.ID()} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("audit log contains a secret (%.8s…)", secret)
		}
	}

	// Admin writes on the control plane that served them.
	adminEv := waitAudit(f.ctx, t, f.c.Controls[0].AuditLog, func(l map[string]any) bool {
		return l["kind"] == "admin_write" && strings.HasSuffix(l["procedure"].(string), "/PutServer")
	})
	if adminEv["object"] != "echo" || adminEv["code"] != "ok" || adminEv["principal"] == nil {
		t.Errorf("admin event: %v", adminEv)
	}

	// Data-plane metrics: bounded labels only.
	m := scrape(f.ctx, t, p)
	for _, want := range []string{
		`mcpgate_dataplane_requests_total{decision="allow",method="initialize",route="echo",status="200"}`,
		`mcpgate_dataplane_requests_total{decision="not_found",method="initialize",route="unknown",status="404"}`,
		`mcpgate_dataplane_requests_total{decision="challenge",method="initialize",route="echo",status="401"}`,
		`mcpgate_dataplane_requests_total{decision="allow",method="tools/call",route="echo",status="200"}`,
		`mcpgate_dataplane_authorize_duration_seconds_count{decision="allow"}`,
		`mcpgate_dataplane_upstream_duration_seconds_count{route="echo",status="200"}`,
		`mcpgate_dataplane_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("data-plane metrics lack %s", want)
		}
	}
	for _, unbounded := range []string{`"nope"`, `"sentinel"`, f.key[:12]} {
		if strings.Contains(m, unbounded) {
			t.Errorf("data-plane metrics carry %s as a label", unbounded)
		}
	}
	cm := scrape(f.ctx, t, f.c.Controls[0]) + scrape(f.ctx, t, f.c.Controls[1])
	for _, want := range []string{
		"mcpgate_controlplane_cache_synced 1",
		"mcpgate_controlplane_cache_watch_healthy 1",
		"mcpgate_controlplane_cache_revision_lag",
		`mcpgate_controlplane_rpc_requests_total{code="ok",procedure="/mcpgate.authorize.v1.AuthorizeService/Authorize"}`,
		`mcpgate_controlplane_authorize_duration_seconds_count{decision="allow"}`,
		`mcpgate_vault_refreshes_total{outcome="success"}`,
	} {
		if !strings.Contains(cm, want) {
			t.Errorf("control-plane metrics lack %s", want)
		}
	}

	// Health on both listeners of both planes.
	for _, n := range append(append([]*Node{}, f.c.Controls...), f.c.Proxies...) {
		for _, u := range []string{n.MetricsURL, n.URL} {
			for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
				resp, err := http.Get(u + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("%s%s = %d, want %d", u, path, resp.StatusCode, want)
				}
			}
		}
	}
}
