// Package vaultapi implements the vault's admin services: VaultService
// (rotating the keyset that seals the control plane's secrets and
// re-encrypting every sealed record under the new key) and
// ConnectionService (listing and revoking the vault's upstream grants).
package vaultapi

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"connectrpc.com/connect"

	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
)

// Service implements VaultService. Mount it behind admin authentication.
type Service struct {
	kr  *vault.Keyring
	st  *store.Store
	log *slog.Logger

	mu sync.Mutex // one rotation at a time
}

var _ vaultv1connect.VaultServiceHandler = (*Service)(nil)

// New returns the service; st must seal with kr.
func New(kr *vault.Keyring, st *store.Store, log *slog.Logger) *Service {
	return &Service{kr: kr, st: st, log: log}
}

// RotateKey adds a new primary key (persisted when the keyset came from a
// file) and reseals every record under it. Other control-plane replicas keep
// their own copy of the keyset: they must be given the new keyset (file or
// MCPGATE_VAULT_KEYSET) and restarted before they can open the resealed
// records.
//
// With promote_key_id, the key must already be in the keyset (added with
// `mcpgate vault add-key` and distributed to every replica first): then every
// replica can open the resealed records at once.
func (s *Service) RotateKey(ctx context.Context, req *vaultv1.RotateKeyRequest) (*vaultv1.RotateKeyResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := req.GetPromoteKeyId()
	var err error
	if id != 0 {
		err = s.kr.Promote(id)
	} else {
		id, err = s.kr.Rotate()
	}
	if err != nil {
		return nil, s.toConnectError(ctx, "rotate key", err)
	}
	s.log.InfoContext(ctx, "vault key rotated", slog.Uint64("primary_key_id", uint64(id)))
	n, err := s.st.Reseal(ctx)
	if err != nil {
		return nil, s.toConnectError(ctx, "reseal", err)
	}
	s.log.InfoContext(ctx, "vault records resealed", slog.Uint64("primary_key_id", uint64(id)), slog.Int("records", n))
	return &vaultv1.RotateKeyResponse{PrimaryKeyId: id, RecordsResealed: int64(n)}, nil
}

// toConnectError is the one place this package's errors become wire codes
// with fixed public text; the cause is logged.
func (s *Service) toConnectError(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, vault.ErrUnknownKey):
		return connect.NewError(connect.CodeInvalidArgument, errors.New("promote_key_id is not in this replica's keyset"))
	case errors.Is(err, store.ErrUnavailable):
		s.log.WarnContext(ctx, "vault "+op+" failed", slog.Any("err", err))
		return connect.NewError(connect.CodeUnavailable, errors.New("store unavailable; the key may be rotated already, retry to finish re-encryption"))
	case errors.Is(err, store.ErrConflict):
		s.log.WarnContext(ctx, "vault "+op+" failed", slog.Any("err", err))
		return connect.NewError(connect.CodeAborted, errors.New("records kept changing during re-encryption; retry"))
	default:
		s.log.ErrorContext(ctx, "vault "+op+" failed", slog.Any("err", err))
		return connect.NewError(connect.CodeInternal, errors.New("internal error"))
	}
}
