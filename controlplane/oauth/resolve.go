package oauth

import (
	"slices"
	"strings"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// Caps of a requested scope parameter.
const (
	maxRequestedScopes = 50
	maxScopeTokenLen   = 200
)

// requestedScopes checks the form of a scope parameter (RFC 6749 section
// 3.3 scope tokens, at most maxRequestedScopes) and returns its distinct
// tokens; none means all of the route's scopes.
func requestedScopes(scope string) ([]string, bool) {
	if len(scope) > maxScopeLen {
		return nil, false
	}
	out := []string{}
	for _, sc := range strings.Fields(scope) {
		if len(sc) > maxScopeTokenLen || unsafeText(sc) || strings.ContainsAny(sc, `"\`) {
			return nil, false
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, len(out) <= maxRequestedScopes
}

// resolveRequest decides, for a signed-in principal, the route and scopes
// of an authorization request whose resource and scope were only checked
// for form: a route that does not exist answers exactly like one the
// principal may not use (access_denied), so /authorize tells no one which
// routes exist; scopes are checked against the route's only then, and
// auth.Scopes becomes the granted set (none requested means all).
func (s *Server) resolveRequest(principal string, auth *storev1.OAuthAuthorization) (code, desc string, ok bool) {
	rd, found := s.lookupRoute(auth.GetServer())
	if !found || !s.mayUseRoute(principal, auth.GetServer()) {
		return "access_denied", "this account may not use this server", false
	}
	scopes, ok := grantScopesOf(rd.scopes, strings.Join(auth.GetScopes(), " "))
	if !ok {
		return "invalid_scope", "the requested scope is not offered by this server", false
	}
	auth.Scopes = scopes
	return "", "", true
}
