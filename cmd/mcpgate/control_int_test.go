package main_test

import (
	"bytes"
	"os"
	"os/exec"
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

// Sec09/Sec10: the anonymous-cost limits are flags with MCPGATE_* defaults;
// nonsense values stop `mcpgate control` with a one-line usage error.
func TestControlLimitFlags(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--authorize-per-minute", "0"}, "--authorize-per-minute must be at least 1"},
		{nil, []string{"--catchup-reads-per-second", "-1"}, "--catchup-reads-per-second must be positive"},
		{[]string{"MCPGATE_SIGNIN_PER_MINUTE=lots"}, nil, "MCPGATE_SIGNIN_PER_MINUTE is not a valid number"},
		{[]string{"MCPGATE_REGISTER_PER_HOUR=0"}, nil, "--register-per-hour must be at least 1"},
		{nil, []string{"--decision-cache-max-age", "-1s"}, "--decision-cache-max-age must not be negative"},
	} {
		cmd := exec.Command(bin, append([]string{"control", "--etcd-endpoints", "http://127.0.0.1:9"}, tc.args...)...)
		cmd.Env = append(os.Environ(), tc.env...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		err := cmd.Run()
		if err == nil || !strings.Contains(errb.String(), tc.want) || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("%v %v: %v, stderr %q; want a one-line error with %q", tc.env, tc.args, err, errb.String(), tc.want)
		}
	}
}
