package store_test

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// TestPoliciesCached: the policy list is one object, written
// compare-and-swap on its revision and followed by the cache; PoliciesFor
// returns the rules whose servers globs match, in order, and follows a new
// list (the memo is per snapshot).
func TestPoliciesCached(t *testing.T) {
	srv := etcdtest.Start(t)
	st := startFollowing(t, srv.Client(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := t.Context()
	if ps := st.Policies(); ps.GetRevision() != 0 || len(ps.GetPolicies()) != 0 || st.PoliciesFor("gh") != nil {
		t.Fatalf("empty store: %v", ps)
	}
	rule := func(id string, servers ...string) *configv1.Policy {
		return &configv1.Policy{Id: id, Principals: []string{"*"}, Servers: servers, Tools: []string{"*"}, Effect: configv1.PolicyEffect_POLICY_EFFECT_DENY}
	}
	rev, err := st.PutPolicies(ctx, &configv1.PolicySet{Policies: []*configv1.Policy{rule("a", "g?"), rule("b", "wiki"), rule("c", "*")}, Revision: 42}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutPolicies(ctx, &configv1.PolicySet{}, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	if _, err := st.PutPolicies(ctx, &configv1.PolicySet{}, rev+1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale revision: %v, want ErrConflict", err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	ids := func(ps []*configv1.Policy) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.GetId())
		}
		return out
	}
	if ps := st.Policies(); ps.GetRevision() != rev || !slices.Equal(ids(ps.GetPolicies()), []string{"a", "b", "c"}) {
		t.Fatalf("Policies = %v", ps)
	}
	for server, want := range map[string][]string{"gh": {"a", "c"}, "wiki": {"b", "c"}, "jira": {"c"}} {
		for range 2 { // computed, then memoized
			if got := ids(st.PoliciesFor(server)); !slices.Equal(got, want) {
				t.Errorf("PoliciesFor(%s) = %v, want %v", server, got, want)
			}
		}
	}
	// Compiled visibility is memoized per snapshot and key.
	calls := 0
	compile := func() []*authorizev1.VisibilityRule {
		calls++
		return []*authorizev1.VisibilityRule{{Glob: "x"}}
	}
	v1 := st.CompiledVisibility("gh", "alice", []string{"eng"}, compile)
	v2 := st.CompiledVisibility("gh", "alice", []string{"eng"}, compile)
	st.CompiledVisibility("gh", "alice", []string{"eng", "release"}, compile)
	st.CompiledVisibility("gh", "bob", []string{"eng"}, compile)
	if calls != 3 || &v1[0] != &v2[0] {
		t.Errorf("compile called %d times, want 3 (one per key)", calls)
	}
	rev2, err := st.PutPolicies(ctx, &configv1.PolicySet{Policies: []*configv1.Policy{rule("d", "wiki")}}, rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev2); err != nil {
		t.Fatal(err)
	}
	if got := ids(st.PoliciesFor("gh")); got != nil {
		t.Errorf("PoliciesFor(gh) after replace = %v", got)
	}
	if got := ids(st.PoliciesFor("wiki")); !slices.Equal(got, []string{"d"}) {
		t.Errorf("PoliciesFor(wiki) after replace = %v", got)
	}
	st.CompiledVisibility("gh", "alice", []string{"eng"}, compile)
	if calls != 4 {
		t.Errorf("a new list did not recompile: %d calls", calls)
	}
}
