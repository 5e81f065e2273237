package authorize_test

import (
	"slices"
	"strings"
	"testing"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
)

// FuzzGranted: Granted and EffectiveServers are one rule. For any
// principal (own servers, admin-set and asserted groups) and group
// definitions, each given as comma-separated names ("g=a,b;h=c" for
// groups), a server is granted exactly when EffectiveServers lists it or
// "*", and every listed source is the principal itself or one of its
// groups that exists.
func FuzzGranted(f *testing.F) {
	f.Add("notes", "release", "eng", "release=github;eng=jira,notes", "github")
	f.Add("", "all", "", "all=*", "jira")
	f.Add("x", "ghost", "ghost", "", "x")
	split := func(s string) []string {
		if s == "" {
			return nil
		}
		return strings.Split(s, ",")
	}
	f.Fuzz(func(t *testing.T, own, admin, assertedList, groups, server string) {
		s := newState()
		for _, def := range strings.Split(groups, ";") {
			name, servers, _ := strings.Cut(def, "=")
			s.groups[name] = &configv1.Group{Name: name, Servers: split(servers)}
		}
		p := &configv1.Principal{Name: "p", Servers: split(own), Groups: split(admin), AssertedGroups: asserted("idp", split(assertedList)...)}
		granted := authorize.Granted(s, p, server)
		eff := authorize.EffectiveServers(s, p)
		listed := slices.ContainsFunc(eff, func(e *configv1.EffectiveServer) bool {
			return e.GetServer() == server || e.GetServer() == "*"
		})
		if granted != listed {
			t.Fatalf("Granted(%q) = %v, EffectiveServers %v", server, granted, eff)
		}
		if granted != authorize.Granted(s, p, server) {
			t.Fatal("Granted not deterministic")
		}
		for i, e := range eff {
			if i > 0 && eff[i-1].GetServer() >= e.GetServer() {
				t.Fatalf("not sorted, or duplicated: %v", eff)
			}
			for _, src := range e.GetSources() {
				if src.GetGroup() == "" {
					if !slices.Contains(p.GetServers(), e.GetServer()) {
						t.Fatalf("own source for %q not in own servers", e.GetServer())
					}
					continue
				}
				g, ok := s.groups[src.GetGroup()]
				if !ok || !slices.Contains(g.GetServers(), e.GetServer()) {
					t.Fatalf("source group %q does not grant %q", src.GetGroup(), e.GetServer())
				}
			}
		}
	})
}
