package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
	"github.com/mcpgate/mcpgate/ops/tlsconfig"
)

// TestControlEtcdTLS runs `mcpgate control` against an etcd that requires
// TLS client certificates (--etcd-cert/--etcd-key/--etcd-ca go through
// tlsconfig.Client), with the keyset file given by the deprecated
// --vault-keyset: it still works, and the log warns about the new name.
func TestControlEtcdTLS(t *testing.T) {
	dir := t.TempDir()
	pki, err := tlsconfig.WritePKI(filepath.Join(dir, "pki"), []string{"127.0.0.1"}, "mcpgate-control")
	if err != nil {
		t.Fatal(err)
	}
	etcd := etcdtest.StartTLS(t, pki.ServerCert, pki.ServerKey, pki.CA)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := kr.JSON()
	if err != nil {
		t.Fatal(err)
	}
	ksFile := filepath.Join(dir, "vault-keyset.json")
	if err := os.WriteFile(ksFile, ks, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := startProcess(t, dir, []string{"MCPGATE_DATAPLANE_TOKEN=dp-token-1", "MCPGATE_ADMIN_KEY=", "MCPGATE_VAULT_KEYSET=",
		"MCPGATE_ETCD_CA=" + pki.CA},
		"control", "--etcd-endpoints", etcd.Endpoint, "--listen", addr, "--log-format", "text",
		"--etcd-cert", pki.ClientCerts[0], "--etcd-key", pki.ClientKeys[0], "--vault-keyset", ksFile)
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
	if !strings.Contains(p.output.String(), `level=WARN msg="--vault-keyset is deprecated; use --vault-keyset-file"`) {
		t.Errorf("no deprecation warning in the log:\n%s", p.output)
	}
}
