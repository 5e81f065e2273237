package wire_test

import (
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/api/wire"
)

// serverNameShape is the server-name grammar written as the admin API's
// validation wrote it, to check ValidServerName against.
var serverNameShape = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// FuzzParseRoutePath checks the route path parser the data plane routes
// with: it accepts exactly RoutePath(name) and RoutePath(name)+"/" for a
// name of the server grammar, and what it returns builds back to the path.
func FuzzParseRoutePath(f *testing.F) {
	for _, s := range []string{
		"/Gmail/mcp", "/Gmail/mcp/", "/a.b/mcp", "/../mcp", "//mcp", "/mcp",
		"/a/b/mcp", "/.well-known/mcp", "/Gmail/mcp//", "/" + strings.Repeat("a", 65) + "/mcp",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		server, ok := wire.ParseRoutePath(path)
		if !ok {
			if server != "" {
				t.Fatalf("ParseRoutePath(%q) refused but returned %q", path, server)
			}
			return
		}
		if server == "" { // the root aggregate
			if path != wire.RootPath && path != wire.RootPath+"/" {
				t.Fatalf("ParseRoutePath(%q) = the root aggregate", path)
			}
			return
		}
		if !serverNameShape.MatchString(server) || !wire.ValidServerName(server) {
			t.Fatalf("ParseRoutePath(%q) = %q, not a server name", path, server)
		}
		if p := wire.RoutePath(server); path != p && path != p+"/" {
			t.Fatalf("ParseRoutePath(%q) = %q, but RoutePath gives %q", path, server, p)
		}
		if u := wire.ResourceURL("https://gw.example.com", server); u != "https://gw.example.com"+wire.RoutePath(server) {
			t.Fatalf("ResourceURL of %q = %q", server, u)
		}
		if got, ok := wire.ParseMetadataPath(wire.PRMPrefix + wire.RoutePath(server)); !ok || got != server {
			t.Fatalf("ParseMetadataPath of %q = %q, %v", server, got, ok)
		}
	})
}

// FuzzServerName checks ValidServerName against the grammar's regular
// expression.
func FuzzServerName(f *testing.F) {
	for _, s := range []string{"Gmail", "a_b-c", "-a", "a.b", "", strings.Repeat("a", 64), strings.Repeat("a", 65), "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := wire.ValidServerName(s), serverNameShape.MatchString(s); got != want {
			t.Fatalf("ValidServerName(%q) = %v, grammar says %v", s, got, want)
		}
	})
}

// FuzzTokenAudience (moved from controlplane/oauth) checks that both planes
// agree on a token's audience: for a public URL v, the audience /token
// writes (ResourceURL of the relayed public base) and the one Authorize
// expects (ResourceURL of AuthorizeRequest.public_base_url) are the same
// string whichever spelling of v each saw, it is a fixed point of the
// canonicalization the resource parameter gets, and the resource parameter
// naming it names the route (issue 8 item 8).
func FuzzTokenAudience(f *testing.F) {
	for _, s := range [][2]string{
		{"https://gw.example.com", "Gmail"},
		{"HTTPS://GW.Example.COM:443/", "notes"},
		{"http://127.0.0.1:8080", "a_b-c"},
		{"http://[::1]:80", "x"},
		{"https://gw.example.com:8443", "GitHub"},
		{"https://gw.example.com", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, v, route string) {
		if route != "" && !serverNameShape.MatchString(route) { // "" is the root aggregate
			return
		}
		base, err := wire.PublicBase(v)
		if err != nil {
			return
		}
		issued := wire.ResourceURL(base, route)
		if expected := wire.ResourceURL(v, route); issued != expected {
			t.Fatalf("public URL %q, route %q: /token writes audience %q, Authorize expects %q", v, route, issued, expected)
		}
		if canon, ok := wire.CanonicalResource(issued); !ok || canon != issued {
			t.Fatalf("audience %q canonicalizes to %q (%v)", issued, canon, ok)
		}
		if got, ok := wire.ResourceServer(v, issued); !ok || got != route {
			t.Fatalf("resource %q under %q names %q (%v), not %q", issued, v, got, ok, route)
		}
		u, err := url.Parse(wire.ResourceMetadataURL(v, route))
		if err != nil || u.Scheme+"://"+u.Host != base {
			t.Fatalf("metadata URL %q is not under %q", wire.ResourceMetadataURL(v, route), base)
		}
		if got, ok := wire.ParseMetadataPath(u.Path); !ok || got != route {
			t.Fatalf("metadata path %q names %q (%v), not %q", u.Path, got, ok, route)
		}
	})
}

// toolNameShape is the MCP tool-name rule (SEP-986 as the 2025-11-25
// specification states it) as a regular expression.
var toolNameShape = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// FuzzToolName checks ValidToolName against the rule's regular expression,
// and that ExposedName and UpstreamName invert each other for a member
// without renames.
func FuzzToolName(f *testing.F) {
	for _, s := range [][2]string{{"getUser", "echo__"}, {"admin.tools.list", "n."}, {"a/b", ""}, {"", "x__"}, {strings.Repeat("a", 129), "p"}, {"é", "e."}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, prefix string) {
		if got, want := wire.ValidToolName(name), toolNameShape.MatchString(name); got != want {
			t.Fatalf("ValidToolName(%q) = %v, rule says %v", name, got, want)
		}
		if name == "" {
			return
		}
		ex := wire.ExposedName(prefix, nil, name)
		if up, ok := wire.UpstreamName(prefix, nil, ex); !ok || up != name {
			t.Fatalf("UpstreamName(%q, %q) = %q, %v; want %q", prefix, ex, up, ok, name)
		}
	})
}
