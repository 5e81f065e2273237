package main_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestCLILimits: rate limits through `mcpgate dev`: apply's rate_limits:,
// limits set|list|get|delete with the control plane's fixed validation
// texts, a per-day quota on the demo route's echo tool refusing the 4th
// call with 429, Retry-After and the JSON-RPC error naming the limit, and
// `limits status --principal P` printing each applicable limit's usage.
func TestCLILimits(t *testing.T) {
	// The quota is per UTC day: do not start within two minutes of the
	// day's end (a precondition, not an assertion on time).
	if left := time.Until(time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)); left < 2*time.Minute {
		time.Sleep(left + time.Second)
	}
	dir := t.TempDir()
	g := startDev(t, dir, freeAddr(t))
	demoKey := regexp.MustCompile(`key (mcpg_[A-Za-z0-9]+)`).FindStringSubmatch(g.banner)
	route := regexp.MustCompile(`http://127\.0\.0\.1:\d+/echo/mcp`).FindString(g.banner)
	if demoKey == nil || route == "" {
		t.Fatalf("no demo key or route in banner:\n%s", g.banner)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"limits", "set", "bad", "--per-minute", "-1"}, "per_minute: must not be negative"},
		{[]string{"limits", "set", "bad"}, "per_second, per_minute, per_day: at least one must be set"},
		{[]string{"limits", "set", "bad/id", "--per-day", "1"}, "id: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{[]string{"limits", "set", "bad", "--per-day", "1", "--servers", "a b"}, `servers[0]: must be a server name or "*"`},
		{[]string{"limits", "set", "bad", "--per-day", "1", "--tools", "x\ty"}, "tools[0]: must be a glob of 1 to 128 printable ASCII characters"},
		{[]string{"limits", "status"}, "mcpgate limits list"},
		{[]string{"limits", "status", "--principal", "nobody"}, `mcpgate: principal "nobody": principal not found`},
	} {
		r := g.cli(t, dir, nil, c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q, want %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}

	cfg := filepath.Join(dir, "limits.yaml")
	writeFile(t, cfg, `principals:
  - name: bob
    servers: [echo]
rate_limits:
  - id: echo-calls
    principals: [demo]
    servers: [echo]
    tools: ["ech*"]
    per_day: 3
    description: three echoes a day
  - id: bob-minute
    principals: [bob]
    per_minute: 100
`)
	out := g.ok(t, dir, nil, "apply", "-f", cfg)
	if !strings.Contains(out, "rate_limit echo-calls: created") || !strings.Contains(out, "rate_limit bob-minute: created") {
		t.Fatalf("apply:\n%s", out)
	}
	if out := g.ok(t, dir, nil, "apply", "-f", cfg); !strings.Contains(out, "rate_limit echo-calls: unchanged") {
		t.Fatalf("apply again:\n%s", out)
	}
	if out := g.ok(t, dir, nil, "limits", "set", "bursts", "--groups", "release", "--tools", "create_*,merge_*", "--per-second", "5"); out != "rate limit bursts created\n" {
		t.Fatalf("limits set: %q", out)
	}
	if out := g.ok(t, dir, nil, "limits", "set", "bursts", "--groups", "release", "--per-second", "6"); out != "rate limit bursts changed\n" {
		t.Fatalf("limits set again: %q", out)
	}
	out = g.ok(t, dir, nil, "limits", "list")
	if !regexp.MustCompile(`(?m)\AID\s+PRINCIPALS\s+GROUPS\s+SERVERS\s+TOOLS\s+PER_SECOND\s+PER_MINUTE\s+PER_DAY\n` +
		`bob-minute\s+bob\s+-\s+-\s+-\s+-\s+100\s+-\n` +
		`bursts\s+-\s+release\s+-\s+-\s+6\s+-\s+-\n` +
		`echo-calls\s+demo\s+-\s+echo\s+ech\*\s+-\s+-\s+3\n\z`).MatchString(out) {
		t.Fatalf("limits list:\n%s", out)
	}
	out = g.ok(t, dir, nil, "limits", "get", "echo-calls")
	for _, re := range []string{`(?m)^ID\s+echo-calls$`, `(?m)^tools\s+ech\*$`, `(?m)^per_day\s+3$`, `(?m)^description\s+three echoes a day$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("limits get lacks %s:\n%s", re, out)
		}
	}
	out = g.ok(t, dir, nil, "limits", "status", "--principal", "demo")
	if !regexp.MustCompile(`\ALIMIT\s+SERVER\s+WINDOW\s+MAX\s+USED\s+REMAINING\s+RESETS_IN\necho-calls\s+echo\s+day\s+3\s+0\s+3\s+\d+s\n\z`).MatchString(out) {
		t.Fatalf("status before calls:\n%s", out)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "limits-test", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: route, HTTPClient: &http.Client{Transport: headerTransport{key: demoKey[1]}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	// tools/list and other methods are not counted by a tool limit.
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
		if err != nil || res.IsError {
			t.Fatalf("echo %d: %v %+v", i, err, res)
		}
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}}); err == nil {
		t.Fatal("4th echo admitted")
	}
	// The same refusal seen on the wire.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, route, strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-MCPGate-API-Key", demoKey[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`\A\{"jsonrpc":"2\.0","id":9,"error":\{"code":-32029,"message":"rate limit echo-calls exceeded; retry in (\d+) s","data":\{"limit_id":"echo-calls","window":"day","retry_after_seconds":(\d+)\}\}\}\z`).FindSubmatch(body)
	if resp.StatusCode != http.StatusTooManyRequests || m == nil || string(m[1]) != string(m[2]) || resp.Header.Get("Retry-After") != string(m[1]) {
		t.Fatalf("refused call: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if strings.Contains(string(body), demoKey[1]) {
		t.Fatal("the refusal echoes the key")
	}

	out = g.ok(t, dir, nil, "limits", "status", "--principal", "demo")
	if !regexp.MustCompile(`\ALIMIT\s+SERVER\s+WINDOW\s+MAX\s+USED\s+REMAINING\s+RESETS_IN\necho-calls\s+echo\s+day\s+3\s+3\s+0\s+\d+s\n\z`).MatchString(out) {
		t.Fatalf("status after calls:\n%s", out)
	}
	out = g.ok(t, dir, nil, "limits", "status", "--principal", "demo", "-o", "json")
	for _, want := range []string{`"limit_id": "echo-calls"`, `"window": "day"`, `"used": "3"`, `"limit": "3"`} {
		if !strings.Contains(out, want) {
			t.Errorf("status -o json lacks %s:\n%s", want, out)
		}
	}
	out = g.ok(t, dir, nil, "limits", "status", "--principal", "bob")
	if !regexp.MustCompile(`\ALIMIT\s+SERVER\s+WINDOW\s+MAX\s+USED\s+REMAINING\s+RESETS_IN\nbob-minute\s+\*\s+minute\s+100\s+0\s+100\s+\d+s\n\z`).MatchString(out) {
		t.Fatalf("status of bob:\n%s", out)
	}
	g.ok(t, dir, nil, "principals", "create", "carol", "--servers", "echo")
	if out := g.ok(t, dir, nil, "limits", "status", "--principal", "carol"); out != "no rate limit applies to principal carol\n" {
		t.Fatalf("status of carol: %q", out)
	}

	if out := g.ok(t, dir, nil, "limits", "delete", "echo-calls"); out != "rate limit echo-calls deleted\n" {
		t.Fatalf("limits delete: %q", out)
	}
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}}); err != nil || res.IsError {
		t.Fatalf("echo after delete: %v %+v", err, res)
	}
}
