package configapi

import "context"

// The admin plumbing other admin services (vaultapi's ConnectionService)
// share with this package, so that names, errors, audit lines and
// read-your-writes behave the same on every admin service.

// StoreTimeout bounds an admin write's etcd round trips.
const StoreTimeout = storeTimeout

// ValidName checks a server or principal name by the admin API's rule; the
// error is an invalid_argument with fixed text for ConnectError.
func ValidName(field, name string) error { return validName(field, name) }

// NotFound is the not_found error for what ("connection" → "connection not
// found"), for ConnectError.
func NotFound(what string) error { return notFound(what) }

// ConnectError turns err into a Connect error with fixed public text, the
// one mapping of every admin service; causes are logged.
func (s *Service) ConnectError(ctx context.Context, err error) error {
	return s.toConnectError(ctx, err)
}

// Audit logs one admin write (names only, never values) with the actor the
// admin authentication put on ctx.
func (s *Service) Audit(ctx context.Context, action, kind, name string, err error) {
	s.audit(ctx, action, kind, name, err)
}

// Settle waits, bounded, until the cache reflects rev (read-your-writes).
func (s *Service) Settle(ctx context.Context, rev int64) { s.settle(ctx, rev) }

// RevokeTokens ends, best effort, the gateway tokens derived from what was
// revoked (see WithTokenRevoker).
func (s *Service) RevokeTokens(ctx context.Context, principal, keyID, server string) {
	s.revokeTokens(ctx, principal, keyID, server)
}
