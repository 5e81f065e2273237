package dataplane

import (
	"container/list"
	"context"
	"crypto/sha256"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/ops/metrics"
)

// Decision cache defaults.
const (
	// DefaultDecisionCacheMaxAge is the data plane's own bound on reusing an
	// ALLOW, whatever the control plane allows.
	DefaultDecisionCacheMaxAge = 10 * time.Second
	// DefaultDecisionCacheSize is the flag default of --decision-cache-size.
	DefaultDecisionCacheSize = 10000
	// streamStaleAfter: past this without a message from the invalidation
	// stream (heartbeats come every 250 ms), no cached decision is used.
	streamStaleAfter = 750 * time.Millisecond
	// streamDeadAfter: past this without a message the stream is dropped
	// and opened again (possibly on another replica).
	streamDeadAfter = 3 * time.Second
)

// decisionCache holds ALLOW decisions for reuse, keyed by a hash of the
// whole AuthorizeRequest (credentials including the passthrough value,
// route, HTTP and JSON-RPC method, tool/resource/prompt name, client
// address, public base): any field that could change the decision is part
// of the key. An entry is used only while the invalidation stream is
// current (connected, a message within streamStaleAfter) and has reached
// the entry's decision revision, until the earliest of its max age, the
// data plane's own maximum, and an invalidation naming its principal, API
// key, access token, route or (principal, route). Entries hold upstream
// secrets in memory only; nothing here logs them.
type decisionCache struct {
	size   int
	maxAge time.Duration
	m      *metrics.DataPlane

	mu        sync.Mutex
	now       func() time.Time // read under mu
	connected bool
	streamRev int64     // every change up to it has been applied
	lastMsg   time.Time // last message of the stream
	// seenRev is the highest revision an Authorize answer was decided on;
	// behindSince when the stream was last seen behind it without making
	// progress (zero: not behind). A stream stuck behind the revisions
	// replicas decide on (its replica no longer follows the store) is as
	// good as none after streamStaleAfter.
	seenRev     int64
	behindSince time.Time
	lru         list.List // of *cacheEntry, most recent first
	entries     map[[32]byte]*cacheEntry
	byPrinc     map[string]map[*cacheEntry]struct{}
	byKey       map[string]map[*cacheEntry]struct{}
	byToken     map[string]map[*cacheEntry]struct{}
	byRoute     map[string]map[*cacheEntry]struct{}
}

type cacheEntry struct {
	key     [32]byte
	res     *authorizev1.AuthorizeResponse // never modified once cached
	expires time.Time
	princ   string
	keyID   string
	tokenID string
	route   string
	elem    *list.Element
}

func newDecisionCache(size int, maxAge time.Duration, m *metrics.DataPlane) *decisionCache {
	c := &decisionCache{size: size, maxAge: maxAge, now: time.Now, m: m}
	c.resetLocked()
	return c
}

func (c *decisionCache) resetLocked() {
	c.lru.Init()
	c.entries = map[[32]byte]*cacheEntry{}
	c.byPrinc = map[string]map[*cacheEntry]struct{}{}
	c.byKey = map[string]map[*cacheEntry]struct{}{}
	c.byToken = map[string]map[*cacheEntry]struct{}{}
	c.byRoute = map[string]map[*cacheEntry]struct{}{}
}

// requestKey is the cache key of req: SHA-256 of its deterministic wire
// form.
func requestKey(req *authorizev1.AuthorizeRequest) ([32]byte, bool) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return [32]byte{}, false
	}
	return sha256.Sum256(b), true
}

// currentLocked reports whether cached decisions may be used at now: the
// stream is connected, was heard from lately, and is not stuck behind the
// revisions decisions are made on.
func (c *decisionCache) currentLocked(now time.Time) bool {
	return c.connected && now.Sub(c.lastMsg) < streamStaleAfter &&
		(c.behindSince.IsZero() || now.Sub(c.behindSince) < streamStaleAfter)
}

// advanceLocked moves the stream to rev: progress restarts the behind
// clock, catching up stops it.
func (c *decisionCache) advanceLocked(rev int64, now time.Time) {
	if rev > c.streamRev {
		c.streamRev = rev
		if !c.behindSince.IsZero() {
			c.behindSince = now
		}
	}
	if c.streamRev >= c.seenRev {
		c.behindSince = time.Time{}
	}
}

