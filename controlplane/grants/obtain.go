package grants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

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
	// Log receives the aggregate members left out; nil: not logged.
	Log *slog.Logger
}

// Complete returns the response of d: d's own when it needs nothing, the
// ALLOW with the obtained token, or the sign-in CHALLENGE when the
// principal's vault grant is missing (ReasonNoGrant) or unusable
// (ReasonGrantUnusable). Any other failure is returned (could not decide).
func (o Obtainer) Complete(ctx context.Context, d authorize.Decision) (*authorizev1.AuthorizeResponse, error) {
	if len(d.Members) > 0 {
		return o.completeAggregate(ctx, d)
	}
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

// MaxParallelObtains bounds how many members' upstream credentials one
// aggregate decision obtains at once.
const MaxParallelObtains = 8

// completeAggregate completes each member decision of an aggregate ALLOW
// exactly as Complete completes a server route's (one obtain per member,
// at most MaxParallelObtains at once) and sets it as that member's
// decision. With one member its failure is the answer's (could not
// decide), as on the member's route; with several, a member whose
// credential could not be obtained is left out (logged by the caller from
// the returned names) so that it never breaks the others.
func (o Obtainer) completeAggregate(ctx context.Context, d authorize.Decision) (*authorizev1.AuthorizeResponse, error) {
	members := d.Response.GetAggregate().GetMembers()
	if len(members) != len(d.Members) {
		return nil, fmt.Errorf("%w: %d member decisions for %d members", authorize.ErrInvalidRequest, len(d.Members), len(members))
	}
	resps := make([]*authorizev1.AuthorizeResponse, len(members))
	errs := make([]error, len(members))
	var g errgroup.Group
	g.SetLimit(MaxParallelObtains)
	for i, md := range d.Members {
		if md.Need == authorize.NeedNothing {
			resps[i] = md.Response
			continue
		}
		g.Go(func() error {
			resps[i], errs[i] = o.Complete(ctx, md)
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	kept := members[:0]
	for i, m := range members {
		if errs[i] != nil {
			if len(members) == 1 {
				return nil, errs[i]
			}
			if o.Log != nil {
				o.Log.WarnContext(ctx, "aggregate member left out: upstream credential not obtained",
					slog.String("server", m.GetServer()), slog.String("principal", d.Response.GetPrincipal()), slog.Any("err", errs[i]))
			}
			continue
		}
		m.Decision = resps[i]
		kept = append(kept, m)
	}
	d.Response.Aggregate.Members = kept
	return d.Response, nil
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
