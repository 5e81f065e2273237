package authorize_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDecisionIsPure: the decision package does no I/O: it imports no
// network, etcd, OAuth client or credential-obtaining package (it reads a
// State snapshot and a clock; controlplane/grants obtains credentials
// after it). Importing controlplane/store for its record types is allowed.
func TestDecisionIsPure(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	imports := strings.Fields(string(out))
	if len(imports) < 3 {
		t.Fatalf("go list returned %q: the test proves nothing", imports)
	}
	for _, imp := range imports {
		// Exact names, and trees ending in "/".
		for _, banned := range []string{"net", "net/http", "net/http/", "os", "crypto/rand", "sync", "context",
			"golang.org/x/oauth2", "golang.org/x/oauth2/", "golang.org/x/sync/", "go.etcd.io/", "connectrpc.com/",
			"github.com/mcpgate/mcpgate/controlplane/grants"} {
			if imp == banned || (strings.HasSuffix(banned, "/") && strings.HasPrefix(imp, banned)) {
				t.Errorf("controlplane/authorize imports %s: the decision must stay pure", imp)
			}
		}
	}
}