// observe notes the revision an Authorize answer was decided on.
func (c *decisionCache) observe(rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev > c.seenRev {
		c.seenRev = rev
	}
	if c.connected && rev > c.streamRev && c.behindSince.IsZero() {
		c.behindSince = c.now()
	}
}

// lookup returns the cached ALLOW for key, if one may be used now.
func (c *decisionCache) lookup(key [32]byte) (*authorizev1.AuthorizeResponse, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.currentLocked(now) {
		c.m.RecordCacheLookup(metrics.CacheBypass)
		return nil, false
	}
	e := c.entries[key]
	if e != nil && !now.Before(e.expires) {
		c.removeLocked(e)
		e = nil
	}
	// An entry decided on a revision the stream has not reached yet is
	// usable: it reflects every change up to its revision, and the stream
	// delivers every later one (or stops being current: not heard from,
	// or stuck behind the revisions decisions are made on).
	if e == nil {
		c.m.RecordCacheLookup(metrics.CacheMiss)
		return nil, false
	}
	c.lru.MoveToFront(e.elem)
	c.m.RecordCacheLookup(metrics.CacheHit)
	return e.res, true
}

// store caches res (the answer to the request whose key is key) when it is
// a reusable ALLOW. It must have been decided on a revision at least the
// stream's: any later change then reaches this entry through the stream.
func (c *decisionCache) store(key [32]byte, route string, res *authorizev1.AuthorizeResponse) {
	if res.GetDecision() != authorizev1.Decision_DECISION_ALLOW || res.GetCacheMaxAgeMs() <= 0 ||
		res.GetPrincipal() == "" || res.GetDecisionRevision() <= 0 {
		return
	}
	age := min(time.Duration(res.GetCacheMaxAgeMs())*time.Millisecond, c.maxAge)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.currentLocked(now) || res.GetDecisionRevision() < c.streamRev {
		return
	}
	if old := c.entries[key]; old != nil {
		c.removeLocked(old)
	}
	e := &cacheEntry{
		key: key, res: res, expires: now.Add(age),
		princ: res.GetPrincipal(), keyID: res.GetKeyId(), tokenID: res.GetAccessTokenId(), route: route,
	}
	e.elem = c.lru.PushFront(e)
	c.entries[key] = e
	index(c.byPrinc, e.princ, e)
	index(c.byKey, e.keyID, e)
	index(c.byToken, e.tokenID, e)
	index(c.byRoute, e.route, e)
	for c.lru.Len() > c.size {
		c.removeLocked(c.lru.Back().Value.(*cacheEntry))
	}
	c.m.SetCacheState(c.lru.Len(), true)
}

func index(m map[string]map[*cacheEntry]struct{}, k string, e *cacheEntry) {
	if k == "" {
		return
	}
	s := m[k]
	if s == nil {
		s = map[*cacheEntry]struct{}{}
		m[k] = s
	}
	s[e] = struct{}{}
}

