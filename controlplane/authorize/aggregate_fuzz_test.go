package authorize_test

import (
	"errors"
	"testing"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
)

// FuzzAggregateCall checks how Decide routes a tools/call of an exposed
// name (the client's, untrusted) on the root aggregate and on a virtual
// server: to exactly the member and upstream name authorize.Resolve gives
// over the aggregate's namings (for the root, every granted server with
// <server>__; for the virtual server, its members whose server exists,
// minus tools its filter hides), and to no member otherwise.
func FuzzAggregateCall(f *testing.F) {
	for _, s := range []string{"echo__echo", "notes__add", "n.add", "find", "echo__search", "Gmail__", "__", "broken__x", "echo____x", "gone__x", "pass__a__b", ""} {
		f.Add(s)
	}
	st := aggregateState()
	team := st.virtual["team"]
	var rootNamings, teamNamings []authorize.Naming
	var teamMembers []*configv1.VirtualServerMember
	for _, srv := range st.Servers() {
		n := srv.Def.GetName()
		rootNamings = append(rootNamings, authorize.Naming{Source: n, Prefix: wire.DefaultToolPrefix(n)})
	}
	for _, m := range team.GetMembers() {
		if _, ok := st.servers[m.GetServer()]; ok {
			teamNamings = append(teamNamings, authorize.Naming{Source: m.GetServer(), Prefix: authorize.MemberPrefix(team, m), Renames: m.GetRenames()})
			teamMembers = append(teamMembers, m)
		}
	}
	f.Fuzz(func(t *testing.T, exposed string) {
		for _, c := range []struct {
			route, key string
			namings    []authorize.Naming
			filter     func(i int, up string) bool
		}{
			{"", keyAlAgg, rootNamings, func(int, string) bool { return true }},
			{"team", keyVic, teamNamings, func(i int, up string) bool {
				return wire.ToolVisible(teamMembers[i].GetIncludeTools(), teamMembers[i].GetExcludeTools(), up)
			}},
		} {
			i, up, ok := authorize.Resolve(c.namings, exposed)
			ok = ok && c.filter(i, up)
			d, err := authorize.Decide(st, now, aggReq(c.route, c.key, "tools/call", exposed))
			if err != nil {
				if !ok || c.namings[i].Source != "broken" || !errors.Is(err, authorize.ErrMisconfigured) {
					t.Fatalf("%q on %q: %v", exposed, c.route, err)
				}
				continue
			}
			if d.Response.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
				t.Fatalf("%q on %q: %v", exposed, c.route, d.Response)
			}
			ms := d.Response.GetAggregate().GetMembers()
			if !ok {
				if len(ms) != 0 {
					t.Fatalf("%q on %q resolved to nothing but Decide chose %v", exposed, c.route, ms)
				}
				continue
			}
			if len(ms) != 1 || ms[0].GetServer() != c.namings[i].Source || ms[0].GetUpstreamName() != up {
				t.Fatalf("%q on %q: members %v, want %s/%s", exposed, c.route, ms, c.namings[i].Source, up)
			}
		}
	})
}
