package clustertest

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestAggregateSessionAlternatesDataPlanes: one client session on the root
// aggregate /mcp, every request sent to the other of two data-plane
// processes, 200 routed tools/call with zero failures. The session handle
// carries the member sessions, so neither process needs anything from the
// other; when one is killed the session goes on through the survivor.
// The same with a 2026-07-28 client (no session at all): each process
// opens its own session to the 2025-only member on first use, nothing is
// shared, and no call fails.
func TestAggregateSessionAlternatesDataPlanes(t *testing.T) {
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) { aggregateAlternates(t, version) })
	}
}

func aggregateAlternates(t *testing.T, version string) {
	f := setup(t)
	lb := NewBalancer(f.proxyURL...)
	c := mcp.NewClient(&mcp.Implementation{Name: "clustertest-aggregate", Version: "1"}, nil)
	cs, err := c.Connect(f.ctx, &mcp.StreamableClientTransport{
		Endpoint:             f.proxyURL[0] + "/mcp",
		HTTPClient:           &http.Client{Transport: keyTransport{key: f.key, base: balancedTransport{b: lb, base: http.DefaultTransport}}},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
	}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("initialize /mcp: %v", err)
	}
	defer cs.Close()
	before := f.up.Requests()
	failures := 0
	for i := range 200 {
		text := fmt.Sprint("agg", i)
		res, err := cs.CallTool(f.ctx, &mcp.CallToolParams{Name: "echo__echo", Arguments: map[string]any{"text": text}})
		if err != nil || res.IsError || len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != text {
			failures++
			if failures < 5 {
				t.Logf("call %d: %v %+v", i, err, res)
			}
		}
	}
	if failures != 0 {
		t.Errorf("%d of 200 calls failed", failures)
	}
	n := f.up.Requests() - before
	switch {
	case version == "2025-11-25" && n != 200:
		// One upstream request per call: the member session sealed in the
		// client's handle, no member reopened on either process.
		t.Errorf("upstream saw %d requests for 200 calls", n)
	case version != "2025-11-25" && (n < 200 || n > 200+3*int64(len(f.proxyURL))):
		// Per process at most: the request that taught it the member's
		// version, initialize and notifications/initialized.
		t.Errorf("upstream saw %d requests for 200 calls, want 200 plus at most 3 per data plane", n)
	}
	t.Logf("%s client: 200 calls alternating between 2 data planes, %d failed, %d upstream requests", version, failures, n)
	// A data plane killed: the session goes on through the other.
	f.c.Proxies[0].Kill()
	lb.SetTargets(f.proxyURL[1])
	for i := range 10 {
		if res, err := cs.CallTool(f.ctx, &mcp.CallToolParams{Name: "echo__echo", Arguments: map[string]any{"text": "x"}}); err != nil || res.IsError {
			t.Fatalf("call %d after %s was killed: %v", i, f.c.Proxies[0].Name, err)
		}
	}
}
