// Package wire is the one copy of the contract between MCP clients, the data
// plane and the control plane that is not a protobuf message: route paths
// (/<server>/mcp), the protected-resource metadata URL, the public base URL
// rule, the server-name grammar, the OAuth relay (prefix, paths, headers),
// the tool-visibility rule and HTTP header validity. Both planes import it;
// it imports only the standard library and golang.org/x/net/http/httpguts
// (deps_test.go), so the data plane links nothing of the control plane
// through it.
package wire

import (
	"errors"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Route paths.
const (
	// MCPSuffix ends every MCP route path: /<server>/mcp.
	MCPSuffix = "/mcp"
	// PRMPrefix is the RFC 9728 well-known prefix; a route's protected-resource
	// metadata lives at PRMPrefix + RoutePath(server).
	PRMPrefix = "/.well-known/oauth-protected-resource"
	// RootPath is the root aggregate's MCP endpoint: every server the
	// principal is granted, as one server. Its route name is "".
	RootPath = MCPSuffix
)

// Server names.
const (
	// MaxServerNameLen bounds a server (and principal) name.
	MaxServerNameLen = 64
	// ServerNameRule is ValidServerName's grammar, for error messages.
	ServerNameRule = "must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
)

// ValidServerName reports whether s matches ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$,
// the grammar of server names (the admin API refuses any other, so no route
// can name one) and of principal names. Such a name never needs escaping in a
// URL path and is never ".", ".." or ".well-known".
func ValidServerName(s string) bool {
	if s == "" || len(s) > MaxServerNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '-' || c == '_') && i > 0:
		default:
			return false
		}
	}
	return true
}

// RoutePath is the path of server's MCP endpoint, /<server>/mcp, or RootPath
// for the root aggregate's route "".
func RoutePath(server string) string {
	if server == "" {
		return RootPath
	}
	return "/" + url.PathEscape(server) + MCPSuffix
}

// ParseRoutePath returns the route named by an (unescaped) request path:
// the server or virtual server of /<server>/mcp or /<server>/mcp/, where
// <server> is a valid server name, or "" for the root aggregate's /mcp or
// /mcp/.
func ParseRoutePath(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return "", false
	}
	rest = strings.TrimSuffix(rest, "/")
	if "/"+rest == RootPath {
		return "", true
	}
	server, ok := strings.CutSuffix(rest, MCPSuffix)
	if !ok || !ValidServerName(server) {
		return "", false
	}
	return server, true
}

// ParseMetadataPath returns the route whose protected-resource metadata an
// (unescaped) request path names: exactly PRMPrefix + RoutePath(route), no
// trailing slash ("" for the root aggregate's PRMPrefix + "/mcp").
func ParseMetadataPath(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, PRMPrefix)
	if !ok || strings.HasSuffix(rest, "/") {
		return "", false
	}
	return ParseRoutePath(rest)
}

// ErrPublicBase: a public base URL is not an absolute http(s) origin.
var ErrPublicBase = errors.New("public base URL must be an absolute http(s) origin")

// PublicBase is the one rule for a gateway's public base URL: an absolute
// http or https URL with a host (no IPv6 zone), no user info, no path beyond
// "/", no query or fragment (not even an empty one), and none of the
// characters space, tab, CR, LF, '"' or '\' (it is quoted in challenges).
// It returns scheme://host[:port] with scheme and host lower-cased and the
// scheme's default port dropped, so one origin spelled two ways gives one
// base, one resource URL (the audience of the gateway's access tokens) and
// one metadata URL.
func PublicBase(raw string) (string, error) {
	if strings.ContainsAny(raw, " \t\r\n\"\\#") {
		return "", ErrPublicBase
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Hostname() == "" ||
		strings.Contains(u.Host, "%") || u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") ||
		u.RawPath != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", ErrPublicBase
	}
	return origin(u.Scheme, u.Host), nil
}

// origin lower-cases scheme and host and drops the scheme's default port.
func origin(scheme, host string) string {
	scheme = strings.ToLower(scheme)
	host = strings.ToLower(host)
	switch scheme {
	case "http":
		host = strings.TrimSuffix(host, ":80")
	case "https":
		host = strings.TrimSuffix(host, ":443")
	}
	return scheme + "://" + host
}

