package dataplane

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkToolFilter filters a tools/list result of 200 tools against an
// allowed list of 50 and a disallowed list of 5.
func BenchmarkToolFilter(b *testing.B) {
	var tools, allowed []string
	for i := range 200 {
		tools = append(tools, fmt.Sprintf(`{"name":"tool_%03d","inputSchema":{"type":"object"}}`, i))
		if i%4 == 0 {
			allowed = append(allowed, fmt.Sprintf("tool_%03d", i))
		}
	}
	disallowed := allowed[:5]
	body := []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[` + strings.Join(tools, ",") + `]}}`)
	b.ReportAllocs()
	for b.Loop() {
		f := newToolFilter(allowed, disallowed)
		if _, err := f.rewrite(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseBody parses a typical single tools/call request, as every
// MCP POST is parsed before it is authorized.
func BenchmarkParseBody(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"is:open label:bug","limit":20,"fields":["title","url","labels"]},"_meta":{"progressToken":"p-42"}}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseBody(body); err != nil {
			b.Fatal(err)
		}
	}
}
