package authorize

import (
	"context"
	"errors"
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
