package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// SetAssertedGroups records that identity provider idp asserted exactly
// groups for the principal called name at at: that provider's previous
// GroupAssertion entries are replaced, other providers' kept. It reads the
// principal from etcd and writes it back with a compare-and-swap on its
// revision, retrying a few times on conflict. ErrNotFound when there is no
// such principal.
func (s *Store) SetAssertedGroups(ctx context.Context, name, idp string, groups []string, at time.Time) error {
	for range 5 {
		b, rev, err := s.Get(ctx, KindPrincipal, name)
		if err != nil {
			return err
		}
		var p configv1.Principal
		if err := proto.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("decode principal: %w", err)
		}
		kept := slices.DeleteFunc(p.AssertedGroups, func(a *configv1.GroupAssertion) bool { return a.GetIdentityProvider() == idp })
		seen := map[string]bool{}
		for _, g := range groups {
			if g == "" || seen[g] {
				continue
			}
			seen[g] = true
			kept = append(kept, &configv1.GroupAssertion{Group: g, IdentityProvider: idp, AssertTime: timestamppb.New(at)})
		}
		p.AssertedGroups = kept
		p.Revision = 0
		out, err := proto.Marshal(&p)
		if err != nil {
			return fmt.Errorf("marshal principal: %w", err)
		}
		_, err = s.put(ctx, key(KindPrincipal, name), out, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		return err
	}
	return fmt.Errorf("set asserted groups of %s: %w", name, ErrConflict)
}
