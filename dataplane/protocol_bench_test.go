package dataplane

import (
	"net/http"
	"testing"
)

// BenchmarkParseClassify is the gateway's per-request parsing and
// classification of a tools/call, 2025-11-25 (no _meta) and 2026-07-28
// (_meta triple and mirrored headers).
func BenchmarkParseClassify(b *testing.B) {
	for _, tc := range []struct {
		name string
		h    http.Header
		body string
	}{
		{"2025", http.Header{"Mcp-Protocol-Version": {"2025-11-25"}}, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`},
		{"2026", http.Header{"Mcp-Protocol-Version": {"2026-07-28"}, "Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo"}},
			`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}}}}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			body := []byte(tc.body)
			b.ReportAllocs()
			for b.Loop() {
				p, err := parseBody(body)
				if err != nil {
					b.Fatal(err)
				}
				if c := classifyRequest(tc.h, p); c.Status != 0 {
					b.Fatal(c.Refusal)
				}
			}
		})
	}
}