// ResourceURL is the canonical resource URL (RFC 8707) of server's route,
// <base>/<server>/mcp (<base>/mcp for the root aggregate, server ""): the resource the metadata document names and the
// audience the gateway's access tokens are issued for and checked against.
// base goes through PublicBase's normalisation (kept as is when invalid).
func ResourceURL(base, server string) string {
	if b, err := PublicBase(base); err == nil {
		base = b
	}
	return base + RoutePath(server)
}

// ResourceMetadataURL is the RFC 9728 metadata URL of server's route,
// <base>/.well-known/oauth-protected-resource/<server>/mcp (…/mcp for the
// root aggregate, server ""), the URL of the
// gateway's Bearer challenges. base is normalised like ResourceURL's.
func ResourceMetadataURL(base, server string) string {
	if b, err := PublicBase(base); err == nil {
		base = b
	}
	return base + PRMPrefix + RoutePath(server)
}

// CanonicalResource canonicalises a resource indicator (RFC 8707): an
// absolute http(s) URL without user info or fragment; scheme and host
// lower-cased, the default port, any query and one trailing slash dropped.
func CanonicalResource(raw string) (string, bool) {
	if raw == "" || strings.Contains(raw, "#") {
		return "", false
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", false
	}
	return origin(u.Scheme, u.Host) + strings.TrimSuffix(u.EscapedPath(), "/"), true
}

// ResourceServer returns the route a resource indicator names by its form,
// <base>/<server>/mcp (compared after CanonicalResource), whether or not that
// server or virtual server exists, or "" for the root aggregate's
// <base>/mcp. The name must be a valid server name.
func ResourceServer(base, raw string) (string, bool) {
	res, ok := CanonicalResource(raw)
	if !ok {
		return "", false
	}
	b, ok := CanonicalResource(base)
	if !ok {
		return "", false
	}
	if res == b+RootPath {
		return "", true
	}
	rest, ok := strings.CutPrefix(res, b+"/")
	if !ok {
		return "", false
	}
	seg, ok := strings.CutSuffix(rest, MCPSuffix)
	if !ok || strings.Contains(seg, "/") {
		return "", false
	}
	name, err := url.PathUnescape(seg)
	if err != nil || !ValidServerName(name) {
		return "", false
	}
	return name, true
}

// The OAuth relay: the authorization server (issuer = the public base URL)
// lives in the control plane; data planes relay RelayPaths to
// <control plane>RelayPrefix<path>?<query>, authenticated as a data plane,
// with the client's own Authorization moved to HeaderClientAuthorization.
const (
	RelayPrefix = "/relay"
	// HeaderAPIKey carries a gateway API key (admission; never forwarded
	// upstream, relayed to the sign-in endpoints).
	HeaderAPIKey = "X-MCPGate-API-Key"
	// HeaderClientAuthorization is the client's Authorization, relayed.
	HeaderClientAuthorization = "X-MCPGate-Client-Authorization"
	// HeaderPublicURL is the relaying data plane's public base URL.
	HeaderPublicURL = "X-MCPGate-Public-URL"
	// HeaderClientAddress is the client's IP address as the data plane saw it.
	HeaderClientAddress = "X-MCPGate-Client-Address"
)

// IdPCallbackPath is the identity providers' redirect URI on the public
// URL (relayed: it is under /oauth/).
const IdPCallbackPath = "/oauth/idp/callback"

// relayExact are the relayed paths besides those under /oauth/ and
// /connections/.
var relayExact = map[string]bool{
	"/.well-known/oauth-authorization-server": true,
	"/.well-known/openid-configuration":       true,
	"/register":                               true,
	"/authorize":                              true,
	"/token":                                  true,
	"/revoke":                                 true,
	"/signin":                                 true,
	"/consent":                                true,
	"/oauth":                                  true,
	"/connections":                            true,
}

// ConnectURL is the gateway page where a signed-in person connects their
// own upstream account for server (the connections page, which starts the
// upstream sign-in from a CSRF-protected form): the URL an aggregate names
// when a member needs that connection.
func ConnectURL(base, server string) string {
	if b, err := PublicBase(base); err == nil {
		base = b
	}
	return base + "/connections?" + url.Values{"connect": {server}}.Encode()
}

// IsRelayPath reports whether a data plane relays path to the control
// plane's authorization server.
func IsRelayPath(path string) bool {
	return relayExact[path] || strings.HasPrefix(path, "/oauth/") || strings.HasPrefix(path, "/connections/")
}

