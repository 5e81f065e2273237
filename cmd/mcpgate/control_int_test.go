package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// TestControl runs `mcpgate control` against an external etcd and
// administers it with the CLI.
func TestControl(t *testing.T) {
	etcd := etcdtest.Start(t)
	dir := t.TempDir()
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := kr.JSON()
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cwd, err := os.Getwd() // etcdtest's unix socket is relative to it
	if err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, cwd, []string{"MCPGATE_VAULT_KEYSET=" + string(ks), "MCPGATE_DATAPLANE_TOKEN=dp-token-1", "MCPGATE_ADMIN_KEY="},
		"control", "--etcd-endpoints", etcd.Endpoint, "--listen", addr, "--log-format", "text")
	waitListening(t, addr)
	key := regexp.MustCompile(`mcpg_[A-Za-z0-9]{32,}`).FindString(p.output.String())
	if key == "" {
		t.Fatalf("no admin key printed:\n%s", p.output)
	}
	g := &gateway{control: "http://" + addr}
	env := []string{"MCPGATE_ADMIN_KEY=" + key}
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, []byte("mcp_servers:\n  svc:\n    url: http://127.0.0.1:9/mcp\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := g.ok(t, dir, env, "apply", "-f", cfg); !strings.Contains(out, "server svc: created") {
		t.Errorf("apply:\n%s", out)
	}
	if out := g.ok(t, dir, env, "servers", "list"); !strings.Contains(out, "svc") {
		t.Errorf("servers list:\n%s", out)
	}
	stopProcess(t, p)
}
