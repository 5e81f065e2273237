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
func TestAggregateSessionAlternatesDataPlanes(t *testing.T) {
	f := setup(t)
	lb := NewBalancer(f.proxyURL...)
	c := mcp.NewClient(&mcp.Implementation{Name: "clustertest-aggregate", Version: "1"}, nil)
	cs, err := c.Connect(f.ctx, &mcp.StreamableClientTransport{
		Endpoint:             f.proxyURL[0] + "/mcp",
		HTTPClient:           &http.Client{Transport: keyTransport{key: f.key, base: balancedTransport{b: lb, base: http.DefaultTransport}}},
		MaxRetries:           -1,
		DisableStandaloneSSE: true,
	}, nil)
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
	// One upstream request per call: no member was reopened on either
	// process.
	if n := f.up.Requests() - before; n != 200 {
		t.Errorf("upstream saw %d requests for 200 calls", n)
	}
	// A data plane killed: the session goes on through the other.
	f.c.Proxies[0].Kill()
	lb.SetTargets(f.proxyURL[1])
	for i := range 10 {
		if res, err := cs.CallTool(f.ctx, &mcp.CallToolParams{Name: "echo__echo", Arguments: map[string]any{"text": "x"}}); err != nil || res.IsError {
			t.Fatalf("call %d after %s was killed: %v", i, f.c.Proxies[0].Name, err)
		}
	}
}
