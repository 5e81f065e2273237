package dataplane_test

import (
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkCallTool2026 compares one tools/call through the gateway (SSE
// upstreams, Go SDK client and servers) for a 2025-11-25 client on a
// stateful upstream (the existing path), a 2026-07-28 client on a
// stateless upstream (classification and the requestState sealer on the
// reply), and a 2026-07-28 client bridged to the 2025-only upstream (cached
// bridge session, _meta stripped).
func BenchmarkCallTool2026(b *testing.B) {
	for _, tc := range []struct{ name, version, upstream string }{
		{"2025-client", "2025-11-25", "old"},
		{"2026-client", "", "new"},
		{"2026-client-bridged", "", "old"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cp := newFakeCP(b)
			url := newUpstream(b, false).url()
			if tc.upstream == "new" {
				url = newUpstream2026(b, false).url()
			}
			cp.setRoute("Echo", &route{mode: "none", upstream: url, principals: map[string]bool{"alice": true}})
			g := newGateway(b, cp, nil)
			kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
			c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
			cs, err := c.Connect(b.Context(), &mcp.StreamableClientTransport{Endpoint: g.srv.URL + "/Echo/mcp", HTTPClient: &http.Client{Transport: kt}, MaxRetries: -1, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: tc.version})
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cs.CallTool(b.Context(), params); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
