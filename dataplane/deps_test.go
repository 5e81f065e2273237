package dataplane_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies enforces that the data plane links neither etcd nor any
// control-plane package, and neither does the thin proxy binary or the
// runner it shares with `mcpgate proxy`.
func TestDependencies(t *testing.T) {
	pkgs := []string{"./dataplane/...", "./cmd/mcpgate-proxy", "./dataplane/proxyrun"}
	forbidden := []string{
		"go.etcd.io/",
		"github.com/mcpgate/mcpgate/controlplane",
	}
	args := append([]string{"list", "-deps", "-test=false", "-f", "{{.ImportPath}}"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list returned only %d packages; the test would not prove anything: %q", len(deps), deps)
	}
	sawSelf := false
	for _, d := range deps {
		if d == "github.com/mcpgate/mcpgate/dataplane" {
			sawSelf = true
		}
		for _, f := range forbidden {
			if strings.HasPrefix(d, f) {
				t.Errorf("data plane depends on %s", d)
			}
		}
	}
	if !sawSelf {
		t.Errorf("dependency list does not include the dataplane package itself")
	}
}
