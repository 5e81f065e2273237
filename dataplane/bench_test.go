package dataplane_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkCallTool compares a tools/call round trip with the official SDK
// client directly against the upstream and through the gateway (fake
// control plane over real Connect, SSE upstream). Reports p50/p99 and
// requests per second.
func BenchmarkCallTool(b *testing.B) {
	for _, via := range []string{"direct", "gateway"} {
		b.Run(via, func(b *testing.B) {
			cp := newFakeCP(b)
			up := newUpstream(b, false)
			cp.setRoute("Echo", &route{mode: "none", upstream: up.url(), principals: map[string]bool{"alice": true}})
			endpoint := up.url()
			if via == "gateway" {
				g := newGateway(b, cp, nil)
				endpoint = g.srv.URL + "/Echo/mcp"
			}
			kt := &keyTransport{header: "X-MCPGate-API-Key", value: "mcpg_alice"}
			c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
			cs, err := c.Connect(b.Context(), &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: &http.Client{Transport: kt}, MaxRetries: -1, DisableStandaloneSSE: true}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			lat := make([]time.Duration, 0, b.N)
			params := &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				if _, err := cs.CallTool(b.Context(), params); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			total := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50_us")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99_us")
				b.ReportMetric(float64(len(lat))/total.Seconds(), "req/s")
			}
		})
	}
}
