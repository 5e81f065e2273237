package dataplane_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/dataplane"
)

// TestMisconfiguredIsNotRetried: a control plane answering
// failed_precondition (a misconfigured server: every replica would answer
// the same) is asked once, not once per replica, and the client gets the
// same 503 as for any "could not decide"; unavailable (transient) is still
// tried on the next replica.
func TestMisconfiguredIsNotRetried(t *testing.T) {
	cp1, cp2 := newFakeCP(t), newFakeCP(t)
	g := newGateway(t, cp1, func(c *dataplane.Config) { c.ControlPlaneURLs = []string{cp1.srv.URL, cp2.srv.URL} })
	calls := func() int {
		n := 0
		for _, cp := range []*fakeCP{cp1, cp2} {
			cp.mu.Lock()
			n += len(cp.requests)
			cp.requests = nil
			cp.mu.Unlock()
		}
		return n
	}
	for _, c := range []struct {
		key   string
		calls int
	}{
		{"mcpg_misconfigured", 1},
		{"mcpg_unavailable", 2},
	} {
		calls()
		resp, body := g.do(t, "POST", "/Echo/mcp", with(map[string]string{"X-MCPGate-API-Key": c.key}), initBody)
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || body != echoID(rpcUnavailable, initBody) {
			t.Errorf("%s: %d %q %s", c.key, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
		if n := calls(); n != c.calls {
			t.Errorf("%s: %d Authorize calls, want %d", c.key, n, c.calls)
		}
	}
}
