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

// SetDecisionCacheClock replaces the decision cache's clock (staleness of
// the invalidation stream, entry ages); a stream already connected counts
// as heard from at the new clock's now.
func SetDecisionCacheClock(p *Proxy, now func() time.Time) {
	p.dcache.mu.Lock()
	defer p.dcache.mu.Unlock()
	p.dcache.now = now
	if p.dcache.connected {
		p.dcache.lastMsg = now()
	}
}

// DecisionCacheCurrent reports whether cached decisions may be used now.
func DecisionCacheCurrent(p *Proxy) bool {
	c := p.dcache
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.currentLocked(c.now())
}

// DecisionCacheRevision is the revision the invalidation stream reached.
func DecisionCacheRevision(p *Proxy) int64 {
	p.dcache.mu.Lock()
	defer p.dcache.mu.Unlock()
	return p.dcache.streamRev
}

// DecisionCacheLen is the number of cached decisions.
func DecisionCacheLen(p *Proxy) int { return p.dcache.len() }

// DecisionCacheHeardAt is when (by the cache's clock) the stream's last
// message was applied.
func DecisionCacheHeardAt(p *Proxy) time.Time {
	p.dcache.mu.Lock()
	defer p.dcache.mu.Unlock()
	return p.dcache.lastMsg
}
