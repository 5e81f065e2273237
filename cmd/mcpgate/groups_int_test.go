package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestCLIGroups: groups create|list|get|delete against `mcpgate dev`, a
// principal's membership set with principals create --groups and apply,
// and principals get naming where each grant comes from. The demo setup's
// groups (release, readers: what the demo IdP asserts) are listed too.
func TestCLIGroups(t *testing.T) {
	dir := t.TempDir()
	g := startDev(t, dir, freeAddr(t))

	out := g.ok(t, dir, nil, "groups", "create", "deploy", "--servers", "echo,github", "--description", "deployers")
	if out != "group deploy created (servers echo,github)\n" {
		t.Fatalf("groups create: %q", out)
	}
	r := g.cli(t, dir, nil, "groups", "create", "deploy", "--servers", "echo")
	if r.code == 0 || !strings.Contains(r.stderr, `group "deploy" already exists (change it with apply, or delete it first)`) {
		t.Fatalf("second create: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = g.cli(t, dir, nil, "groups", "create", "bad/name")
	if r.code == 0 || !strings.Contains(r.stderr, "name: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$") {
		t.Fatalf("bad name: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	g.ok(t, dir, nil, "groups", "create", "empty")
	out = g.ok(t, dir, nil, "groups", "list")
	if !regexp.MustCompile(`(?m)^NAME\s+SERVERS\s+DESCRIPTION\ndeploy\s+echo,github\s+deployers\nempty\s+-\s+-\nreaders\s+echo\s+.*\nrelease\s+echo,notes\s+.*\n$`).MatchString(out) {
		t.Fatalf("groups list:\n%s", out)
	}

	out = g.ok(t, dir, nil, "principals", "create", "pat", "--servers", "echo", "--groups", "deploy")
	if !strings.Contains(out, "principal pat created") {
		t.Fatalf("principals create: %q", out)
	}
	out = g.ok(t, dir, nil, "principals", "get", "pat")
	for _, re := range []string{
		`(?m)^groups\s+deploy$`,
		`(?m)^asserted_groups\s+-$`,
		`(?m)^grant echo\s+own; group deploy \(admin\)$`,
		`(?m)^grant github\s+group deploy \(admin\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("principals get lacks %s:\n%s", re, out)
		}
	}
	out = g.ok(t, dir, nil, "principals", "get", "pat", "-o", "json")
	for _, want := range []string{`"effective_servers": [`, `"server": "github"`, `"group": "deploy"`} {
		if !strings.Contains(out, want) {
			t.Errorf("principals get -o json lacks %q:\n%s", want, out)
		}
	}
	out = g.ok(t, dir, nil, "groups", "get", "deploy")
	for _, re := range []string{`(?m)^NAME\s+deploy$`, `(?m)^servers\s+echo,github$`, `(?m)^description\s+deployers$`, `(?m)^members\s+pat$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("groups get lacks %s:\n%s", re, out)
		}
	}

	// apply moves pat from deploy to a new group.
	cfg := filepath.Join(dir, "groups.yaml")
	writeFile(t, cfg, "groups:\n  ops:\n    servers: [plain]\nprincipals:\n  - name: pat\n    servers: [echo]\n    groups: [ops]\n")
	out = g.ok(t, dir, nil, "apply", "-f", cfg)
	if !strings.Contains(out, "group ops: created\nprincipal pat: changed\n") {
		t.Fatalf("apply:\n%s", out)
	}
	out = g.ok(t, dir, nil, "principals", "get", "pat")
	if strings.Contains(out, "grant github") || !regexp.MustCompile(`(?m)^grant plain\s+group ops \(admin\)$`).MatchString(out) {
		t.Fatalf("after apply:\n%s", out)
	}

	out = g.ok(t, dir, nil, "groups", "delete", "deploy")
	if out != "group deploy deleted\n" {
		t.Fatalf("groups delete: %q", out)
	}
	r = g.cli(t, dir, nil, "groups", "get", "deploy")
	if r.code == 0 || !strings.Contains(r.stderr, "mcpgate: group \"deploy\": group not found\n") {
		t.Fatalf("get deleted: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = g.cli(t, dir, nil, "groups", "delete", "deploy")
	if r.code == 0 || !strings.Contains(r.stderr, "group not found") {
		t.Fatalf("delete deleted: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = g.cli(t, dir, nil, "groups", "rename", "x")
	if r.code == 0 || !strings.Contains(r.stderr, "mcpgate groups list | get NAME | delete NAME | create NAME [--servers a,b]") {
		t.Fatalf("bad subcommand: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