func unindex(m map[string]map[*cacheEntry]struct{}, k string, e *cacheEntry) {
	if s := m[k]; s != nil {
		delete(s, e)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

func (c *decisionCache) removeLocked(e *cacheEntry) {
	if c.entries[e.key] != e {
		return
	}
	delete(c.entries, e.key)
	c.lru.Remove(e.elem)
	unindex(c.byPrinc, e.princ, e)
	unindex(c.byKey, e.keyID, e)
	unindex(c.byToken, e.tokenID, e)
	unindex(c.byRoute, e.route, e)
}

// removeAllLocked removes the entries of set (an index's value) and
// returns how many.
func (c *decisionCache) removeAllLocked(set map[*cacheEntry]struct{}, keep func(*cacheEntry) bool) int {
	n := 0
	for e := range set {
		if keep != nil && keep(e) {
			continue
		}
		c.removeLocked(e)
		n++
	}
	return n
}

// connect starts a stream at its first message: everything cached before
// is dropped (changes may have been missed meanwhile).
func (c *decisionCache) connect(msg *authorizev1.WatchInvalidationsResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m.RecordCacheInvalidation(metrics.InvalidateConnect, c.lru.Len())
	c.resetLocked()
	c.connected, c.streamRev, c.lastMsg = true, msg.GetRevision(), c.now()
	c.behindSince = time.Time{}
	if c.streamRev < c.seenRev {
		c.behindSince = c.lastMsg
	}
	c.m.SetCacheState(0, true)
}

// disconnect ends the stream: nothing cached is used or kept.
func (c *decisionCache) disconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m.RecordCacheInvalidation(metrics.InvalidateConnect, c.lru.Len())
	c.resetLocked()
	c.connected = false
	c.m.SetCacheState(0, false)
}

// apply applies one stream message.
func (c *decisionCache) apply(msg *authorizev1.WatchInvalidationsResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastMsg = c.now()
	c.advanceLocked(msg.GetRevision(), c.lastMsg)
	if msg.GetHeartbeat() {
		c.m.SetCacheState(c.lru.Len(), true)
		return
	}
	if msg.GetAll() {
		c.m.RecordCacheInvalidation(metrics.InvalidateAll, c.lru.Len())
		c.resetLocked()
		c.m.SetCacheState(0, true)
		return
	}
	for _, p := range msg.GetPrincipals() {
		c.m.RecordCacheInvalidation(metrics.InvalidatePrincipal, c.removeAllLocked(c.byPrinc[p], nil))
	}
	for _, k := range msg.GetKeyIds() {
		c.m.RecordCacheInvalidation(metrics.InvalidateKey, c.removeAllLocked(c.byKey[k], nil))
	}
	for _, t := range msg.GetAccessTokenIds() {
		c.m.RecordCacheInvalidation(metrics.InvalidateToken, c.removeAllLocked(c.byToken[t], nil))
	}
	for _, r := range msg.GetRoutes() {
		c.m.RecordCacheInvalidation(metrics.InvalidateRoute, c.removeAllLocked(c.byRoute[r], nil))
	}
	for _, g := range msg.GetGrants() {
		c.m.RecordCacheInvalidation(metrics.InvalidateGrant, c.removeAllLocked(c.byPrinc[g.GetPrincipal()],
			func(e *cacheEntry) bool { return e.route != g.GetRoute() }))
	}
	c.m.SetCacheState(c.lru.Len(), true)
}

// forget drops principal's entries for route (an upstream refused the
// credential a cached decision carried).
func (c *decisionCache) forget(principal, route string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m.RecordCacheInvalidation(metrics.InvalidateGrant, c.removeAllLocked(c.byPrinc[principal],
		func(e *cacheEntry) bool { return e.route != route }))
}

// len returns the number of entries.
func (c *decisionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// watchInvalidations follows the control plane's invalidation stream until
// ctx ends, on one replica at a time, reconnecting (and flushing) after any
// failure or silence.
func (p *Proxy) watchInvalidations(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		for _, r := range p.cp.order() {
			if ctx.Err() != nil {
				return
			}
			got, err := p.watchOnce(ctx, r)
			if ctx.Err() != nil {
				return
			}
			if got {
				backoff = 50 * time.Millisecond
			}
			p.log.DebugContext(ctx, "invalidation stream ended", slog.String("code", codeOf(err)))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// watchOnce follows one replica's stream; got says a message arrived.
func (p *Proxy) watchOnce(ctx context.Context, r *replica) (got bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A silent stream (a dead connection, a replica that stopped following
	// its store) is dropped so another replica can be tried.
	watchdog := time.AfterFunc(streamDeadAfter, cancel)
	defer watchdog.Stop()
	stream, err := r.client.WatchInvalidations(sctx, &authorizev1.WatchInvalidationsRequest{})
	if err != nil {
		return false, err
	}
	defer func() { _ = stream.Close() }()
	defer p.dcache.disconnect()
	for stream.Receive() {
		watchdog.Reset(streamDeadAfter)
		if !got {
			p.dcache.connect(stream.Msg())
			got = true
			continue
		}
		p.dcache.apply(stream.Msg())
	}
	return got, stream.Err()
}
