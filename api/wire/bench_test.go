package wire_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/api/wire"
)

// BenchmarkRoutePath is the per-request work the data plane does with the
// wire contract: parse the route, build its metadata URL for a challenge.
func BenchmarkRoutePath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		route, ok := wire.ParseRoutePath("/Gmail/mcp")
		if !ok {
			b.Fatal("not a route")
		}
		_ = wire.ResourceMetadataURL("https://gw.example.com", route)
	}
}
