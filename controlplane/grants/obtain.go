package grants

import (
	"context"
	"errors"
	"fmt"
	"time"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Errors of obtaining an upstream credential. ErrNoGrant and
// ErrGrantUnusable are normal states that become CHALLENGE;
// ErrUpstreamUnavailable means "could not decide" (the data plane answers 503
// and the client retries).
var (
	ErrNoGrant             = errors.New("no upstream grant")
	ErrGrantUnusable       = errors.New("upstream grant unusable")
	ErrUpstreamUnavailable = errors.New("upstream token endpoint unavailable")
)

// GrantTokens yields a principal's usable upstream access token for an
// oauth2 authorization_code server, refreshing it when needed. *Grants
// implements it; StoreGrants is the read-only variant.
type GrantTokens interface {
	Token(ctx context.Context, principal, server string) (accessToken string, err error)
}

// MachineTokens yields the upstream access token of an oauth2
// client_credentials server. *ClientCredentials implements it.
type MachineTokens interface {
	Token(ctx context.Context, srv *store.Server) (accessToken string, err error)
}

// Obtainer completes decisions that need an upstream credential: the
// Authorize handler calls authorize.Decide, then Complete.
type Obtainer struct {
	Grants  GrantTokens
	Machine MachineTokens
	// Exchange obtains token_exchange servers' tokens; nil: such a
	// decision fails (misconfigured).
	Exchange ExchangeTokens
}

// Complete returns the response of d: d's own when it needs nothing, the
// ALLOW with the obtained token, or the sign-in CHALLENGE when the
// principal's vault grant is missing (ReasonNoGrant) or unusable
// (ReasonGrantUnusable). Any other failure is returned (could not decide).
func (o Obtainer) Complete(ctx context.Context, d authorize.Decision) (*authorizev1.AuthorizeResponse, error) {
	switch d.Need {
	case authorize.NeedClientCredentials:
		tok, err := o.Machine.Token(ctx, d.Server)
		if err != nil {
			return nil, err
		}
		return d.Allow(tok), nil
	case authorize.NeedVaultGrant:
		tok, err := o.Grants.Token(ctx, d.Principal, d.Server.Def.GetName())
		return personal(d, tok, err)
	case authorize.NeedTokenExchange:
		if o.Exchange == nil {
			return nil, fmt.Errorf("%w: no token exchange configured", authorize.ErrMisconfigured)
		}
		tok, err := o.Exchange.Token(ctx, d.Principal, d.Server)
		return personal(d, tok, err)
	case authorize.NeedNothing:
		return d.Response, nil
	default:
		return nil, fmt.Errorf("%w: unknown need %d", authorize.ErrMisconfigured, d.Need)
	}
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
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	if !valid(gr, now()) {
		return "", ErrGrantUnusable
	}
	return gr.Token.GetAccessToken(), nil
}

// valid reports whether the grant is ACTIVE with an access token that has
// not expired at now.
func valid(gr *store.Grant, now time.Time) bool {
	exp := gr.Token.GetExpiry()
	return gr.Conn.GetState() == vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE &&
		gr.Token.GetAccessToken() != "" && (exp == nil || now.Before(exp.AsTime()))
}

// personal completes d with a credential of the person's own (a vault
// grant or an exchanged token): the person must sign in upstream when
// there is none or it cannot be used.
func personal(d authorize.Decision, tok string, err error) (*authorizev1.AuthorizeResponse, error) {
	switch {
	case errors.Is(err, ErrNoGrant):
		return d.Challenge(authorize.ReasonNoGrant), nil
	case errors.Is(err, ErrGrantUnusable):
		return d.Challenge(authorize.ReasonGrantUnusable), nil
	case err != nil:
		return nil, err
	}
	return d.Allow(tok), nil
}
