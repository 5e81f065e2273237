package main_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCLIVirtualServers: the demo's virtual server team and the /mcp and
// /team/mcp lines of the banner; virtual-servers add|list|get|delete
// against `mcpgate dev`, the control plane's refusals printed, apply of
// virtual_servers:, and a referenced server not deleted.
func TestCLIVirtualServers(t *testing.T) {
	dir := t.TempDir()
	g := startDev(t, dir, freeAddr(t))
	for _, re := range []string{
		`(?m)^  claude mcp add --transport http all http://[^ ]+/mcp$`,
		`(?m)^  claude mcp add --transport http team http://[^ ]+/team/mcp$`,
	} {
		if !regexp.MustCompile(re).MatchString(g.banner) {
			t.Errorf("banner lacks %s:\n%s", re, g.banner)
		}
	}
	out := g.ok(t, dir, nil, "virtual-servers", "list")
	if !regexp.MustCompile(`(?m)^NAME\s+MEMBERS\s+DESCRIPTION\nteam\s+echo,notes\s+mcpgate demo: echo and notes as one server\n$`).MatchString(out) {
		t.Fatalf("virtual-servers list:\n%s", out)
	}
	out = g.ok(t, dir, nil, "virtual-servers", "add", "solo", "--members", "echo", "--separator", ".", "--description", "just echo")
	if out != "virtual server solo created (members echo; at /solo/mcp)\n" {
		t.Fatalf("virtual-servers add: %q", out)
	}
	r := g.cli(t, dir, nil, "virtual-servers", "add", "solo", "--members", "echo")
	if r.code == 0 || !strings.Contains(r.stderr, `virtual server "solo" already exists (change it with apply, or delete it first)`) {
		t.Fatalf("second add: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = g.cli(t, dir, nil, "virtual-servers", "add", "echo", "--members", "notes")
	if r.code == 0 || !strings.Contains(r.stderr, `name: virtual server "echo" and server "echo": a virtual server may not share a server's name (one route each)`) {
		t.Fatalf("name of a server: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = g.cli(t, dir, nil, "virtual-servers", "add", "other", "--members", "echo,calendar")
	if r.code == 0 || !strings.Contains(r.stderr, `members[1].server: virtual server "other" names server "calendar", which does not exist`) {
		t.Fatalf("unknown member: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// YAML: per-member naming and filters.
	cfg := filepath.Join(dir, "virtual.yaml")
	writeFile(t, cfg, "virtual_servers:\n  solo:\n    members:\n      - server: echo\n        include_tools: [echo]\n        renames: {countdown: count}\n        tool_prefix: e.\n")
	out = g.ok(t, dir, nil, "apply", "-f", cfg)
	if !strings.Contains(out, "virtual_server solo: changed\n") {
		t.Fatalf("apply:\n%s", out)
	}
	out = g.ok(t, dir, nil, "virtual-servers", "get", "solo")
	for _, re := range []string{`(?m)^NAME\s+solo$`, `(?m)^route\s+/solo/mcp$`, `(?m)^member echo\s+prefix "e\."; include echo; renames countdown->count$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("virtual-servers get lacks %s:\n%s", re, out)
		}
	}
	out = g.ok(t, dir, nil, "virtual-servers", "get", "solo", "-o", "json")
	if !strings.Contains(out, `"toolPrefix": "e."`) && !strings.Contains(out, `"tool_prefix": "e."`) {
		t.Errorf("virtual-servers get -o json:\n%s", out)
	}
	r = g.cli(t, dir, nil, "servers", "delete", "notes")
	if r.code == 0 || !strings.Contains(r.stderr, `server "notes" is members[1] of virtual server "team": remove it from the virtual server first`) {
		t.Fatalf("delete a member server: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out = g.ok(t, dir, nil, "virtual-servers", "delete", "solo")
	if out != "virtual server solo deleted\n" {
		t.Fatalf("virtual-servers delete: %q", out)
	}
	r = g.cli(t, dir, nil, "virtual-servers", "get", "solo")
	if r.code == 0 || !strings.Contains(r.stderr, "mcpgate: virtual server \"solo\": virtual server not found\n") {
		t.Fatalf("get deleted: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = g.cli(t, dir, nil, "virtual-servers", "rename", "x")
	if r.code == 0 || !strings.Contains(r.stderr, "mcpgate virtual-servers list | get NAME | delete NAME | add NAME --members a,b") {
		t.Fatalf("bad subcommand: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
