package oauth

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/api/wire"
)

// maxLimiterEntries bounds the per-address limiters a replica keeps for one
// endpoint class.
const maxLimiterEntries = 10000

// addrLimiter is a token bucket (golang.org/x/time/rate) per client address,
// in memory, so the limit is per control-plane replica. The map is bounded:
// when full, entries whose bucket has refilled (idle at least the time a
// full refill takes) are dropped, since a fresh bucket is the same thing;
// when none has, the least recently seen entry goes.
type addrLimiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	refill  time.Duration // time to refill a whole bucket
	now     func() time.Time
	entries map[string]*limEntry
	max     int
}

type limEntry struct {
	lim  *rate.Limiter
	last time.Time
}

// newAddrLimiter allows perMin requests a minute per address, all of them
// at once after an idle minute.
func newAddrLimiter(perMin int, now func() time.Time) *addrLimiter {
	return &addrLimiter{
		every:   rate.Limit(float64(perMin) / 60),
		burst:   perMin,
		refill:  time.Minute,
		now:     now,
		entries: map[string]*limEntry{},
		max:     maxLimiterEntries,
	}
}

// take takes one token of addr's bucket. When there is none it returns
// false and how long until there is one.
func (l *addrLimiter) take(addr string) (bool, time.Duration) {
	key := limitKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, ok := l.entries[key]
	if !ok {
		if len(l.entries) >= l.max {
			l.evict(now)
		}
		e = &limEntry{lim: rate.NewLimiter(l.every, l.burst)}
		l.entries[key] = e
	}
	e.last = now
	r := e.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, l.refill
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// evict drops refilled entries, or the least recently seen one. Callers
// hold l.mu.
func (l *addrLimiter) evict(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, e := range l.entries {
		if now.Sub(e.last) >= l.refill {
			delete(l.entries, k)
			continue
		}
		if oldest == "" || e.last.Before(oldestAt) {
			oldest, oldestAt = k, e.last
		}
	}
	if len(l.entries) >= l.max && oldest != "" {
		delete(l.entries, oldest)
	}
}

// limitKey is what a client address is limited by: the IPv4 address, or
// the /64 of an IPv6 address (one site usually holds a whole /64, so
// per-address IPv6 limits would be free to evade). Unparsable values are
// used as they are.
func limitKey(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(addr); err2 == nil {
			a = ap.Addr()
		} else {
			return addr
		}
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// retryAfter formats a wait as whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// limited applies l to the request's client address and, when it is over
// the limit, answers 429 with Retry-After and a fixed page.
func (s *Server) limited(w http.ResponseWriter, r *http.Request, l *addrLimiter) bool {
	ok, wait := l.take(clientAddress(r))
	if ok {
		return false
	}
	w.Header().Set("Retry-After", retryAfter(wait))
	s.errorPage(w, r, http.StatusTooManyRequests, "Too many requests", "Too many requests came from your address. Wait a moment and try again.")
	return true
}

// limitedSecretLookup applies the lookup limit to the endpoints, other
// than /authorize and /signin (limited in their handlers) and /register,
// where an anonymous request makes the server read etcd for a presented
// code, token, state or session: without a limit each random secret would
// cost a linearizable read. JSON endpoints answer an OAuth error, pages a
// page; both 429 with Retry-After.
func (s *Server) limitedSecretLookup(w http.ResponseWriter, r *http.Request) bool {
	p := r.URL.Path
	json := p == "/token" || p == "/revoke"
	if !json && p != "/consent" && p != "/oauth/callback" && p != "/connections" && !strings.HasPrefix(p, "/connections/") {
		return false
	}
	if !json {
		return s.limited(w, r, s.lookupLimit)
	}
	ok, wait := s.lookupLimit.take(clientAddress(r))
	if ok {
		return false
	}
	w.Header().Set("Retry-After", retryAfter(wait))
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusTooManyRequests, oauthError{"slow_down", "too many requests from this address"})
	return true
}

// clientAddress is the address the data plane saw the request from. The
// authorization server is served only behind the data-plane credential
// check (controlplane.NewHandler mounts it under /relay with
// authorizeapi.RequireDataPlane), and the data plane strips any
// X-MCPGate-* header a client sends before setting this one, so the header
// is trusted; without it (a direct caller) the connection's address counts.
func clientAddress(r *http.Request) string {
	if a := r.Header.Get(wire.HeaderClientAddress); a != "" {
		return a
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().String()
	}
	return r.RemoteAddr
}
