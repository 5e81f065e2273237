package oauth_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestWireOneContract: the authorization server uses api/wire's rules, the
// same the data plane uses. The relayed public URL is normalised by the one
// public-base rule (host lower-cased, default port dropped; the former copy
// kept ":443"), and a resource naming a server no server can have (the
// data plane's old grammar allowed dots) is invalid_target before sign-in.
func TestWireOneContract(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("issuer by the one public-base rule", func(t *testing.T) {
		r := call(t, http.MethodGet, e.pub+"/.well-known/oauth-authorization-server", http.Header{"X-Test-Public-URL": {"HTTPS://GW.Example.COM:443/"}}, "")
		if m := r.json(t); m["issuer"] != "https://gw.example.com" || m["token_endpoint"] != "https://gw.example.com/token" {
			t.Errorf("%v", m)
		}
		r = call(t, http.MethodGet, e.pub+"/.well-known/oauth-authorization-server", http.Header{"X-Test-Public-URL": {"https://gw.example.com#"}}, "")
		if r.status != http.StatusBadRequest || strings.Contains(r.body, "issuer") {
			t.Errorf("public URL with an empty fragment: %d %s", r.status, r.body)
		}
	})
	c := e.publicClient("Test Client")
	for _, res := range []string{
		e.pub + "/a.b/mcp",
		e.pub + "/" + strings.Repeat("a", 65) + "/mcp",
		e.pub + "/-a/mcp",
		e.pub + "/x%2Fmcp",
	} {
		t.Run("resource "+res[len(e.pub):], func(t *testing.T) {
			q := e.authQuery(c)
			q.Set("resource", res)
			wantRedirectError(t, e, call(t, http.MethodGet, e.authorizeURL(q), nil, ""), "invalid_target")
		})
	}
}
