package oauth

import (
	"regexp"
	"testing"

	"github.com/mcpgate/mcpgate/controlplane/authorize"
)

// serverNameShape is the shape of a server name (configapi's rule).
var serverNameShape = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// FuzzTokenAudience checks that both planes agree on a token's audience:
// for a public URL v that the authorization server (relay header) and
// Authorize (AuthorizeRequest.public_base_url) both accept, the audience
// /token writes and the one Authorize expects are the same string, and it
// is a fixed point of the canonicalization the resource parameter gets, so
// a client naming the route's resource URL is never refused (issue 8 item 8).
func FuzzTokenAudience(f *testing.F) {
	for _, s := range [][2]string{
		{"https://gw.example.com", "Gmail"},
		{"HTTPS://GW.Example.COM:443/", "notes"},
		{"http://127.0.0.1:8080", "a_b-c"},
		{"http://[::1]:80", "x"},
		{"https://gw.example.com:8443", "GitHub"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, v, route string) {
		if !serverNameShape.MatchString(route) {
			return
		}
		pub, ok := publicURL(v)
		if !ok {
			return
		}
		base, err := authorize.PublicBase(v)
		if err != nil {
			return
		}
		issued := authorize.ResourceURL(pub, route)
		expected := authorize.ResourceURL(base, route)
		if issued != expected {
			t.Fatalf("public URL %q, route %q: /token writes audience %q, Authorize expects %q", v, route, issued, expected)
		}
		if canon, ok := canonicalResource(issued); !ok || canon != issued {
			t.Fatalf("audience %q canonicalizes to %q (%v)", issued, canon, ok)
		}
		if canon, _ := canonicalResource(routeURL(pub, route)); canon != issued {
			t.Fatalf("the route's resource URL %q canonicalizes to %q, not the audience %q", routeURL(pub, route), canon, issued)
		}
	})
}
