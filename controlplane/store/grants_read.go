package store

import (
	"context"
	"fmt"
)

// GetGrant reads the grant of principal for server straight from etcd
// (linearizable), bypassing the cache: for decisions that must see every
// write made so far, such as whether another replica already refreshed it.
func (s *Store) GetGrant(ctx context.Context, principal, server string) (*Grant, error) {
	v, rev, err := s.Get(ctx, KindGrant, grantName(principal, server))
	if err != nil {
		return nil, err
	}
	o, err := s.decodeGrant(grantName(principal, server), v, rev)
	if err != nil {
		return nil, fmt.Errorf("grant %s/%s: %w", principal, server, err)
	}
	return o.(*Grant), nil
}
