package dataplane_test

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkProtectedResourceMetadata measures a GET of a route's metadata
// document through the gateway (issue 8 item 16: the document no longer
// depends on the control plane, so it costs no RPC).
func BenchmarkProtectedResourceMetadata(b *testing.B) {
	cp := newFakeCP(b)
	cp.setRoute("Gmail", &route{mode: "authcode", upstream: "http://127.0.0.1:1/mcp", scopes: []string{"gmail.read"}})
	g := newGateway(b, cp, nil)
	u := g.srv.URL + "/.well-known/oauth-protected-resource/Gmail/mcp"
	c := &http.Client{}
	for b.Loop() {
		resp, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
