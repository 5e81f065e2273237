package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
)

// KindIdPGrant holds the identity providers' refresh tokens of signed-in
// people (uncached): grant-like records, the token sealed like a vault
// grant's, read only by a gateway refresh that re-asserts groups.
const KindIdPGrant = "idpgrants"

// IdPGrant is a person's refresh token at an identity provider.
type IdPGrant struct {
	Principal    string
	PrincipalUID string
	IdP          string
	RefreshToken string
	UpdateTime   time.Time
}

func idpGrantName(principal, idp string) string { return principal + "\x1f" + idp }

func idpGrantAD(principal, idp string) []byte {
	return []byte("mcpgate/idp-grant/" + principal + "/" + idp)
}

// PutIdPGrant seals and stores g iff its revision equals expected (0 =
// create, -1 = unconditional).
func (s *Store) PutIdPGrant(ctx context.Context, g *IdPGrant, expected int64) (int64, error) {
	pt, err := proto.Marshal(&storev1.UpstreamToken{RefreshToken: g.RefreshToken})
	if err != nil {
		return 0, fmt.Errorf("marshal idp grant: %w", err)
	}
	sealed, err := s.seal.Seal(pt, idpGrantAD(g.Principal, g.IdP))
	if err != nil {
		return 0, err
	}
	b, err := proto.Marshal(&storev1.GrantRecord{Connection: &vaultv1.Connection{
		Principal: g.Principal, Server: g.IdP, PrincipalUid: g.PrincipalUID,
		State: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, UpdateTime: timestamppb.New(g.UpdateTime),
		HasRefreshToken: g.RefreshToken != "",
	}, SealedToken: sealed})
	if err != nil {
		return 0, fmt.Errorf("marshal idp grant: %w", err)
	}
	return s.put(ctx, key(KindIdPGrant, idpGrantName(g.Principal, g.IdP)), b, expected)
}

// IdPGrant reads principal's grant at idp (linearizable) and its revision.
func (s *Store) IdPGrant(ctx context.Context, principal, idp string) (*IdPGrant, int64, error) {
	b, rev, err := s.Get(ctx, KindIdPGrant, idpGrantName(principal, idp))
	if err != nil {
		return nil, 0, err
	}
	var r storev1.GrantRecord
	if err := proto.Unmarshal(b, &r); err != nil {
		return nil, 0, fmt.Errorf("decode idp grant: %w: %w", ErrNotFound, ErrCorrupt)
	}
	pt, err := s.seal.Open(r.GetSealedToken(), idpGrantAD(principal, idp))
	if err != nil {
		return nil, 0, fmt.Errorf("open idp grant: %w: %w", ErrNotFound, errors.Join(ErrCorrupt, err))
	}
	var tok storev1.UpstreamToken
	if err := proto.Unmarshal(pt, &tok); err != nil {
		return nil, 0, fmt.Errorf("decode idp grant token: %w: %w", ErrNotFound, ErrCorrupt)
	}
	c := r.GetConnection()
	return &IdPGrant{Principal: c.GetPrincipal(), PrincipalUID: c.GetPrincipalUid(), IdP: c.GetServer(),
		RefreshToken: tok.GetRefreshToken(), UpdateTime: c.GetUpdateTime().AsTime()}, rev, nil
}

// DeleteIdPGrant deletes principal's grant at idp iff its revision equals
// expected (0 = any).
func (s *Store) DeleteIdPGrant(ctx context.Context, principal, idp string, expected int64) (int64, error) {
	return s.del(ctx, key(KindIdPGrant, idpGrantName(principal, idp)), expected)
}

// DeleteIdPGrantsOf deletes every identity-provider grant of principal
// (the principal was deleted).
func (s *Store) DeleteIdPGrantsOf(ctx context.Context, principal string) error {
	_, err := s.kv.Delete(ctx, key(KindIdPGrant, idpGrantName(principal, "")), clientv3.WithPrefix())
	return wrap("delete idp grants", err)
}

// DeleteIdPGrantsFor deletes every grant at identity provider idp (the
// provider was deleted).
func (s *Store) DeleteIdPGrantsFor(ctx context.Context, idp string) error {
	all, err := s.List(ctx, KindIdPGrant)
	if err != nil {
		return err
	}
	for name := range all {
		if _, p, ok := strings.Cut(name, "\x1f"); ok && p == idp {
			if _, err := s.del(ctx, key(KindIdPGrant, name), 0); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
	}
	return nil
}
