package dataplane

import (
	"context"
	"time"
)

// SealRequestStateForTest seals a requestState with p's current session
// key, as the gateway does for an upstream's input_required result, with
// any expiry (the tests cannot wait for a real one to pass).
func SealRequestStateForTest(ctx context.Context, p *Proxy, principal, route, method, name, upstream string, expires time.Time) (string, error) {
	ks, err := p.keys.current(ctx)
	if err != nil {
		return "", err
	}
	return ks.sealState(stateBinding{principal: principal, route: route, method: method, name: name, upstream: upstream, expires: expires})
}
