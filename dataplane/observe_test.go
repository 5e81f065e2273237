package dataplane_test

import (
	"bufio"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/ops/audit"
	"github.com/mcpgate/mcpgate/ops/metrics"
)

// TestAuditAndMetrics: one audit event per MCP request, whatever its
// outcome, with bounded metric labels.
func TestAuditAndMetrics(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	var buf lockedBuffer
	m := metrics.NewDataPlane()
	g := newGateway(t, cp, func(c *dataplane.Config) { c.Metrics = m; c.Audit = audit.New(&buf) })

	alice := map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	with := func(k, v string) map[string]string {
		h := map[string]string{k: v}
		for a, b := range alice {
			h[a] = b
		}
		return h
	}
	cases := []struct {
		name, path string
		header     map[string]string
		status     int
		decision   string
	}{
		{"allowed", "/Echo/mcp", alice, 200, "allow"},
		{"no_credential", "/Echo/mcp", map[string]string{"Content-Type": "application/json"}, 401, "challenge"},
		{"unknown_route", "/Nope/mcp", alice, 404, "not_found"},
		{"bad_origin", "/Echo/mcp", with("Origin", "https://evil.example"), 403, "rejected"},
	}
	for _, c := range cases {
		resp, _ := g.do(t, "POST", c.path, c.header, initBody)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.status)
		}
	}
	g.do(t, "OPTIONS", "/Echo/mcp", map[string]string{"Origin": "http://localhost:6274"}, "") // a preflight is not an MCP request

	var lines []map[string]any
	deadline := time.Now().Add(10 * time.Second) // hang guard only
	for {
		lines = lines[:0]
		sc := bufio.NewScanner(strings.NewReader(buf.String()))
		for sc.Scan() {
			var l map[string]any
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("audit line %q: %v", sc.Text(), err)
			}
			lines = append(lines, l)
		}
		if len(lines) >= len(cases) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(lines) != len(cases) {
		t.Fatalf("%d audit events for %d MCP requests:\n%s", len(lines), len(cases), buf.String())
	}
	byStatus := map[float64]map[string]any{}
	for _, l := range lines {
		byStatus[l["status"].(float64)] = l
	}
	for _, c := range cases {
		l := byStatus[float64(c.status)]
		if l == nil || l["decision"] != c.decision || l["kind"] != "mcp_request" {
			t.Errorf("%s: event %v, want decision %s", c.name, l, c.decision)
		}
	}
	if l := byStatus[200]; l["principal"] != "alice" || l["key_id_prefix"] != fakeKeyID("mcpg_alice")[:8] || l["upstream_status"] != 200.0 || l["method"] != "initialize" {
		t.Errorf("allowed event: %v", l)
	}
	if strings.Contains(buf.String(), "mcpg_alice") {
		t.Error("the audit log holds the API key")
	}

	rec := httptest.NewRecorder()
	metrics.Handler(m.Registry).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`mcpgate_dataplane_requests_total{decision="allow",method="initialize",route="Echo",status="200"} 1`,
		`mcpgate_dataplane_requests_total{decision="not_found",method="initialize",route="unknown",status="404"} 1`,
		`mcpgate_dataplane_requests_total{decision="rejected",method="none",route="unknown",status="403"} 1`,
		`mcpgate_dataplane_upstream_duration_seconds_count{route="Echo",status="200"} 1`,
		`mcpgate_dataplane_authorize_duration_seconds_count{decision="challenge"} 1`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(rec.Body.String(), `"Nope"`) {
		t.Error("an unknown route became a metric label")
	}
}
