package store

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// KindPolicy holds the ordered policy list (cached) as one object,
// PolicySetName: the list is replaced whole, compare-and-swap on its
// revision, so its rules are validated together and never interleave.
const KindPolicy = "policies"

// PolicySetName is the name of the one policy list.
const PolicySetName = "set"

func decodePolicySet(_ string, value []byte, rev int64) (any, error) {
	var ps configv1.PolicySet
	if err := proto.Unmarshal(value, &ps); err != nil {
		return nil, fmt.Errorf("decode policy set: %w", err)
	}
	ps.Revision = rev
	return &ps, nil
}

// emptyPolicies is what Policies returns when no list is stored.
var emptyPolicies = &configv1.PolicySet{}

// Policies returns the cached policy list (revision 0 and no rules when
// none is stored). It must not be modified.
func (s *Store) Policies() *configv1.PolicySet {
	if ps, ok := cached[*configv1.PolicySet](s.cache, KindPolicy, PolicySetName); ok {
		return ps
	}
	return emptyPolicies
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
