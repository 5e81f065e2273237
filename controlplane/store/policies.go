package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// KindPolicy holds the ordered policy list (cached) as one object,
// PolicySetName: the list is replaced whole, compare-and-swap on its
// revision, so its rules are validated together and never interleave.
const KindPolicy = "policies"

// PolicySetName is the name of the one policy list.
const PolicySetName = "set"

// policySnapshot is one decoded policy list with a memo of the rules that
// target each server: the servers' globs are matched once per server and
// list, not at every decision. A new list is a new snapshot.
type policySnapshot struct {
	set      *configv1.PolicySet
	byServer sync.Map // server name → []*configv1.Policy
	entries  atomic.Int64
	// compiled memoizes CompiledVisibility: key → []*VisibilityRule.
	compiled     sync.Map
	compiledSize atomic.Int64 // entries memoized, bounded by maxMemoVisibility
}

// maxMemoVisibility bounds the compiled entries one snapshot memoizes
// (about 100 bytes each); beyond it they are compiled at every call.
const maxMemoVisibility = 1 << 18

// maxMemoServers bounds a snapshot's memo (servers beyond it are matched
// at every call).
const maxMemoServers = 4096

func decodePolicySet(_ string, value []byte, rev int64) (any, error) {
	var ps configv1.PolicySet
	if err := proto.Unmarshal(value, &ps); err != nil {
		return nil, fmt.Errorf("decode policy set: %w", err)
	}
	ps.Revision = rev
	return &policySnapshot{set: &ps}, nil
}

// emptyPolicies is what Policies returns when no list is stored.
var emptyPolicies = &configv1.PolicySet{}

func (s *Store) policies() *policySnapshot {
	ps, _ := cached[*policySnapshot](s.cache, KindPolicy, PolicySetName)
	return ps
}

// Policies returns the cached policy list (revision 0 and no rules when
// none is stored). It must not be modified.
func (s *Store) Policies() *configv1.PolicySet {
	if ps := s.policies(); ps != nil {
		return ps.set
	}
	return emptyPolicies
}

// PoliciesFor returns, in order, the cached rules whose servers globs
// match server (api/wire.GlobAny). It must not be modified.
func (s *Store) PoliciesFor(server string) []*configv1.Policy {
	ps := s.policies()
	if ps == nil || len(ps.set.GetPolicies()) == 0 {
		return nil
	}
	if v, ok := ps.byServer.Load(server); ok {
		return v.([]*configv1.Policy)
	}
	rules := RulesFor(ps.set, server)
	if ps.entries.Add(1) <= maxMemoServers {
		ps.byServer.Store(server, rules)
	}
	return rules
}

// CompiledVisibility memoizes, per policy snapshot, the visibility compile
// returns for (server, principal, groups): compile must be a pure function
// of them and of the snapshot's rules (authorize.CompileVisibility). The
// result is shared by every caller with that key and must not be
// modified.
func (s *Store) CompiledVisibility(server, principal string, groups []string, compile func() []*authorizev1.VisibilityRule) []*authorizev1.VisibilityRule {
	ps := s.policies()
	if ps == nil {
		return compile()
	}
	key := server + "\x00" + principal + "\x00" + strings.Join(groups, "\x00")
	if v, ok := ps.compiled.Load(key); ok {
		return v.([]*authorizev1.VisibilityRule)
	}
	out := compile()
	if ps.compiledSize.Add(int64(len(out))+1) <= maxMemoVisibility {
		ps.compiled.Store(key, out)
	}
	return out
}

// RulesFor returns, in order, the rules of ps whose servers globs match
// server.
func RulesFor(ps *configv1.PolicySet, server string) []*configv1.Policy {
	var rules []*configv1.Policy
	for _, r := range ps.GetPolicies() {
		if wire.GlobAny(r.GetServers(), server) {
			rules = append(rules, r)
		}
	}
	return rules
}

// PutPolicies stores ps as the whole policy list iff the stored list's
// revision equals expected (0 = none stored yet) and returns the new
// revision; ErrConflict otherwise.
func (s *Store) PutPolicies(ctx context.Context, ps *configv1.PolicySet, expected int64) (int64, error) {
	ps = proto.CloneOf(ps)
	ps.Revision = 0
	b, err := proto.Marshal(ps)
	if err != nil {
		return 0, fmt.Errorf("marshal policy set: %w", err)
	}
	return s.put(ctx, key(KindPolicy, PolicySetName), b, expected)
}
