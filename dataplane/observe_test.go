package dataplane_test

import (
	"bufio"
	"encoding/json"
	"net/http/httptest"
	"strconv"
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

// TestAuditRateLimited: the audit event of a call a rate limit refused
// names the limit (limit_id, the id the 429 names), like a deny names its
// rule; an id outside the limit grammar is never recorded, and an event
// of any other outcome has no limit_id.
func TestAuditRateLimited(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	var buf lockedBuffer
	g := newGateway(t, cp, func(c *dataplane.Config) { c.Audit = audit.New(&buf) })
	alice := map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	call := func(tool string) string {
		return `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	}
	for _, c := range []struct {
		tool   string
		status int
		body   string
	}{
		{"over_limit", 429, `{"jsonrpc":"2.0","id":3,"error":{"code":-32029,"message":"rate limit writes exceeded; retry in 30 s","data":{"limit_id":"writes","window":"minute","retry_after_seconds":30}}}`},
		{"over_limit_hostile", 429, `{"jsonrpc":"2.0","id":3,"error":{"code":-32029,"message":"rate limit exceeded; retry in 30 s","data":{"limit_id":"","window":"minute","retry_after_seconds":30}}}`},
		{"secret", 403, ""},
	} {
		resp, body := g.do(t, "POST", "/Echo/mcp", alice, call(c.tool))
		if resp.StatusCode != c.status || (c.body != "" && body != c.body) {
			t.Errorf("%s: %d %s", c.tool, resp.StatusCode, body)
		}
	}
	type event struct {
		Principal string  `json:"principal"`
		Tool      string  `json:"tool"`
		Decision  string  `json:"decision"`
		Reason    string  `json:"reason"`
		Limit     *string `json:"limit_id"`
		Status    int     `json:"status"`
	}
	var events []event
	deadline := time.Now().Add(10 * time.Second) // hang guard only
	for {
		events = events[:0]
		sc := bufio.NewScanner(strings.NewReader(buf.String()))
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("audit line %q: %v", sc.Text(), err)
			}
			events = append(events, e)
		}
		if len(events) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(events) != 3 {
		t.Fatalf("%d audit events for 3 requests:\n%s", len(events), buf.String())
	}
	limit := func(e event) string {
		if e.Limit == nil {
			return "<absent>"
		}
		return *e.Limit
	}
	want := map[string]string{
		"over_limit":         "alice rate_limited rate limit exceeded 429 writes",
		"over_limit_hostile": "alice rate_limited rate limit exceeded 429 <absent>",
		"secret":             "alice deny tool not allowed on this server 403 <absent>",
	}
	for _, e := range events {
		got := e.Principal + " " + e.Decision + " " + e.Reason + " " + strconv.Itoa(e.Status) + " " + limit(e)
		if got != want[e.Tool] {
			t.Errorf("%s: %s, want %s", e.Tool, got, want[e.Tool])
		}
		delete(want, e.Tool)
	}
	if len(want) != 0 {
		t.Errorf("no event for %v:\n%s", want, buf.String())
	}
}

// TestAuditAggregateMemberRefused: a tools/call through the aggregate that
// the owning member refuses is answered inside the session (a tool error
// for a rate limit, -32602 for a deny), and its audit event carries the
// member's decision and reason and the limit id, not the aggregate's
// allow.
func TestAuditAggregateMemberRefused(t *testing.T) {
	cp := newFakeCP(t)
	up := newUpstream(t, true)
	cp.setRoute("echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
	var buf lockedBuffer
	g := newGateway(t, cp, func(c *dataplane.Config) { c.Audit = audit.New(&buf) })
	h := map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	resp, body := g.do(t, "POST", "/mcp", h, initBody)
	if resp.StatusCode != 200 || resp.Header.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: %d %s", resp.StatusCode, body)
	}
	h["Mcp-Session-Id"] = resp.Header.Get("Mcp-Session-Id")
	for _, c := range []struct{ tool, want string }{
		{"echo__over_limit", `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"rate limit writes exceeded; retry in 30 s"}],"isError":true}}`},
		{"echo__secret", `{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"Not allowed"}}`},
	} {
		resp, body := g.do(t, "POST", "/mcp", h, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"`+c.tool+`","arguments":{}}}`)
		if resp.StatusCode != 200 || body != c.want {
			t.Errorf("%s: %d %s, want %s", c.tool, resp.StatusCode, body, c.want)
		}
	}
	want := map[string]string{
		"initialize":                  "allow  200 <absent>",
		"tools/call echo__over_limit": "rate_limited rate limit exceeded 200 writes",
		"tools/call echo__secret":     "deny tool not allowed on this server 200 <absent>",
	}
	var lines []string
	deadline := time.Now().Add(10 * time.Second) // hang guard only
	for {
		lines = strings.FieldsFunc(buf.String(), func(r rune) bool { return r == '\n' })
		if len(lines) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(lines) != len(want) {
		t.Fatalf("%d audit events for %d requests:\n%s", len(lines), len(want), buf.String())
	}
	for _, line := range lines {
		var e struct {
			Method, Tool, Decision, Reason, Route string
			Limit                                 *string `json:"limit_id"`
			Status                                int
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		what := strings.TrimSpace(e.Method + " " + e.Tool)
		limit := "<absent>"
		if e.Limit != nil {
			limit = *e.Limit
		}
		if got := e.Decision + " " + e.Reason + " " + strconv.Itoa(e.Status) + " " + limit; got != want[what] {
			t.Errorf("%s: %s, want %s", what, got, want[what])
		}
	}
}