// IsGatewayHeader reports the headers only a data plane may set towards the
// control plane, so a client's copies are dropped before relaying: every
// X-MCPGate-* header except HeaderAPIKey (which the sign-in endpoints may
// read).
func IsGatewayHeader(name string) bool {
	c := textproto.CanonicalMIMEHeaderKey(name)
	return strings.HasPrefix(c, "X-Mcpgate-") && c != textproto.CanonicalMIMEHeaderKey(HeaderAPIKey)
}

// Admission headers: what a client presents to the gateway. They are read by
// the data plane and never forwarded upstream (and no server's static
// headers may set them).
const (
	// HeaderLiteLLMAPIKey carries a gateway API key, bare or as "Bearer <key>"
	// (LiteLLM's header, for clients configured for it).
	HeaderLiteLLMAPIKey = "X-Litellm-Api-Key"
)

// PassthroughHeader is the header in which a client sends its own upstream
// credential for a passthrough server: X-MCP-<server>-Authorization (matched
// case-insensitively).
func PassthroughHeader(server string) string { return "X-Mcp-" + server + "-Authorization" }

// FoldEqual reports whether a and b are equal under ASCII case folding,
// the way HTTP compares header names and authentication schemes (RFC 9110
// sections 5.1 and 11.1). Unlike strings.EqualFold it folds no other
// letter: "K" (U+212A KELVIN SIGN) is not "k" and "İ" is not "i". Written
// here because the standard library keeps its ASCII fold internal.
func FoldEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// IsPassthroughHeader reports whether name may be a PassthroughHeader:
// X-Mcp-…-Authorization, conservatively including the degenerate
// X-Mcp-Authorization.
func IsPassthroughHeader(name string) bool {
	c := textproto.CanonicalMIMEHeaderKey(name)
	return strings.HasPrefix(c, "X-Mcp-") && strings.HasSuffix(c, "-Authorization")
}

// ToolVisible is the tool-visibility rule of a server with the tool lists
// allowed and disallowed alone (Visible's first step): a tool is listed
// (tools/list) and callable (tools/call) when allowed is empty or names
// it, and disallowed does not.
func ToolVisible(allowed, disallowed []string, tool string) bool {
	ok, _ := serverToolLists(allowed, disallowed, tool)
	return ok
}

// ValidHeaderName reports whether name is an HTTP field name (an RFC 9110
// token).
func ValidHeaderName(name string) bool { return httpguts.ValidHeaderFieldName(name) }

// ValidHeaderValue reports whether v can be sent as an HTTP field value: no
// control characters other than horizontal tab (obs-text is allowed).
func ValidHeaderValue(v string) bool { return httpguts.ValidHeaderFieldValue(v) }

// Tool names (MCP 2025-11-25, SEP-986): 1 to 128 characters of
// [A-Za-z0-9_.-], case-sensitive.
const (
	MaxToolNameLen = 128
	ToolNameRule   = "must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '-' and '.'"
)

// ValidToolName reports whether s is a tool name under the MCP tool-name
// rules (SEP-986 as the 2025-11-25 specification states it): 1 to 128
// characters, each an ASCII letter or digit, '_', '-' or '.'.
func ValidToolName(s string) bool {
	if s == "" || len(s) > MaxToolNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

// DefaultToolSeparator joins a member server's name and an upstream tool or
// prompt name in the default exposed name <server>__<name>.
const DefaultToolSeparator = "__"

// DefaultToolPrefix is the exposed-name prefix of a member server that
// configures none: <server>__.
func DefaultToolPrefix(server string) string { return server + DefaultToolSeparator }

// ExposedName is the name an aggregate exposes an upstream tool or prompt
// under: renames[upstream] when present, else prefix + upstream.
func ExposedName(prefix string, renames map[string]string, upstream string) string {
	if r, ok := renames[upstream]; ok {
		return r
	}
	return prefix + upstream
}

// UpstreamName inverts ExposedName for one member: the upstream name the
// member's exposed name stands for, and whether exposed is one of the
// member's names. A rename target resolves to its source; a name in the
// prefix space resolves by stripping the prefix unless the upstream name it
// leaves is itself renamed (its exposed name is then the rename only).
func UpstreamName(prefix string, renames map[string]string, exposed string) (string, bool) {
	for up, ex := range renames {
		if ex == exposed {
			return up, true
		}
	}
	up, ok := strings.CutPrefix(exposed, prefix)
	if !ok || up == "" {
		return "", false
	}
	if _, renamed := renames[up]; renamed {
		return "", false
	}
	return up, true
}
