package limits_test

import (
	"testing"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/limits"
)

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"", "", true},
		{"", "a", false},
		{"create_*", "create_issue", true},
		{"create_*", "create_", true},
		{"create_*", "delete_issue", false},
		{"*_issue", "create_issue", true},
		{"*_issue", "create_issues", false},
		{"get_?", "get_x", true},
		{"get_?", "get_", false},
		{"get_?", "get_xy", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a*b*c", "abcbc", true},
		{"merge_pull_request", "merge_pull_request", true},
		{"merge_pull_request", "Merge_pull_request", false},
		{"**", "x", true},
		{"*?*", "", false},
	}
	for _, c := range cases {
		if got := limits.Glob(c.pattern, c.name); got != c.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

// TestAppliesTo is the table of who, where and what a limit counts:
// principals and groups (admin-set and asserted), servers (and "*"),
// tool globs (tools/call only) and their absence.
func TestAppliesTo(t *testing.T) {
	everyone := &configv1.RateLimit{Id: "all", PerMinute: 1}
	alice := &configv1.RateLimit{Id: "alice", Principals: []string{"alice"}, PerMinute: 1}
	devs := &configv1.RateLimit{Id: "devs", Groups: []string{"devs"}, PerMinute: 1}
	both := &configv1.RateLimit{Id: "both", Principals: []string{"carol"}, Groups: []string{"devs"}, PerMinute: 1}
	github := &configv1.RateLimit{Id: "gh", Servers: []string{"github"}, PerMinute: 1}
	star := &configv1.RateLimit{Id: "star", Servers: []string{"*"}, PerMinute: 1}
	writes := &configv1.RateLimit{Id: "writes", Servers: []string{"github"}, Tools: []string{"create_*", "merge_pull_request"}, PerMinute: 1}
	cases := []struct {
		name      string
		l         *configv1.RateLimit
		principal string
		groups    []string
		server    string
		tool      string
		want      bool
	}{
		{"everyone, any request", everyone, "bob", nil, "notes", "", true},
		{"everyone, tools/call", everyone, "bob", nil, "notes", "x", true},
		{"named principal", alice, "alice", nil, "notes", "", true},
		{"other principal", alice, "bob", []string{"alice"}, "notes", "", false},
		{"group member", devs, "bob", []string{"ops", "devs"}, "notes", "", true},
		{"not a member", devs, "bob", []string{"ops"}, "notes", "", false},
		{"group named like the principal", devs, "devs", nil, "notes", "", false},
		{"principal or group: principal", both, "carol", nil, "x", "", true},
		{"principal or group: group", both, "dan", []string{"devs"}, "x", "", true},
		{"principal or group: neither", both, "dan", nil, "x", "", false},
		{"server named", github, "bob", nil, "github", "", true},
		{"server not named", github, "bob", nil, "gitlab", "", false},
		{"server star", star, "bob", nil, "gitlab", "", true},
		{"tool glob match", writes, "bob", nil, "github", "create_issue", true},
		{"tool exact match", writes, "bob", nil, "github", "merge_pull_request", true},
		{"tool no match", writes, "bob", nil, "github", "list_issues", false},
		{"tool limit, not a tools/call", writes, "bob", nil, "github", "", false},
		{"tool limit, other server", writes, "bob", nil, "gitlab", "create_issue", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := limits.AppliesTo(c.l, c.principal, c.groups, c.server, c.tool); got != c.want {
				t.Fatalf("AppliesTo = %v, want %v", got, c.want)
			}
			// Applies over a set is the OR of its members.
			if got := limits.Applies([]*configv1.RateLimit{alice, c.l}, c.principal, c.groups, c.server, c.tool); got != (c.want || limits.AppliesTo(alice, c.principal, c.groups, c.server, c.tool)) {
				t.Fatalf("Applies = %v", got)
			}
		})
	}
	if limits.Applies(nil, "alice", nil, "github", "x") {
		t.Fatal("no limits apply to nothing")
	}
}

func TestGroups(t *testing.T) {
	p := &configv1.Principal{Name: "a", Groups: []string{"x"}, AssertedGroups: []*configv1.GroupAssertion{{Group: "y", IdentityProvider: "idp"}}}
	got := limits.Groups(p)
	if len(got) != 2 || got[0] != "x" || got[1] != "y" {
		t.Fatalf("Groups = %v, want [x y]", got)
	}
}

// TestChunk: at most limit/(10 × replicas), at most the replica's share
// of the rest, at least 1 while any remain.
func TestChunk(t *testing.T) {
	cases := []struct {
		limit, granted int64
		replicas       int
		want           int64
	}{
		{100, 0, 1, 10},
		{100, 0, 2, 5},
		{100, 95, 2, 2},
		{100, 99, 2, 1},
		{100, 100, 2, 0},
		{100, 120, 2, 0},
		{5, 0, 2, 1},
		{1_000_000, 0, 4, 25_000},
		{1_000_000, 999_990, 4, 2},
		{10, 0, 0, 1},
	}
	for _, c := range cases {
		if got := limits.Chunk(c.limit, c.granted, c.replicas); got != c.want {
			t.Errorf("Chunk(%d, %d, %d) = %d, want %d", c.limit, c.granted, c.replicas, got, c.want)
		}
	}
}

func TestBounds(t *testing.T) {
	got := limits.Bounds(&configv1.RateLimit{PerSecond: 2, PerDay: 9})
	if len(got) != 2 || got[0] != (limits.Bound{Window: limits.Second, Limit: 2}) || got[1] != (limits.Bound{Window: limits.Day, Limit: 9}) {
		t.Fatalf("Bounds = %v", got)
	}
}
