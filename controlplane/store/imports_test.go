package store_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyStoreImportsEtcdClient enforces that the etcd client is imported
// directly only by the store and by the packages that run etcd itself (the
// embedded servers of tests and dev mode, and the cluster test harness).
func TestOnlyStoreImportsEtcdClient(t *testing.T) {
	allowed := map[string]bool{
		"github.com/mcpgate/mcpgate/controlplane/store": true,
		"github.com/mcpgate/mcpgate/internal/etcdtest":  true,
		"github.com/mcpgate/mcpgate/internal/devetcd":   true,
	}
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 10 {
		t.Fatalf("go list returned only %d packages", len(lines))
	}
	sawStore := false
	for _, l := range lines {
		f := strings.Fields(l)
		pkg := f[0]
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, "go.etcd.io/etcd/client/") {
				continue
			}
			if pkg == "github.com/mcpgate/mcpgate/controlplane/store" {
				sawStore = true
			}
			if !allowed[pkg] {
				t.Errorf("%s imports %s; only controlplane/store may talk to etcd", pkg, imp)
			}
		}
	}
	if !sawStore {
		t.Error("controlplane/store does not import the etcd client: the test proves nothing")
	}
}
