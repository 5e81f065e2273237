package oauth

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"

	"github.com/mcpgate/mcpgate/api/wire"
)

// TestServedPathsAreRelayed: every path the authorization server serves is
// one the data plane relays (api/wire.IsRelayPath), so the relay list and
// the mux cannot drift apart. The paths are read from the HandleFunc calls
// of New's source.
func TestServedPathsAreRelayed(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "oauth.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || (sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle") {
			return true
		}
		if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
			p, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			served = append(served, p)
		}
		return true
	})
	if len(served) < 10 {
		t.Fatalf("found only %d served paths (%q): the test would prove nothing", len(served), served)
	}
	for _, p := range served {
		if !wire.IsRelayPath(p) {
			t.Errorf("the authorization server serves %s, which data planes do not relay", p)
		}
	}
	for p := range corsPaths {
		if !wire.IsRelayPath(p) {
			t.Errorf("CORS path %s is not relayed", p)
		}
	}
}
