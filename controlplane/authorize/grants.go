package authorize

import (
	"context"
	"errors"
	"time"

	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Errors a GrantTokens returns. ErrNoGrant and ErrGrantUnusable are normal
// states that become CHALLENGE; ErrUpstreamUnavailable means "could not
// decide" (the data plane answers 503 and the client retries).
var (
	ErrNoGrant             = errors.New("no upstream grant")
	ErrGrantUnusable       = errors.New("upstream grant unusable")
	ErrUpstreamUnavailable = errors.New("upstream token endpoint unavailable")
)

// GrantTokens yields a principal's usable upstream access token for an
// oauth2 authorization_code server, refreshing it when needed.
type GrantTokens interface {
	Token(ctx context.Context, principal, server string) (accessToken string, err error)
}

// GrantSource is the cached grant lookup StoreGrants reads; *store.Store
// implements it.
type GrantSource interface {
	Grant(principal, server string) (*store.Grant, bool)
}

// StoreGrants is the GrantTokens that reads grants as stored and never
// refreshes: an ACTIVE grant whose access token has not expired yields its
// token, a missing grant is ErrNoGrant, anything else ErrGrantUnusable.
type StoreGrants struct {
	Source GrantSource
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Token implements GrantTokens.
func (g StoreGrants) Token(_ context.Context, principal, server string) (string, error) {
	gr, ok := g.Source.Grant(principal, server)
	if !ok {
		return "", ErrNoGrant
	}
	if gr.Conn.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE || gr.Token.GetAccessToken() == "" {
		return "", ErrGrantUnusable
	}
	if exp := gr.Token.GetExpiry(); exp != nil && !g.now().Before(exp.AsTime()) {
		return "", ErrGrantUnusable
	}
	return gr.Token.GetAccessToken(), nil
}

func (g StoreGrants) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}
