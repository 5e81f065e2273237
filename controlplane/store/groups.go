package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// KindGroup holds groups (cached).
const KindGroup = "groups"

// MaxAssertedGroups bounds how many groups one identity provider may assert
// for one principal; the rest of a longer claim is ignored.
const MaxAssertedGroups = 256

// setAssertedAttempts bounds SetAssertedGroups' read-modify-write retries
// when an admin writes the principal at the same time.
const setAssertedAttempts = 16

func decodeGroup(_ string, value []byte, rev int64) (any, error) {
	var g configv1.Group
	if err := proto.Unmarshal(value, &g); err != nil {
		return nil, fmt.Errorf("decode group: %w", err)
	}
	g.Revision = rev
	return &g, nil
}

// Group returns the cached group called name.
func (s *Store) Group(name string) (*configv1.Group, bool) {
	return cached[*configv1.Group](s.cache, KindGroup, name)
}

// Groups returns every cached group, sorted by name.
func (s *Store) Groups() []*configv1.Group {
	out := cachedList[*configv1.Group](s.cache, KindGroup)
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// PutGroup stores g iff its revision equals expected (0 = create).
func (s *Store) PutGroup(ctx context.Context, g *configv1.Group, expected int64) (int64, error) {
	g = proto.CloneOf(g)
	g.Revision = 0
	b, err := proto.Marshal(g)
	if err != nil {
		return 0, fmt.Errorf("marshal group: %w", err)
	}
	return s.put(ctx, key(KindGroup, g.GetName()), b, expected)
}

// DeleteGroup deletes a group iff its revision equals expected (0 = any).
// Memberships naming it stay on the principals and grant nothing while no
// group of that name exists.
func (s *Store) DeleteGroup(ctx context.Context, name string, expected int64) (int64, error) {
	return s.del(ctx, key(KindGroup, name), expected)
}

// SetAssertedGroups records the groups identity provider idp asserted for
// the principal called principal at time at: it replaces every earlier
// assertion of idp and keeps those of other providers. Names that are not
// valid group names (api/wire's name grammar) can name no group and are
// dropped; duplicates count once; at most MaxAssertedGroups are kept. The
// write is a compare-and-swap on the principal's revision read from etcd,
// retried a few times when an admin writes the principal concurrently. It
// returns ErrNotFound when there is no such principal and ErrConflict when
// every attempt lost a race.
func (s *Store) SetAssertedGroups(ctx context.Context, principal, idp string, groups []string, at time.Time) error {
	if idp == "" {
		return errors.New("set asserted groups: identity provider required")
	}
	names := make([]string, 0, len(groups))
	for _, g := range groups {
		if wire.ValidServerName(g) {
			names = append(names, g)
		}
	}
	sort.Strings(names)
	names = slices.Compact(names)
	if len(names) > MaxAssertedGroups {
		names = names[:MaxAssertedGroups]
	}
	ts := timestamppb.New(at)
	var err error
	for range setAssertedAttempts {
		var (
			b   []byte
			rev int64
		)
		b, rev, err = s.Get(ctx, KindPrincipal, principal)
		if err != nil {
			return fmt.Errorf("set asserted groups: %w", err)
		}
		var p configv1.Principal
		if err := proto.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("set asserted groups: decode principal: %w: %w", ErrNotFound, ErrCorrupt)
		}
		p.AssertedGroups = MergeAssertions(p.GetAssertedGroups(), idp, names, ts)
		if _, err = s.PutPrincipal(ctx, &p, rev); err == nil {
			return nil
		}
		if !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return err
}

// MergeAssertions returns cur with idp's assertions replaced by groups, all
// asserted at at, sorted by provider then group.
func MergeAssertions(cur []*configv1.GroupAssertion, idp string, groups []string, at *timestamppb.Timestamp) []*configv1.GroupAssertion {
	out := make([]*configv1.GroupAssertion, 0, len(cur)+len(groups))
	for _, a := range cur {
		if a.GetIdentityProvider() != idp {
			out = append(out, a)
		}
	}
	for _, g := range groups {
		out = append(out, &configv1.GroupAssertion{Group: g, IdentityProvider: idp, AssertTime: proto.CloneOf(at)})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].GetIdentityProvider() != out[j].GetIdentityProvider() {
			return out[i].GetIdentityProvider() < out[j].GetIdentityProvider()
		}
		return out[i].GetGroup() < out[j].GetGroup()
	})
	return out
}
