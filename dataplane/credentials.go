package dataplane

import (
	"net/http"
	"strings"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// Admission-credential headers. They are read here and never forwarded.
const (
	headerAPIKey        = wire.HeaderAPIKey
	headerLiteLLMAPIKey = wire.HeaderLiteLLMAPIKey
	apiKeyPrefix        = "mcpg_"
)

// extractCredentials reads what the client presented for route. Query-string
// tokens are ignored on purpose. The first API key found wins in the order
// X-MCPGate-API-Key, x-litellm-api-key, Authorization: Bearer mcpg_….
func extractCredentials(h http.Header, route string) *authorizev1.Credentials {
	c := &authorizev1.Credentials{}
	if k := strings.TrimSpace(first(valuesFold(h, headerAPIKey))); k != "" {
		c.ApiKey = k
	}
	if k := strings.TrimSpace(first(valuesFold(h, headerLiteLLMAPIKey))); k != "" && c.ApiKey == "" {
		if tok, ok := bearerValue(k); ok {
			k = tok
		}
		c.ApiKey = k
	}
	if vs := valuesFold(h, "Authorization"); len(vs) > 0 {
		tok, ok := bearerValue(vs[0])
		switch {
		case len(vs) == 1 && !isBearerScheme(vs[0]):
			// Another scheme (Basic, Digest…) is an unsupported method, not
			// a bad token: RFC 6750 §3.1 says challenge without an error.
		case !ok || len(vs) > 1:
			c.MalformedAuthorization = true
		case strings.HasPrefix(tok, apiKeyPrefix):
			if c.ApiKey == "" {
				c.ApiKey = tok
			}
		default:
			c.BearerToken = tok
		}
	}
	if v := passthroughValue(h, route); v != "" {
		c.PassthroughAuthorization = v
	}
	return c
}

// isBearerScheme reports whether an Authorization value uses the Bearer
// scheme, whatever follows it.
func isBearerScheme(v string) bool {
	scheme, _, _ := strings.Cut(strings.TrimSpace(v), " ")
	return wire.FoldEqual(scheme, "Bearer")
}

// bearerValue returns the token of "Bearer <token>" (scheme
// case-insensitive); ok is false for any other shape, including an empty
// token.
func bearerValue(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !wire.FoldEqual(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

// valuesFold returns all values of the header named name, whatever the
// case of the map keys (requests from net/http are canonical; others may
// not be).
func valuesFold(h http.Header, name string) []string {
	var out []string
	for k, vs := range h {
		if wire.FoldEqual(k, name) {
			out = append(out, vs...)
		}
	}
	return out
}

func first(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

// passthroughValue is the X-MCP-<Server>-Authorization value for route,
// matching the server name case-insensitively.
func passthroughValue(h http.Header, route string) string {
	want := wire.PassthroughHeader(route)
	for k, vs := range h {
		if wire.FoldEqual(k, want) && len(vs) > 0 {
			return strings.TrimSpace(vs[0])
		}
	}
	return ""
}
