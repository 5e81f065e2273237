package oauth

import (
	"slices"

	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// routeDef is what the authorization server needs of a route: a server's
// (/<server>/mcp), a virtual server's (/<virtual>/mcp) or the root
// aggregate's (/mcp, name ""). Tokens are issued per route: a token for an
// aggregate's resource URL is valid on that aggregate (for all its
// members' decisions) and nowhere else.
type routeDef struct {
	name string
	// server is the route's server; nil on an aggregate route.
	server *store.Server
	scopes []string
	// title names the route on the consent page.
	title string
}

// lookupRoute returns the route called name: "" is the root aggregate,
// which always exists; otherwise a server, else a virtual server (one
// namespace).
func (s *Server) lookupRoute(name string) (routeDef, bool) {
	if name == "" {
		return routeDef{title: "all your servers"}, true
	}
	if srv, ok := s.st.Server(name); ok {
		return routeDef{name: name, server: srv, scopes: slices.Clone(srv.Def.GetScopes()), title: name}, true
	}
	if vs, ok := s.st.VirtualServer(name); ok {
		return routeDef{name: name, scopes: slices.Clone(vs.GetScopes()), title: name + " (a virtual server)"}, true
	}
	return routeDef{}, false
}

// mayUseRoute reports whether principal may use the route called name: a
// server or virtual server it is granted (authorize.Granted), or the root
// aggregate when it is granted any server, exactly as Decide decides.
func (s *Server) mayUseRoute(principal, name string) bool {
	if name != "" {
		return s.mayUse(principal, name)
	}
	p, ok := s.st.Principal(principal)
	if !ok {
		return false
	}
	for _, srv := range s.st.Servers() {
		if authorize.Granted(s.st, p, srv.Def.GetName()) {
			return true
		}
	}
	return false
}

// needsUpstreamSignin reports whether rd's tokens need the person's own
// upstream grant first: a server route of an authorization_code server.
// An aggregate's members are connected from the connect page instead
// (their challenge names it), so one member never blocks the others.
func (rd routeDef) needsUpstreamSignin() bool {
	return rd.server != nil && upstreamOAuth(rd.server.Def)
}

// mayConnect reports whether principal may connect its own upstream
// account for server: it may use the server, on its route or through a
// virtual server (authorize.UsableServer).
func (s *Server) mayConnect(principal, server string) bool {
	p, ok := s.st.Principal(principal)
	return ok && authorize.UsableServer(s.st, s.st.VirtualServers(), p, server)
}
