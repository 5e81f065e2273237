package wire_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the package importable by both planes: the
// standard library and golang.org/x/net/http/httpguts only.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test=false", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var self bool
	for _, d := range strings.Fields(string(out)) {
		switch {
		case d == "github.com/mcpgate/mcpgate/api/wire":
			self = true
		case d == "golang.org/x/net/http/httpguts", d == "golang.org/x/net/idna",
			strings.HasPrefix(d, "golang.org/x/text/"):
			// httpguts and what it links.
		default:
			t.Errorf("api/wire depends on %s", d)
		}
	}
	if !self {
		t.Errorf("dependency list %q does not include api/wire itself", out)
	}
}
