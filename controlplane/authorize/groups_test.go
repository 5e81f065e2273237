package authorize_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// groupState: servers github, notes, jira (no upstream auth); groups
// release (github), eng (jira, notes), all ("*"), empty (nothing).
func groupState() *state {
	s := newState()
	for _, n := range []string{"github", "notes", "jira"} {
		s.servers[n] = &store.Server{Def: &configv1.McpServer{Name: n, Url: "https://up.example/" + n}}
	}
	for _, g := range []*configv1.Group{
		{Name: "release", Servers: []string{"github"}},
		{Name: "eng", Servers: []string{"jira", "notes"}},
		{Name: "all", Servers: []string{"*"}},
		{Name: "empty"},
	} {
		s.groups[g.GetName()] = g
	}
	return s
}

func asserted(idp string, groups ...string) []*configv1.GroupAssertion {
	var out []*configv1.GroupAssertion
	for _, g := range groups {
		out = append(out, &configv1.GroupAssertion{Group: g, IdentityProvider: idp, AssertTime: timestamppb.New(now.Add(-time.Hour))})
	}
	return out
}

// TestGroupGrants: principals × groups × servers through Decide. A
// principal may use its own servers plus those of its admin-set and
// IdP-asserted groups; a server granted by none answers NOT_FOUND like an
// unknown route; a missing group grants nothing.
func TestGroupGrants(t *testing.T) {
	for _, tc := range []struct {
		name      string
		principal *configv1.Principal
		groups    map[string]*configv1.Group // changes to groupState (nil value: deleted)
		want      []string                   // of github, notes, jira
	}{
		{"own only", &configv1.Principal{Servers: []string{"notes"}}, nil, []string{"notes"}},
		{"admin group", &configv1.Principal{Groups: []string{"release"}}, nil, []string{"github"}},
		{"asserted group", &configv1.Principal{AssertedGroups: asserted("okta", "eng")}, nil, []string{"jira", "notes"}},
		{"own plus both kinds", &configv1.Principal{Servers: []string{"notes"}, Groups: []string{"release"}, AssertedGroups: asserted("okta", "eng")}, nil, []string{"github", "jira", "notes"}},
		{"star group", &configv1.Principal{Groups: []string{"all"}}, nil, []string{"github", "jira", "notes"}},
		{"asserted star group", &configv1.Principal{AssertedGroups: asserted("entra", "all")}, nil, []string{"github", "jira", "notes"}},
		{"empty group", &configv1.Principal{Groups: []string{"empty"}}, nil, nil},
		{"no groups no servers", &configv1.Principal{}, nil, nil},
		{"unknown group", &configv1.Principal{Groups: []string{"ghost"}, AssertedGroups: asserted("okta", "ghost")}, nil, nil},
		{"deleted group", &configv1.Principal{Groups: []string{"release"}, Servers: []string{"jira"}}, map[string]*configv1.Group{"release": nil}, []string{"jira"}},
		{"group changed", &configv1.Principal{AssertedGroups: asserted("okta", "eng")}, map[string]*configv1.Group{"eng": {Name: "eng", Servers: []string{"github"}}}, []string{"github"}},
		{"two providers", &configv1.Principal{AssertedGroups: append(asserted("okta", "release"), asserted("entra", "eng")...)}, nil, []string{"github", "jira", "notes"}},
		{"group named like a server", &configv1.Principal{Groups: []string{"github"}}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := groupState()
			for n, g := range tc.groups {
				if g == nil {
					delete(s.groups, n)
				} else {
					s.groups[n] = g
				}
			}
			p := tc.principal
			p.Name = "pat"
			s.principals["pat"] = p
			key := "mcpg_pat___0000000000000000"
			s.addKey(key, "pat", false, time.Time{})
			for _, srv := range []string{"github", "notes", "jira"} {
				want := slices.Contains(tc.want, srv)
				if got := authorize.Granted(s, p, srv); got != want {
					t.Errorf("Granted(%s) = %v, want %v", srv, got, want)
				}
				d, err := authorize.Decide(s, now, &authorizev1.AuthorizeRequest{
					Route: srv, PublicBaseUrl: base, HttpMethod: "POST", JsonrpcMethod: "tools/list",
					Credentials: &authorizev1.Credentials{ApiKey: key},
				})
				if err != nil {
					t.Fatalf("%s: %v", srv, err)
				}
				r := d.Response
				switch {
				case want && (r.GetDecision() != authorizev1.Decision_DECISION_ALLOW || r.GetReason() != authorize.ReasonAllowed):
					t.Errorf("%s: %v %q, want ALLOW", srv, r.GetDecision(), r.GetReason())
				case !want && (r.GetDecision() != authorizev1.Decision_DECISION_NOT_FOUND || r.GetReason() != authorize.ReasonNotGranted || r.GetUnknownRoute()):
					t.Errorf("%s: %v %q unknown=%v, want NOT_FOUND %q", srv, r.GetDecision(), r.GetReason(), r.GetUnknownRoute(), authorize.ReasonNotGranted)
				}
			}
		})
	}
}

// TestEffectiveServers: every grant with its sources, sorted by server.
func TestEffectiveServers(t *testing.T) {
	s := groupState()
	at := timestamppb.New(now.Add(-time.Hour))
	p := &configv1.Principal{
		Name: "pat", Servers: []string{"notes"}, Groups: []string{"release", "ghost"},
		AssertedGroups: asserted("okta", "eng", "release"),
	}
	got := authorize.EffectiveServers(s, p)
	var b strings.Builder
	for _, e := range got {
		fmt.Fprintf(&b, "%s:", e.GetServer())
		for _, src := range e.GetSources() {
			fmt.Fprintf(&b, " [%s|%s|%v]", src.GetGroup(), src.GetIdentityProvider(), src.GetAssertTime().AsTime().Equal(at.AsTime()))
		}
		b.WriteString("\n")
	}
	want := "github: [release||false] [release|okta|true]\n" +
		"jira: [eng|okta|true]\n" +
		"notes: [||false] [eng|okta|true]\n"
	if b.String() != want {
		t.Fatalf("EffectiveServers:\n%s\nwant:\n%s", b.String(), want)
	}
}

// BenchmarkGranted: the grant check of every decision, for a principal
// with no groups and for one with 5 own servers, 10 admin-set and 10
// asserted groups of 5 servers each, asked about a server none grants
// (the whole walk).
func BenchmarkGranted(b *testing.B) {
	s := newState()
	var own []string
	for i := range 5 {
		own = append(own, fmt.Sprintf("own%d", i))
	}
	p := &configv1.Principal{Name: "p", Servers: own}
	for i := range 20 {
		name := fmt.Sprintf("g%d", i)
		g := &configv1.Group{Name: name}
		for j := range 5 {
			g.Servers = append(g.Servers, fmt.Sprintf("s%d-%d", i, j))
		}
		s.groups[name] = g
		if i < 10 {
			p.Groups = append(p.Groups, name)
		} else {
			p.AssertedGroups = append(p.AssertedGroups, asserted("okta", name)...)
		}
	}
	plain := &configv1.Principal{Name: "q", Servers: own}
	b.Run("own-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if authorize.Granted(s, plain, "missing") {
				b.Fatal("granted")
			}
		}
	})
	b.Run("20-groups", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if authorize.Granted(s, p, "missing") {
				b.Fatal("granted")
			}
		}
	})
}
