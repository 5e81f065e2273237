package main_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDevMetricsAndAuditLog: `mcpgate dev --metrics-listen --audit-log`
// prints where metrics are served, serves both planes' metrics there
// (with the audit drop counter), and writes one audit event per MCP
// request, all of them by the time it has stopped, with no key in it.
func TestDevMetricsAndAuditLog(t *testing.T) {
	dir := t.TempDir()
	auditPath := filepath.Join(dir, "audit.jsonl")
	g := startDev(t, dir, freeAddr(t), "--metrics-listen", "127.0.0.1:0", "--audit-log", auditPath)
	m := regexp.MustCompile(`(?m)^  metrics:\s+(http://127\.0\.0\.1:\d+/metrics)  \(both planes`).FindStringSubmatch(g.banner)
	if m == nil {
		t.Fatalf("banner does not say where metrics are served:\n%s", g.banner)
	}
	if !strings.Contains(g.banner, "  audit log:      "+auditPath+"\n") {
		t.Errorf("banner does not name the audit log:\n%s", g.banner)
	}
	demoKey := regexp.MustCompile(`key (mcpg_[A-Za-z0-9]+)`).FindStringSubmatch(g.banner)
	route := regexp.MustCompile(`http://127\.0\.0\.1:\d+/echo/mcp`).FindString(g.banner)
	if demoKey == nil || route == "" {
		t.Fatalf("no demo key or route in banner:\n%s", g.banner)
	}
	callCountdown(t, route, demoKey[1])

	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", m[1], resp.StatusCode)
	}
	for _, want := range []string{
		"\nmcpgate_audit_dropped_events_total 0\n",
		"\nmcpgate_dataplane_requests_total{decision=\"allow\",method=\"tools/call\",route=\"echo\",status=\"200\"} ",
		"\nmcpgate_controlplane_authorize_duration_seconds_count{decision=\"allow\"} ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}

	g.stop(t) // the audit log's queue is written by then
	b, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`"kind":"mcp_request"[^\n]*"route":"echo","method":"tools/call","tool":"countdown","decision":"allow"[^\n]*"status":200`).Match(b) {
		t.Errorf("audit log lacks the tools/call event:\n%s", b)
	}
	if strings.Contains(string(b), demoKey[1]) {
		t.Error("audit log holds the API key")
	}
}
