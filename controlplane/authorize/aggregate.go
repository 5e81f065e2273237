package authorize

import (
	"fmt"
	"maps"
	"slices"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// AggregateState is what aggregate routes (the root /mcp and virtual
// servers) read besides State; *store.Store implements it. A State without
// it knows no aggregate route: they are NOT_FOUND like unknown routes.
type AggregateState interface {
	Servers() []*store.Server
	VirtualServer(name string) (*configv1.VirtualServer, bool)
}

// aggMember is one member of an aggregate as configured for a principal.
type aggMember struct {
	srv *store.Server
	// def is the member's AggregateMember without a decision.
	def *authorizev1.AggregateMember
}

// naming is how m exposes its names.
func (m aggMember) naming() Naming {
	return Naming{Source: m.def.GetServer(), Prefix: m.def.GetToolPrefix(), Renames: m.def.GetRenames()}
}

// aggregateMembers returns the members of the root aggregate (vs nil):
// every server p is granted, in name order, with the default prefix
// <server>__; or of virtual server vs: its members whose server exists, in
// configured order, with their configured naming and tool filter.
func aggregateMembers(st State, as AggregateState, p *configv1.Principal, vs *configv1.VirtualServer) []aggMember {
	if vs == nil {
		var out []aggMember
		for _, srv := range as.Servers() {
			name := srv.Def.GetName()
			if Granted(st, p, name) {
				out = append(out, aggMember{srv: srv, def: &authorizev1.AggregateMember{
					Server: name, ToolPrefix: wire.DefaultToolPrefix(name), InstructionsName: name,
				}})
			}
		}
		return out
	}
	out := make([]aggMember, 0, len(vs.GetMembers()))
	for _, m := range vs.GetMembers() {
		srv, ok := st.Server(m.GetServer())
		if !ok {
			continue
		}
		out = append(out, aggMember{srv: srv, def: &authorizev1.AggregateMember{
			Server:           m.GetServer(),
			ToolPrefix:       MemberPrefix(vs, m),
			Renames:          maps.Clone(m.GetRenames()),
			IncludeTools:     slices.Clone(m.GetIncludeTools()),
			ExcludeTools:     slices.Clone(m.GetExcludeTools()),
			InstructionsName: m.GetServer(),
		}})
	}
	return out
}

// MemberPrefix is the tool prefix of virtual server vs's member m: its
// configured tool_prefix when set (even empty), else
// <server><tool_separator>, the separator defaulting to "__".
func MemberPrefix(vs *configv1.VirtualServer, m *configv1.VirtualServerMember) string {
	if m.ToolPrefix != nil {
		return m.GetToolPrefix()
	}
	sep := vs.GetToolSeparator()
	if sep == "" {
		sep = wire.DefaultToolSeparator
	}
	return m.GetServer() + sep
}

// VirtualNamings returns the namings of vs's members, for CheckNaming.
func VirtualNamings(vs *configv1.VirtualServer) []Naming {
	out := make([]Naming, 0, len(vs.GetMembers()))
	for i, m := range vs.GetMembers() {
		out = append(out, Naming{
			Source:  fmt.Sprintf("members[%d] (%s)", i, m.GetServer()),
			Prefix:  MemberPrefix(vs, m),
			Renames: m.GetRenames(),
		})
	}
	return out
}

// decideAggregate is the ALLOW of an aggregate route (virtual server name,
// "" for the root) whose principal (id) may use it: the members' own
// decisions, each made by decideServer exactly as on the member's route.
// tools/call and prompts/get go to the member owning the exposed name
// (Resolve), with the upstream's name; a name no member owns, or a tool the
// virtual server's filter hides, leaves no member (the data plane answers
// "Unknown tool"). AuthorizeRequest.member restricts the members to that
// one. With one targeted member a member that cannot be decided is an
// error, as on its route; otherwise it is left out (Decision.Omitted) so
// that it never breaks the others.
func decideAggregate(st State, base string, id identity, name string, members []aggMember, req *authorizev1.AuthorizeRequest) (Decision, error) {
	resp := &authorizev1.AuthorizeResponse{
		Decision:  authorizev1.Decision_DECISION_ALLOW,
		Principal: id.principal.GetName(),
		KeyPrefix: id.keyPrefix,
		KeyId:     id.keyID,
		Reason:    ReasonAllowed,
		Aggregate: &authorizev1.Aggregate{Name: name},
	}
	d := Decision{Response: resp}
	method := req.GetJsonrpcMethod()
	targets := members
	var upstream string
	resolve := method == "tools/call" || method == "prompts/get"
	if resolve {
		exposed := req.GetToolName()
		if method == "prompts/get" {
			exposed = req.GetPromptName()
		}
		targets = nil
		namings := make([]Naming, len(members))
		for i, m := range members {
			namings[i] = m.naming()
		}
		if i, up, ok := Resolve(namings, exposed); ok &&
			(method != "tools/call" || wire.ToolVisible(members[i].def.GetIncludeTools(), members[i].def.GetExcludeTools(), up)) {
			targets, upstream = members[i:i+1], up
		}
	}
	if m := req.GetMember(); m != "" {
		targets = slices.DeleteFunc(slices.Clone(targets), func(a aggMember) bool { return a.def.GetServer() != m })
	}
	single := resolve || req.GetMember() != ""
	for _, m := range targets {
		server := m.def.GetServer()
		mreq := &authorizev1.AuthorizeRequest{
			Route:         server,
			HttpMethod:    req.GetHttpMethod(),
			JsonrpcMethod: method,
			ClientAddress: req.GetClientAddress(),
			PublicBaseUrl: req.GetPublicBaseUrl(),
			ResourceUri:   req.GetResourceUri(),
			// Credentials stay behind: a passthrough member's credential
			// is sent for one route (X-MCP-<server>-Authorization), never
			// for an aggregate.
		}
		switch method {
		case "tools/call":
			mreq.ToolName = upstream
		case "prompts/get":
			mreq.PromptName = upstream
		}
		md, err := decideServer(st, base, id, m.srv, mreq, nil)
		if err != nil {
			if single {
				return Decision{}, err
			}
			d.Omitted = append(d.Omitted, server)
			continue
		}
		md.connect = wire.ConnectURL(base, server)
		if c := md.Response.GetChallenge(); c != nil && md.Need == NeedNothing {
			c.ConnectUrl = md.connect
		}
		am := m.def
		am.UpstreamName = upstream
		if md.Need == NeedNothing {
			am.Decision = md.Response
		}
		resp.Aggregate.Members = append(resp.Aggregate.Members, am)
		d.Members = append(d.Members, md)
	}
	return d, nil
}

// UsableServer reports whether p may use server on its own route or
// through a virtual server of vss it is granted that has server as a
// member: what the connections page offers to connect (an aggregate
// member's CHALLENGE sends the person there).
func UsableServer(st GroupState, vss []*configv1.VirtualServer, p *configv1.Principal, server string) bool {
	if Granted(st, p, server) {
		return true
	}
	for _, vs := range vss {
		if slices.ContainsFunc(vs.GetMembers(), func(m *configv1.VirtualServerMember) bool { return m.GetServer() == server }) &&
			Granted(st, p, vs.GetName()) {
			return true
		}
	}
	return false
}
