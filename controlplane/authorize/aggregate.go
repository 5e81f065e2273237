package authorize

import (
	"fmt"
	"maps"
	"slices"
	"strings"

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
	// vm is the virtual server's member entry; nil on the root aggregate.
	vm     *configv1.VirtualServerMember
	prefix string
}

// naming is how m exposes its names.
func (m aggMember) naming() Naming {
	return Naming{Source: m.srv.Def.GetName(), Prefix: m.prefix, Renames: m.vm.GetRenames()}
}

// def is m's AggregateMember, without a decision.
func (m aggMember) def() *authorizev1.AggregateMember {
	name := m.srv.Def.GetName()
	return &authorizev1.AggregateMember{
		Server:           name,
		ToolPrefix:       m.prefix,
		Renames:          maps.Clone(m.vm.GetRenames()),
		IncludeTools:     slices.Clone(m.vm.GetIncludeTools()),
		ExcludeTools:     slices.Clone(m.vm.GetExcludeTools()),
		InstructionsName: name,
	}
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
				out = append(out, aggMember{srv: srv, prefix: wire.DefaultToolPrefix(name)})
			}
		}
		return out
	}
	out := make([]aggMember, 0, len(vs.GetMembers()))
	for _, m := range vs.GetMembers() {
		if srv, ok := st.Server(m.GetServer()); ok {
			out = append(out, aggMember{srv: srv, vm: m, prefix: MemberPrefix(vs, m)})
		}
	}
	return out
}

// rootOwner resolves exposed on the root aggregate without listing the
// servers: its default prefixes are <server>__, so the owner's name is
// what precedes one of exposed's "__" separators. Exactly one granted
// server must match (with prefix-free names, as the admin API keeps them,
// at most one can): the same answer as Resolve over every granted
// server's naming.
func rootOwner(st State, p *configv1.Principal, exposed string) (aggMember, string, bool) {
	var (
		owner    aggMember
		upstream string
		found    bool
	)
	sep := wire.DefaultToolSeparator
	for i := 0; i < len(exposed); {
		j := strings.Index(exposed[i:], sep)
		if j < 0 {
			break
		}
		name, up := exposed[:i+j], exposed[i+j+len(sep):]
		if srv, ok := st.Server(name); ok && up != "" && Granted(st, p, name) {
			if found {
				return aggMember{}, "", false
			}
			owner, upstream, found = aggMember{srv: srv, prefix: name + sep}, up, true
		}
		i += j + 1
	}
	return owner, upstream, found
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

// decideAggregate is the ALLOW of an aggregate route (virtual server vs,
// nil for the root) for a principal (id) that may use it, and whether it
// may: the root aggregate needs a granted server, which decideAggregate
// finds (a virtual server's own grant is checked before). The members'
// own decisions are made by decideServer exactly as on each member's
// route. tools/call and prompts/get go to the member owning the exposed
// name (Resolve), with the upstream's name; a name no member owns, or a
// tool the virtual server's filter hides, leaves no member (the data plane
// answers "Unknown tool"). AuthorizeRequest.member restricts the members
// to that one. With one targeted member a member that cannot be decided is
// an error, as on its route; otherwise it is left out (Decision.Omitted)
// so that it never breaks the others.
func decideAggregate(st State, as AggregateState, base string, id identity, vs *configv1.VirtualServer, req *authorizev1.AuthorizeRequest) (Decision, bool, error) {
	method := req.GetJsonrpcMethod()
	resolve := method == "tools/call" || method == "prompts/get"
	var (
		targets  []aggMember
		upstream string
		granted  = vs != nil
	)
	exposed := req.GetToolName()
	if method == "prompts/get" {
		exposed = req.GetPromptName()
	}
	switch {
	case resolve && vs == nil:
		if m, up, ok := rootOwner(st, id.principal, exposed); ok {
			targets, upstream, granted = []aggMember{m}, up, true
		} else {
			granted = len(aggregateMembers(st, as, id.principal, nil)) > 0
		}
	case resolve:
		members := aggregateMembers(st, as, id.principal, vs)
		namings := make([]Naming, len(members))
		for i, m := range members {
			namings[i] = m.naming()
		}
		if i, up, ok := Resolve(namings, exposed); ok &&
			(method != "tools/call" || wire.ToolVisible(members[i].vm.GetIncludeTools(), members[i].vm.GetExcludeTools(), up)) {
			targets, upstream = members[i:i+1], up
		}
	default:
		targets = aggregateMembers(st, as, id.principal, vs)
		granted = granted || len(targets) > 0
	}
	if !granted {
		return Decision{}, false, nil
	}
	resp := &authorizev1.AuthorizeResponse{
		Decision:  authorizev1.Decision_DECISION_ALLOW,
		Principal: id.principal.GetName(),
		KeyPrefix: id.keyPrefix,
		KeyId:     id.keyID,
		Reason:    ReasonAllowed,
		Aggregate: &authorizev1.Aggregate{Name: vs.GetName()},
	}
	d := Decision{Response: resp}
	if m := req.GetMember(); m != "" {
		targets = slices.DeleteFunc(targets, func(a aggMember) bool { return a.srv.Def.GetName() != m })
	}
	single := resolve || req.GetMember() != ""
	for _, m := range targets {
		server := m.srv.Def.GetName()
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
		md, err := decideServer(st, base, id, m.srv, vs.GetName(), mreq, nil)
		if err != nil {
			if single {
				return Decision{}, true, err
			}
			d.Omitted = append(d.Omitted, server)
			continue
		}
		// The connect page is named by a CHALLENGE only (built only then).
		if c := md.Response.GetChallenge(); c != nil && md.Need == NeedNothing {
			c.ConnectUrl = wire.ConnectURL(base, server)
		} else if md.Need == NeedVaultGrant {
			md.connect = wire.ConnectURL(base, server)
		}
		am := m.def()
		am.UpstreamName = upstream
		if md.Need == NeedNothing {
			am.Decision = md.Response
		}
		resp.Aggregate.Members = append(resp.Aggregate.Members, am)
		d.Members = append(d.Members, md)
	}
	return d, true, nil
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
