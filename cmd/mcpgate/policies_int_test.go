package main_test

import (
	"context"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const policiesYAML = `mcp_servers:
  gh:
    url: http://127.0.0.1:9/mcp
    disallowed_tools: [delete_repo]
principals:
  - name: alice
    servers: [gh]
  - name: carol
    servers: [gh]
    groups: [release]
policies:
  - id: release-merge
    description: only release merges
    groups: [release]
    servers: [gh]
    tools: [merge_*]
    effect: allow
  - id: no-admin
    principals: ["*"]
    servers: ["*"]
    tools: [admin_*]
    effect: deny
`

// TestCLIPoliciesExplain: policies apply|list|delete and explain against
// `mcpgate dev`, the exact output of explain for an allow, a principal not
// granted, a rule's deny, the server's disallowed_tools and a challenge
// (the demo notes route, whose OAuth grant the demo user has not made),
// and a per-day rate limit before and after a real call through the
// gateway used it up (decision rate_limited, the limit step with usage).
func TestCLIPoliciesExplain(t *testing.T) {
	dir := t.TempDir()
	g := startDev(t, dir, freeAddr(t))
	cfg := filepath.Join(dir, "policies.yaml")
	writeFile(t, cfg, policiesYAML)
	out := g.ok(t, dir, nil, "apply", "-f", cfg)
	if !strings.Contains(out, "policies 2 rules: created\n") {
		t.Fatalf("apply:\n%s", out)
	}
	out = g.ok(t, dir, nil, "apply", "-f", cfg)
	if !strings.Contains(out, "policies 2 rules: unchanged\n") {
		t.Fatalf("apply again:\n%s", out)
	}
	out = g.ok(t, dir, nil, "policies", "list")
	if want := "ID             EFFECT  PRINCIPALS  GROUPS   SERVERS  TOOLS    RESOURCES  PROMPTS\n" +
		"release-merge  allow   -           release  gh       merge_*  -          -\n" +
		"no-admin       deny    *           -        *        admin_*  -          -\n"; out != want {
		t.Fatalf("policies list:\n%s\nwant\n%s", out, want)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--principal", "demo", "--server", "gh", "--tool", "merge_pr"}, "decision: not_found\n" +
			"reason: principal not granted this server\n" +
			"steps:\n" +
			"  grant  gh  not granted\n"},
		// carol is in release (the demo IdP's group, granting echo and notes).
		{[]string{"--principal", "carol", "--server", "gh", "--tool", "merge_pr"}, "decision: allow\n" +
			"reason: allowed\n" +
			"steps:\n" +
			"  grant  gh             own servers\n" +
			"  rule   release-merge  allow tool merge_* (names carol)\n" +
			"  auth   none           no upstream credential\n" +
			"  limit  none           no rate limit applies\n"},
		{[]string{"--principal", "alice", "--server", "gh", "--tool", "search"}, "decision: allow\n" +
			"reason: allowed\n" +
			"steps:\n" +
			"  grant  gh    own servers\n" +
			"  rule   -     no rule targets tool search\n" +
			"  auth   none  no upstream credential\n" +
			"  limit  none  no rate limit applies\n"},
		{[]string{"--principal", "alice", "--server", "gh", "--tool", "merge_pr"}, "decision: deny\n" +
			"reason: not allowed by policy\n" +
			"rule: release-merge\n" +
			"steps:\n" +
			"  grant  gh             own servers\n" +
			"  rule   release-merge  allow tool merge_* (does not name alice)\n"},
		{[]string{"--principal", "alice", "--server", "gh", "--tool", "admin_reset"}, "decision: deny\n" +
			"reason: denied by policy\n" +
			"rule: no-admin\n" +
			"steps:\n" +
			"  grant  gh        own servers\n" +
			"  rule   no-admin  deny tool admin_* (names alice)\n"},
		{[]string{"--principal", "alice", "--server", "gh", "--tool", "delete_repo"}, "decision: deny\n" +
			"reason: tool not allowed on this server\n" +
			"rule: server:disallowed_tools\n" +
			"steps:\n" +
			"  grant         gh                own servers\n" +
			"  server_tools  disallowed_tools  lists delete_repo\n" +
			"  rule          -                 no rule targets tool delete_repo\n"},
		{[]string{"--principal", "demo", "--server", "notes", "--tool", "list_notes"}, "decision: challenge\n" +
			"reason: no upstream grant\n" +
			"steps:\n" +
			"  grant  notes                      own servers\n" +
			"  rule   -                          no rule targets tool list_notes\n" +
			"  auth   oauth2 authorization_code  no vault grant: the person must sign in upstream\n"},
	} {
		out := g.ok(t, dir, nil, append([]string{"explain"}, tc.args...)...)
		if out != tc.want {
			t.Errorf("explain %v:\n%s\nwant\n%s", tc.args, out, tc.want)
		}
	}
	out = g.ok(t, dir, nil, "explain", "--principal", "alice", "--server", "gh", "--tool", "merge_pr", "-o", "json")
	for _, want := range []string{`"decision": "deny"`, `"rule_id": "release-merge"`, `"kind": "grant"`} {
		if !strings.Contains(out, want) {
			t.Errorf("explain -o json lacks %q:\n%s", want, out)
		}
	}
	r := g.cli(t, dir, nil, "explain", "--principal", "ghost", "--server", "gh", "--tool", "x")
	if r.code == 0 || !strings.Contains(r.stderr, "principal not found") {
		t.Errorf("explain ghost: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = g.cli(t, dir, nil, "explain", "--server", "gh")
	if r.code != 2 || !strings.Contains(r.stderr, "mcpgate explain --principal P --server S") {
		t.Errorf("explain without principal: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// An invalid list is refused whole, with the control plane's text.
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "policies:\n  - id: x\n    principals: [alice]\n    servers: [gh]\n    tools: [\"a[b]\"]\n    effect: allow\n")
	r = g.cli(t, dir, nil, "policies", "apply", "-f", bad)
	if r.code == 0 || !strings.Contains(r.stderr, `policies[0].tools[0]: glob uses a reserved character ([, ] or \)`) {
		t.Errorf("apply bad: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	writeFile(t, bad, "policies:\n  - id: x\n    effect: maybe\n")
	r = g.cli(t, dir, nil, "policies", "apply", "-f", bad)
	if r.code == 0 || !strings.Contains(r.stderr, "effect") {
		t.Errorf("apply unknown effect: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out = g.ok(t, dir, nil, "policies", "delete", "no-admin")
	if out != "policy no-admin deleted\n" {
		t.Fatalf("policies delete: %q", out)
	}
	r = g.cli(t, dir, nil, "policies", "delete", "no-admin")
	if r.code == 0 || !strings.Contains(r.stderr, `mcpgate: policy "no-admin": policy not found`) {
		t.Errorf("delete again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out = g.ok(t, dir, nil, "explain", "--principal", "alice", "--server", "gh", "--tool", "admin_reset")
	if !strings.HasPrefix(out, "decision: allow\n") {
		t.Errorf("after delete:\n%s", out)
	}
	// policies apply replaces the list with the file's.
	writeFile(t, bad, "policies: []\n")
	out = g.ok(t, dir, nil, "policies", "apply", "-f", bad)
	if out != "policies 0 rules: changed\n0 created, 1 changed, 0 unchanged\n" {
		t.Fatalf("apply empty: %q", out)
	}
	out = g.ok(t, dir, nil, "policies", "list")
	if out != "ID  EFFECT  PRINCIPALS  GROUPS  SERVERS  TOOLS  RESOURCES  PROMPTS\n" {
		t.Fatalf("empty list: %q", out)
	}

	// A rate limit: explain shows its usage, and once a real call through
	// the gateway has used up the quota, the rate_limited decision. The
	// quota is per UTC day: do not start within two minutes of the day's
	// end (a precondition, not an assertion on time).
	if left := time.Until(time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)); left < 2*time.Minute {
		time.Sleep(left + time.Second)
	}
	if out := g.ok(t, dir, nil, "limits", "set", "echo-daily", "--principals", "demo", "--servers", "echo", "--tools", "echo", "--per-day", "1"); out != "rate limit echo-daily created\n" {
		t.Fatalf("limits set: %q", out)
	}
	explainEcho := regexp.MustCompile(`\Adecision: allow\n` +
		`reason: allowed\n` +
		`steps:\n` +
		`  grant  echo        own servers\n` +
		`  rule   -           no rule targets tool echo\n` +
		`  auth   none        no upstream credential\n` +
		`  limit  echo-daily  0 of 1 per day used, 1 left, window resets in \d+ s\n\z`)
	// Explaining counts nothing: twice, still unused.
	for range 2 {
		if out := g.ok(t, dir, nil, "explain", "--principal", "demo", "--server", "echo", "--tool", "echo"); !explainEcho.MatchString(out) {
			t.Fatalf("explain before the call:\n%s", out)
		}
	}
	demoKey := regexp.MustCompile(`key (mcpg_[A-Za-z0-9]+)`).FindStringSubmatch(g.banner)
	route := regexp.MustCompile(`http://127\.0\.0\.1:\d+/echo/mcp`).FindString(g.banner)
	if demoKey == nil || route == "" {
		t.Fatalf("no demo key or route in banner:\n%s", g.banner)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "explain-test", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: route, HTTPClient: &http.Client{Transport: headerTransport{key: demoKey[1]}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}}); err != nil || res.IsError {
		t.Fatalf("echo: %v %+v", err, res)
	}
	out = g.ok(t, dir, nil, "explain", "--principal", "demo", "--server", "echo", "--tool", "echo")
	if !regexp.MustCompile(`\Adecision: rate_limited\n` +
		`reason: rate limit echo-daily exhausted\n` +
		`steps:\n` +
		`  grant  echo        own servers\n` +
		`  rule   -           no rule targets tool echo\n` +
		`  auth   none        no upstream credential\n` +
		`  limit  echo-daily  1 of 1 per day used, 0 left, window resets in \d+ s\n\z`).MatchString(out) {
		t.Fatalf("explain after the call:\n%s", out)
	}
	// The refusal explain predicts is the one the gateway gives (429).
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}}); err == nil || !strings.Contains(err.Error(), "Too Many Requests") {
		t.Fatalf("2nd echo: %v", err)
	}
}
