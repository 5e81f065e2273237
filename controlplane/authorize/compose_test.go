package authorize_test

import (
	"context"
	"time"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/grants"
)

// authorizer is what the Authorize handler does, over an in-memory state:
// the pure decision, then grants completes an ALLOW that needs an upstream
// credential. The decision tables assert the composed answer.
type authorizer struct {
	st      authorize.State
	now     func() time.Time
	tokens  grants.GrantTokens
	machine grants.MachineTokens
}

type option func(*authorizer)

func withClock(now func() time.Time) option           { return func(a *authorizer) { a.now = now } }
func withGrantTokens(g grants.GrantTokens) option     { return func(a *authorizer) { a.tokens = g } }
func withMachineTokens(m grants.MachineTokens) option { return func(a *authorizer) { a.machine = m } }

func newAuthorizer(st authorize.State, opts ...option) *authorizer {
	a := &authorizer{st: st, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	if a.tokens == nil {
		a.tokens = grants.StoreGrants{Source: st, Now: a.now}
	}
	if a.machine == nil {
		a.machine = &grants.ClientCredentials{Now: a.now}
	}
	return a
}

func (a *authorizer) Authorize(ctx context.Context, req *authorizev1.AuthorizeRequest) (*authorizev1.AuthorizeResponse, error) {
	d, err := authorize.Decide(a.st, a.now(), req)
	if err != nil {
		return nil, err
	}
	return grants.Obtainer{Grants: a.tokens, Machine: a.machine}.Complete(ctx, d)
}
