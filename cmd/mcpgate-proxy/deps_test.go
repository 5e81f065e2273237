package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps: the thin data-plane binary links no etcd and no control-plane
// package.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list printed %d packages; want the full dependency list", len(deps))
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "go.etcd.io/") || strings.HasPrefix(d, "github.com/mcpgate/mcpgate/controlplane") {
			t.Errorf("mcpgate-proxy depends on %s", d)
		}
	}
}
