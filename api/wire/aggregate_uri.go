package wire

import "strings"

// Resource URIs on an aggregate route (/mcp, /<virtual>/mcp).
//
// A member's resource URI u of server s is exposed as
//
//	mcpgate://<s>/<u>
//
// a prefix form: u is appended unchanged (no escaping), so a URI template
// (resources/templates/list) stays a template whose variables expand the
// same way, and the mapping is exactly reversible on strings: the server
// name is a valid server name (no '/'), so the first '/' after the prefix
// ends it. The form is also a syntactically valid URI for any valid URI u
// (authority = the server name, path = "/" + u).

// AggregateURIScheme is the scheme of exposed resource URIs.
const AggregateURIScheme = "mcpgate"

const aggregateURIPrefix = AggregateURIScheme + "://"

// ExposedURI is the URI under which an aggregate exposes uri of member
// server.
func ExposedURI(server, uri string) string {
	return aggregateURIPrefix + server + "/" + uri
}

// ParseExposedURI inverts ExposedURI: the member server and its own URI.
// It reports false for anything ExposedURI cannot have produced from a
// valid server name.
func ParseExposedURI(exposed string) (server, uri string, ok bool) {
	rest, ok := strings.CutPrefix(exposed, aggregateURIPrefix)
	if !ok {
		return "", "", false
	}
	server, uri, ok = strings.Cut(rest, "/")
	if !ok || !ValidServerName(server) {
		return "", "", false
	}
	return server, uri, true
}
