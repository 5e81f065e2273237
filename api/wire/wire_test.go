package wire_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/api/wire"
)

func TestValidServerName(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"Gmail", true},
		{"a", true},
		{"0", true},
		{"a_b-c", true},
		{"A1-_", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"-a", false},
		{"_a", false},
		{"a.b", false}, // the data plane accepted dots; no server can have one
		{".", false},
		{"..", false},
		{".well-known", false},
		{"a/b", false},
		{"a b", false},
		{"a%2Fb", false},
		{"é", false},
		{"a\x00", false},
	} {
		if got := wire.ValidServerName(c.in); got != c.want {
			t.Errorf("ValidServerName(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// notRoute marks a path that names no route (it is no server name).
const notRoute = "-"

func TestRoutePath(t *testing.T) {
	for _, c := range []struct {
		path   string
		server string // notRoute = not a route; "" = the root aggregate
	}{
		{"/Gmail/mcp", "Gmail"},
		{"/Gmail/mcp/", "Gmail"},
		{"/a_b-c/mcp", "a_b-c"},
		{"/" + strings.Repeat("a", 64) + "/mcp", strings.Repeat("a", 64)},
		{"/" + strings.Repeat("a", 65) + "/mcp", notRoute},
		{"/a.b/mcp", notRoute},
		{"/./mcp", notRoute},
		{"/../mcp", notRoute},
		{"/.well-known/mcp", notRoute},
		{"//mcp", notRoute},
		{"/mcp", ""},
		{"/mcp/", ""},
		{"/mcp//", notRoute},
		{"/MCP", notRoute},
		{"/", notRoute},
		{"", notRoute},
		{"Gmail/mcp", notRoute},
		{"/Gmail/mcp//", notRoute},
		{"/Gmail/MCP", notRoute},
		{"/Gmail/mcpx", notRoute},
		{"/Gmail/other", notRoute},
		{"/a/b/mcp", notRoute},
		{"/Gmail/mcp/x", notRoute},
	} {
		got, ok := wire.ParseRoutePath(c.path)
		if ok != (c.server != notRoute) || (ok && got != c.server) || (!ok && got != "") {
			t.Errorf("ParseRoutePath(%q) = %q, %v; want %q", c.path, got, ok, c.server)
		}
		if ok {
			if back, ok := wire.ParseRoutePath(wire.RoutePath(got)); !ok || back != got {
				t.Errorf("ParseRoutePath(RoutePath(%q)) = %q, %v", got, back, ok)
			}
		}
	}
	if got := wire.RoutePath("Gmail"); got != "/Gmail/mcp" {
		t.Errorf("RoutePath = %q", got)
	}
	if got := wire.RoutePath(""); got != "/mcp" || wire.RootPath != "/mcp" {
		t.Errorf("RoutePath(root) = %q", got)
	}
}

func TestParseMetadataPath(t *testing.T) {
	for _, c := range []struct {
		path   string
		server string
	}{
		{"/.well-known/oauth-protected-resource/Gmail/mcp", "Gmail"},
		{"/.well-known/oauth-protected-resource/Gmail/mcp/", notRoute},
		{"/.well-known/oauth-protected-resource", notRoute},
		{"/.well-known/oauth-protected-resource/", notRoute},
		{"/.well-known/oauth-protected-resource/a.b/mcp", notRoute},
		{"/.well-known/oauth-protected-resourceX/Gmail/mcp", notRoute},
		{"/Gmail/mcp", notRoute},
		{"/.well-known/oauth-protected-resource/mcp", ""}, // the root aggregate
		{"/.well-known/oauth-protected-resource/mcp/", notRoute},
	} {
		got, ok := wire.ParseMetadataPath(c.path)
		if ok != (c.server != notRoute) || (ok && got != c.server) || (!ok && got != "") {
			t.Errorf("ParseMetadataPath(%q) = %q, %v; want %q", c.path, got, ok, c.server)
		}
	}
}

// TestPublicBase holds the cases of the former authorize.PublicBase test
// (moved) and the one normalisation rule the three copies now share.
func TestPublicBase(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://gw.example.com", "https://gw.example.com"},
		{"https://gw.example.com/", "https://gw.example.com"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"HTTPS://gw.example.com", "https://gw.example.com"},
		// One rule: host lower-cased, default port dropped (the copies in
		// controlplane/authorize and controlplane/oauth differed here).
		{"https://GW.Example.COM", "https://gw.example.com"},
		{"HTTPS://GW.Example.COM:443/", "https://gw.example.com"},
		{"http://gw.example.com:80", "http://gw.example.com"},
		{"http://gw.example.com:443", "http://gw.example.com:443"},
		{"https://gw.example.com:80", "https://gw.example.com:80"},
		{"http://[::1]:80", "http://[::1]"},
		{"http://[::1]:8080", "http://[::1]:8080"},
		{"", ""},
		{"gw.example.com", ""},
		{"/relative", ""},
		{"ftp://gw.example.com", ""},
		{"https://", ""},
		{"https://:443", ""},
		{"https://gw.example.com/base", ""},
		{"https://gw.example.com//", ""},
		{"https://gw.example.com?x=1", ""},
		{"https://gw.example.com/?", ""},
		{"https://gw.example.com#f", ""},
		{"https://gw.example.com#", ""},
		{"https://user:pw@gw.example.com", ""},
		{"https://gw.example.com\"", ""},
		{"https://gw.example.com\\", ""},
		{"https://gw example.com", ""},
		{"http://[fe80::1%25eth0]", ""},
		{"mailto:a@b", ""},
	} {
		got, err := wire.PublicBase(c.in)
		if c.want == "" {
			if !errors.Is(err, wire.ErrPublicBase) || got != "" {
				t.Errorf("PublicBase(%q) = %q, %v; want ErrPublicBase", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("PublicBase(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		if again, err := wire.PublicBase(got); err != nil || again != got {
			t.Errorf("PublicBase(%q) = %q, %v; not a fixed point", got, again, err)
		}
	}
}

func TestResourceURLs(t *testing.T) {
	for _, c := range []struct{ base, server, resource, metadata string }{
		{"https://gw.example.com", "Gmail", "https://gw.example.com/Gmail/mcp", "https://gw.example.com/.well-known/oauth-protected-resource/Gmail/mcp"},
		{"HTTPS://GW.Example.COM:443/", "Gmail", "https://gw.example.com/Gmail/mcp", "https://gw.example.com/.well-known/oauth-protected-resource/Gmail/mcp"},
		{"http://127.0.0.1:8080", "a_b-c", "http://127.0.0.1:8080/a_b-c/mcp", "http://127.0.0.1:8080/.well-known/oauth-protected-resource/a_b-c/mcp"},
	} {
		if got := wire.ResourceURL(c.base, c.server); got != c.resource {
			t.Errorf("ResourceURL(%q, %q) = %q, want %q", c.base, c.server, got, c.resource)
		}
		if got := wire.ResourceMetadataURL(c.base, c.server); got != c.metadata {
			t.Errorf("ResourceMetadataURL(%q, %q) = %q, want %q", c.base, c.server, got, c.metadata)
		}
	}
}

func TestCanonicalResource(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"https://gw.example.com/Gmail/mcp", "https://gw.example.com/Gmail/mcp"},
		{"HTTPS://GW.example.com:443/Gmail/mcp/", "https://gw.example.com/Gmail/mcp"},
		{"https://gw.example.com/Gmail/mcp?x=1", "https://gw.example.com/Gmail/mcp"},
		{"http://gw.example.com:80/x/mcp", "http://gw.example.com/x/mcp"},
		{"https://gw.example.com/Gmail/mcp#f", ""},
		{"https://u@gw.example.com/Gmail/mcp", ""},
		{"ftp://gw.example.com/Gmail/mcp", ""},
		{"/Gmail/mcp", ""},
		{"", ""},
	} {
		got, ok := wire.CanonicalResource(c.in)
		if ok != (c.want != "") || got != c.want {
			t.Errorf("CanonicalResource(%q) = %q, %v; want %q", c.in, got, ok, c.want)
		}
	}
}

func TestResourceServer(t *testing.T) {
	const base = "https://gw.example.com"
	for _, c := range []struct{ base, in, want string }{
		{base, "https://gw.example.com/Gmail/mcp", "Gmail"},
		{base, "HTTPS://GW.EXAMPLE.COM:443/Gmail/mcp/", "Gmail"},
		{base, "https://gw.example.com/Gmail/mcp?x=1", "Gmail"},
		{base, "https://gw.example.com/%47mail/mcp", "Gmail"},
		{"HTTPS://GW.example.com:443", "https://gw.example.com/Gmail/mcp", "Gmail"},
		{base, "https://gw.example.com/Nope/mcp", "Nope"}, // by form; existence is checked later
		{base, "https://gw.example.com/a.b/mcp", notRoute},
		{base, "https://gw.example.com/a%2Fb/mcp", notRoute},
		{base, "https://gw.example.com/x%2Fmcp", notRoute},
		{base, "https://gw.example.com/Gmail/mcp//", notRoute},
		{base, "https://gw.example.com//mcp", notRoute},
		{base, "https://gw.example.com/mcp", ""}, // the root aggregate
		{base, "HTTPS://GW.EXAMPLE.COM:443/mcp/", ""},
		{base, "https://gw.example.com/mcp/mcp", "mcp"},
		{base, "https://gw.example.com/MCP", notRoute},
		{base, "https://gw.example.com/a/b/mcp", notRoute},
		{base, "https://other.example.com/Gmail/mcp", notRoute},
		{base, "https://gw.example.com.evil/Gmail/mcp", notRoute},
		{base, "http://gw.example.com/Gmail/mcp", notRoute},
		{base, "https://gw.example.com/Gmail/mcp#f", notRoute},
		{base, "", notRoute},
	} {
		got, ok := wire.ResourceServer(c.base, c.in)
		if ok != (c.want != notRoute) || (ok && got != c.want) || (!ok && got != "") {
			t.Errorf("ResourceServer(%q, %q) = %q, %v; want %q", c.base, c.in, got, ok, c.want)
		}
	}
}

func TestRelay(t *testing.T) {
	for _, c := range []struct {
		path string
		want bool
	}{
		{"/.well-known/oauth-authorization-server", true},
		{"/.well-known/openid-configuration", true},
		{"/register", true},
		{"/authorize", true},
		{"/token", true},
		{"/revoke", true},
		{"/signin", true},
		{"/consent", true},
		{"/oauth", true},
		{"/oauth/callback", true},
		{"/connections", true},
		{"/connections/x", true},
		{"/.well-known/oauth-protected-resource/Gmail/mcp", false},
		{"/Gmail/mcp", false},
		{"/token/", false},
		{"/oauthx", false},
		{"/relay/token", false},
		{"/", false},
	} {
		if got := wire.IsRelayPath(c.path); got != c.want {
			t.Errorf("IsRelayPath(%q) = %v, want %v", c.path, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		want bool
	}{
		{wire.HeaderPublicURL, true},
		{wire.HeaderClientAuthorization, true},
		{wire.HeaderClientAddress, true},
		{"x-mcpgate-public-url", true},
		{"X-MCPGATE-ANYTHING", true},
		{wire.HeaderAPIKey, false},
		{"x-mcpgate-api-key", false},
		{"Authorization", false},
		{"X-Mcp-Gmail-Authorization", false},
	} {
		if got := wire.IsGatewayHeader(c.name); got != c.want {
			t.Errorf("IsGatewayHeader(%q) = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestToolVisible holds the cases of the former authorize.ToolAllowed test
// (moved): one rule for tools/call (control plane) and tools/list (data
// plane).
func TestToolVisible(t *testing.T) {
	for _, c := range []struct {
		allowed, disallowed []string
		tool                string
		want                bool
	}{
		{nil, nil, "x", true},
		{nil, []string{"x"}, "x", false},
		{nil, []string{"x"}, "y", true},
		{[]string{"x"}, nil, "x", true},
		{[]string{"x"}, nil, "y", false},
		{[]string{"x"}, []string{"x"}, "x", false},
		{[]string{"x"}, nil, "X", false},
		{nil, nil, "", true},
		{[]string{"x"}, nil, "", false},
	} {
		if got := wire.ToolVisible(c.allowed, c.disallowed, c.tool); got != c.want {
			t.Errorf("ToolVisible(%v, %v, %q) = %v", c.allowed, c.disallowed, c.tool, got)
		}
	}
}

func TestHeaderValidity(t *testing.T) {
	for _, c := range []struct {
		v    string
		want bool
	}{
		{"Bearer abc", true},
		{"a\tb", true},
		{"", true},
		{" padded ", true}, // surrounding whitespace is the caller's rule
		{"caf\xc3\xa9", true},
		{"a\r\nX-Injected: 1", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"a\x7fb", false},
	} {
		if got := wire.ValidHeaderValue(c.v); got != c.want {
			t.Errorf("ValidHeaderValue(%q) = %v, want %v", c.v, got, c.want)
		}
	}
	for _, c := range []struct {
		n    string
		want bool
	}{
		{"X-API-Key", true},
		{"x!#$%&'*+-.^_`|~1", true},
		{"", false},
		{"a b", false},
		{"a:b", false},
		{"a\"b", false},
		{"é", false},
	} {
		if got := wire.ValidHeaderName(c.n); got != c.want {
			t.Errorf("ValidHeaderName(%q) = %v, want %v", c.n, got, c.want)
		}
	}
}

func TestPassthroughHeader(t *testing.T) {
	if got := wire.PassthroughHeader("Gmail"); got != "X-Mcp-Gmail-Authorization" {
		t.Errorf("PassthroughHeader = %q", got)
	}
	for _, c := range []struct {
		name string
		want bool
	}{
		{wire.PassthroughHeader("Gmail"), true},
		{"x-mcp-gmail-authorization", true},
		{"X-MCP-a_b-c-Authorization", true},
		{"X-Mcp--Authorization", true},
		{"X-Mcp-Authorization", true},
		{"Authorization", false},
		{"X-Mcp-Gmail-Auth", false},
		{wire.HeaderAPIKey, false},
	} {
		if got := wire.IsPassthroughHeader(c.name); got != c.want {
			t.Errorf("IsPassthroughHeader(%q) = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestFoldEqual: header names and auth schemes fold ASCII letters only
// (found by FuzzExtractCredentials: strings.EqualFold matched "İ" and the
// Kelvin sign to ASCII letters, which no HTTP peer does).
func TestFoldEqual(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"X-Mcp-Gmail-Authorization", "x-mcp-gmail-authorization", true},
		{"Bearer", "bEARER", true},
		{"", "", true},
		{"Kube", "\u212aube", false}, // KELVIN SIGN
		{"i", "\u0130", false},       // LATIN CAPITAL LETTER I WITH DOT ABOVE
		{"ſ", "s", false},            // LATIN SMALL LETTER LONG S
		{"a", "ab", false},
		{"X-Mcp-A-Authorization", "X-Mcp-B-Authorization", false},
	} {
		if got := wire.FoldEqual(c.a, c.b); got != c.want {
			t.Errorf("FoldEqual(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestRootAggregateURLs(t *testing.T) {
	const base = "HTTPS://GW.Example.com:443/"
	if got := wire.ResourceURL(base, ""); got != "https://gw.example.com/mcp" {
		t.Errorf("ResourceURL(root) = %q", got)
	}
	if got := wire.ResourceMetadataURL(base, ""); got != "https://gw.example.com/.well-known/oauth-protected-resource/mcp" {
		t.Errorf("ResourceMetadataURL(root) = %q", got)
	}
}

func TestValidToolName(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"getUser", true},
		{"DATA_EXPORT_v2", true},
		{"admin.tools.list", true},
		{"a-b", true},
		{"echo__echo", true},
		{"-", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{"user-profile/update", false}, // '/' was dropped from the final rule
		{"a b", false},
		{"a,b", false},
		{"é", false},
		{"a\x00", false},
		{"a:b", false},
	} {
		if got := wire.ValidToolName(c.in); got != c.want {
			t.Errorf("ValidToolName(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestExposedName(t *testing.T) {
	renames := map[string]string{"search": "find", "add": "notes__plus"}
	for _, c := range []struct{ upstream, want string }{
		{"echo", "notes__echo"},
		{"search", "find"},
		{"add", "notes__plus"},
		{"", "notes__"},
	} {
		if got := wire.ExposedName("notes__", renames, c.upstream); got != c.want {
			t.Errorf("ExposedName(%q) = %q, want %q", c.upstream, got, c.want)
		}
	}
	if got := wire.ExposedName(wire.DefaultToolPrefix("echo"), nil, "echo"); got != "echo__echo" {
		t.Errorf("default ExposedName = %q", got)
	}
	for _, c := range []struct {
		exposed, want string
		ok            bool
	}{
		{"notes__echo", "echo", true},
		{"find", "search", true},
		{"notes__plus", "add", true},
		{"notes__search", "", false}, // renamed away: only "find" names it
		{"notes__add", "", false},
		{"notes__", "", false},
		{"echo", "", false},
		{"Notes__echo", "", false},
	} {
		got, ok := wire.UpstreamName("notes__", renames, c.exposed)
		if got != c.want || ok != c.ok {
			t.Errorf("UpstreamName(%q) = %q, %v; want %q, %v", c.exposed, got, ok, c.want, c.ok)
		}
	}
}
