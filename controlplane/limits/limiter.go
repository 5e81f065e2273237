package limits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Window is one of a limit's counting windows: UTC-aligned, fixed.
type Window struct {
	Name string
	Len  time.Duration
}

// The windows of RateLimit.per_second, per_minute and per_day.
var (
	Second = Window{"second", time.Second}
	Minute = Window{"minute", time.Minute}
	Day    = Window{"day", 24 * time.Hour}
)

// Bound is one window of a limit with its bound.
type Bound struct {
	Window Window
	Limit  int64
}

// Bounds returns l's windows that have a bound, shortest first.
func Bounds(l *configv1.RateLimit) []Bound {
	out := make([]Bound, 0, 3)
	for _, b := range []Bound{{Second, l.GetPerSecond()}, {Minute, l.GetPerMinute()}, {Day, l.GetPerDay()}} {
		if b.Limit > 0 {
			out = append(out, b)
		}
	}
	return out
}

// start is the start of the window w that contains t (UTC, Unix seconds).
func (w Window) start(t time.Time) int64 {
	secs := int64(w.Len / time.Second)
	u := t.Unix()
	return u - ((u%secs)+secs)%secs
}

// Refusal says which limit refused a call and for how long.
type Refusal struct {
	LimitID string
	Window  string
	// RetryAfter is the whole seconds until the window resets, at least 1.
	RetryAfter int64
}

// ChunkFraction: a replica takes at most limit/(ChunkFraction × replicas)
// units of a window's global count at a time (and at most its share of
// what remains, at least one), so the units handed out but never spent
// are at most max(limit/ChunkFraction, replicas) in all (docs/limits.md).
const ChunkFraction = 10

// Chunk is how many units a replica takes from a window's counter with
// limit and granted units already handed out, among replicas: at most
// limit/(ChunkFraction×replicas) and at most the replica's share of the
// rest, at least 1 while any remain; 0 when none do.
func Chunk(limit, granted int64, replicas int) int64 {
	rest := limit - granted
	if rest <= 0 {
		return 0
	}
	r := int64(max(replicas, 1))
	return max(1, min(limit/(ChunkFraction*r), rest/r))
}

// takeTimeout bounds taking one chunk (the etcd round trips of one
// compare-and-swap loop).
const takeTimeout = 5 * time.Second

// refreshRegistration is how often a limiter re-registers its replica.
const refreshRegistration = 10 * time.Second

// sweepEvery is how often (on the limiter's clock) ended windows' local
// state is dropped.
const sweepEvery = 10 * time.Second

// Limiter counts calls against the rate limits of its store. One per
// control-plane replica; safe for concurrent use.
type Limiter struct {
	st  *store.Store
	now func() time.Time
	log *slog.Logger
	id  string

	snap atomic.Pointer[snapshot]

	mu        sync.Mutex
	buckets   map[string]*bucket // by bucketKey: the current window of each count
	plans     map[string]*plan   // by planKey
	nextSweep time.Time

	regMu sync.Mutex
	regAt time.Time
}

// snapshot is the store's limits as of one cache state, indexed for
// Check.
type snapshot struct {
	limits  []*configv1.RateLimit
	changed <-chan struct{}
	// With no limit naming groups, the limits a principal may be counted
	// by are everyone's and its own: Check looks at those only.
	hasGroups   bool
	all         []*compiled
	everyone    []*compiled
	byPrincipal map[string][]*compiled
}

// compiled is a limit with what Check needs precomputed.
type compiled struct {
	l      *configv1.RateLimit
	bounds []Bound
	// suffix[i] ends the bucket key of bounds[i] (see bucketKey).
	suffix []string
}

func newSnapshot(ls []*configv1.RateLimit, changed <-chan struct{}) *snapshot {
	s := &snapshot{limits: ls, changed: changed, byPrincipal: map[string][]*compiled{}}
	for _, l := range ls {
		c := &compiled{l: l, bounds: Bounds(l)}
		for _, b := range c.bounds {
			c.suffix = append(c.suffix, "\x00"+l.GetId()+"\x00"+b.Window.Name)
		}
		s.all = append(s.all, c)
		if len(l.GetGroups()) > 0 {
			s.hasGroups = true
		}
		if len(l.GetPrincipals()) == 0 && len(l.GetGroups()) == 0 {
			s.everyone = append(s.everyone, c)
			continue
		}
		seen := map[string]bool{}
		for _, p := range l.GetPrincipals() {
			if !seen[p] {
				seen[p] = true
				s.byPrincipal[p] = append(s.byPrincipal[p], c)
			}
		}
	}
	return s
}

// bucket is this replica's view of one window of one principal × server ×
// limit: the units it took from the global counter and has not spent yet.
type bucket struct {
	name  string // counter name
	limit int64
	start int64 // Unix seconds
	end   time.Time

	local int64 // guarded by Limiter.mu

	fill      sync.Mutex // serializes refills
	state     store.CounterState
	exhausted bool // the counter had nothing left for limit (guarded by fill)
}

// Option configures a Limiter.
type Option func(*Limiter)

// WithClock sets the clock of usage reports (Check is given the time of
// each call).
func WithClock(now func() time.Time) Option { return func(l *Limiter) { l.now = now } }

// WithReplicaID names the replica (default: random).
func WithReplicaID(id string) Option { return func(l *Limiter) { l.id = id } }

// New returns the limiter of st.
func New(st *store.Store, log *slog.Logger, opts ...Option) *Limiter {
	l := &Limiter{st: st, log: log, now: time.Now, buckets: map[string]*bucket{}, plans: map[string]*plan{}}
	for _, o := range opts {
		o(l)
	}
	if l.id == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		l.id = hex.EncodeToString(b[:])
	}
	return l
}

// Limits returns the store's rate limits, re-read only after the store's
// cache changed.
func (l *Limiter) Limits() []*configv1.RateLimit { return l.snapshot().limits }

func (l *Limiter) snapshot() *snapshot {
	if s := l.snap.Load(); s != nil {
		select {
		case <-s.changed:
		default:
			return s
		}
	}
	ch := l.st.RateLimitsChanged()
	s := newSnapshot(l.st.RateLimits(), ch)
	l.snap.Store(s)
	return s
}

type need struct {
	b      *bucket
	id     string
	bound  Bound
	suffix string
}

// Groups returns the groups of the principal being checked; ok false
// when they cannot be known (Check then fails closed).
type GroupsFunc func() (groups []string, ok bool)

// Check counts one call by principal to server at now (the decision's
// time; tool: params.name of a tools/call, "" otherwise) against every
// limit that applies to it. groups is asked only when a limit names
// groups. applied says whether any limit applied (the ALLOW is then not
// reusable); refused, when set, is the limit that refused the call, which
// then counted against none. An error means the count could not be made
// (etcd unreachable while a window's local units ran out, the principal's
// groups unknown): the caller fails closed.
func (l *Limiter) Check(ctx context.Context, now time.Time, principal string, groups GroupsFunc, server, tool string) (applied bool, refused *Refusal, err error) {
	snap := l.snapshot()
	if len(snap.all) == 0 {
		return false, nil, nil
	}
	// The common case, in memory under one lock: the plan of this
	// principal, server and tool is current (same limits, same windows)
	// and every window has a unit this replica took earlier.
	var kb [256]byte
	pk := planKey(kb[:0], principal, server, tool)
	l.mu.Lock()
	if p := l.plans[string(pk)]; p != nil && p.snap == snap && !now.Before(p.from) && now.Before(p.until) {
		if len(p.needs) == 0 {
			l.mu.Unlock()
			return false, nil, nil
		}
		ok := takeLocked(p.needs)
		l.mu.Unlock()
		if ok {
			return true, nil, nil
		}
		return l.refill(ctx, now, p.needs)
	}
	l.mu.Unlock()

	needs, err := snap.needs(principal, groups, server, tool)
	if err != nil {
		return true, nil, err
	}
	np := &plan{snap: snap, needs: needs, until: maxTime}
	key := append(append(append(kb[len(pk):len(pk)], principal...), 0), server...)
	l.mu.Lock()
	if now.After(l.nextSweep) {
		l.sweepLocked(now, snap)
	}
	for i := range needs {
		b := l.bucketLocked(append(key, needs[i].suffix...), principal, server, needs[i].id, needs[i].bound, now)
		needs[i].b = b
		if t := time.Unix(b.start, 0); t.After(np.from) {
			np.from = t
		}
		if b.end.Before(np.until) {
			np.until = b.end
		}
	}
	if len(l.plans) >= maxPlans {
		clear(l.plans)
	}
	l.plans[string(pk)] = np
	ok := len(needs) > 0 && takeLocked(needs)
	l.mu.Unlock()
	switch {
	case len(needs) == 0:
		return false, nil, nil
	case ok:
		return true, nil, nil
	}
	return l.refill(ctx, now, needs)
}

// maxPlans bounds the plans a limiter keeps (tool names are the client's):
// past it they are dropped and rebuilt as calls come.
const maxPlans = 1 << 16

// maxTime is the end of a plan no window bounds.
var maxTime = time.Unix(1<<62, 0)

// plan is what Check found for one principal × server × tool: the
// windows to count (none: no limit applies), valid for one snapshot of
// the limits and while now is in every window.
type plan struct {
	snap        *snapshot
	needs       []need
	from, until time.Time
}

// planKey appends the plan key of principal × server × tool to buf (the
// names follow api/wire's grammar, the tool comes last).
func planKey(buf []byte, principal, server, tool string) []byte {
	buf = append(buf, principal...)
	buf = append(buf, 0)
	buf = append(buf, server...)
	buf = append(buf, 0)
	return append(buf, tool...)
}

// takeLocked spends one unit of every window when each has one.
func takeLocked(needs []need) bool {
	for _, n := range needs {
		if n.b.local < 1 {
			return false
		}
	}
	for _, n := range needs {
		n.b.local--
	}
	return true
}

// needs returns the windows of the limits that apply to the call.
func (snap *snapshot) needs(principal string, groups GroupsFunc, server, tool string) ([]need, error) {
	var needs []need
	add := func(c *compiled) {
		for i, b := range c.bounds {
			needs = append(needs, need{id: c.l.GetId(), bound: b, suffix: c.suffix[i]})
		}
	}
	if !snap.hasGroups {
		for _, cs := range [2][]*compiled{snap.everyone, snap.byPrincipal[principal]} {
			for _, c := range cs {
				if appliesToServer(c.l, server) && appliesToTool(c.l, tool) {
					add(c)
				}
			}
		}
		return needs, nil
	}
	var gs []string
	haveGroups := false
	for _, c := range snap.all {
		if !appliesToServer(c.l, server) {
			continue
		}
		if len(c.l.GetGroups()) > 0 && !haveGroups {
			var ok bool
			if gs, ok = groups(); !ok {
				return nil, errNoGroups
			}
			haveGroups = true
		}
		if appliesToPrincipal(c.l, principal, gs) && appliesToTool(c.l, tool) {
			add(c)
		}
	}
	return needs, nil
}

// refill takes chunks for the windows without a local unit, then spends
// one unit of each; a refusal when a window has none left.
func (l *Limiter) refill(ctx context.Context, now time.Time, needs []need) (bool, *Refusal, error) {
	for range 8 {
		for _, n := range needs {
			if r, err := l.ensure(ctx, n, now); err != nil || r != nil {
				return true, r, err
			}
		}
		l.mu.Lock()
		ok := takeLocked(needs)
		l.mu.Unlock()
		if ok {
			return true, nil, nil
		}
		// A concurrent call spent a unit in between: take again.
	}
	return true, nil, fmt.Errorf("rate limit: %w", store.ErrConflict)
}

// errNoGroups: the principal's groups could not be read.
var errNoGroups = errors.New("rate limit: principal's groups unknown")

// ensure makes sure n's bucket has a local unit, taking a chunk of the
// global counter when it has none; a refusal when the window has none
// left.
func (l *Limiter) ensure(ctx context.Context, n need, now time.Time) (*Refusal, error) {
	b := n.b
	l.mu.Lock()
	has := b.local >= 1
	l.mu.Unlock()
	if has {
		return nil, nil
	}
	b.fill.Lock()
	defer b.fill.Unlock()
	l.mu.Lock()
	has = b.local >= 1
	l.mu.Unlock()
	if has {
		return nil, nil
	}
	refuse := &Refusal{LimitID: n.id, Window: n.bound.Window.Name, RetryAfter: retryAfter(b.end, now)}
	if b.exhausted {
		return refuse, nil
	}
	// Not cut short by the caller going away: a write that happened but was
	// not seen would lose its chunk.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), takeTimeout)
	defer cancel()
	l.register(ctx)
	replicas := l.st.RateLimitReplicas()
	took, state, err := l.st.TakeRateLimitUnits(ctx, b.name, n.bound.Window.Name, n.bound.Window.Len, b.state,
		func(granted int64) (int64, int64) { return Chunk(b.limit, granted, replicas), b.limit })
	if err != nil {
		return nil, err
	}
	b.state = state
	if took == 0 {
		b.exhausted = true
		return refuse, nil
	}
	l.mu.Lock()
	b.local += took
	l.mu.Unlock()
	return nil, nil
}

func retryAfter(end, now time.Time) int64 {
	d := end.Sub(now)
	secs := int64((d + time.Second - 1) / time.Second)
	return max(secs, 1)
}

// register (re-)registers this replica, at most every refreshRegistration.
func (l *Limiter) register(ctx context.Context) {
	l.regMu.Lock()
	defer l.regMu.Unlock()
	if !l.regAt.IsZero() && time.Since(l.regAt) < refreshRegistration {
		return
	}
	l.regAt = time.Now()
	if err := l.st.RegisterRateLimitReplica(ctx, l.id); err != nil {
		l.log.WarnContext(ctx, "rate limits: replica registration failed", slog.Any("err", err))
	}
}

// counterName names the global counter of principal × server × limit id
// in the window of bound starting at start. Names follow api/wire's
// grammar, so "/" separates them unambiguously.
func counterName(principal, server, id, window string, start int64) string {
	return fmt.Sprintf("%s/%s/%s/%s/%d", principal, server, id, window, start)
}

// bucketKey appends to buf the map key of the count of principal ×
// server × limit id in windows of the given name (names follow api/wire's
// grammar, so the separator is unambiguous).
func bucketKey(buf []byte, principal, server, id, window string) []byte {
	buf = append(buf, principal...)
	buf = append(buf, 0)
	buf = append(buf, server...)
	buf = append(buf, 0)
	buf = append(buf, id...)
	buf = append(buf, 0)
	return append(buf, window...)
}

// bucketLocked returns the bucket (whose key is kb, bucketKey's) of the
// window of bound containing now, replacing the bucket of an earlier window
// (or of another bound: the units it holds are then counted against the
// new bound).
func (l *Limiter) bucketLocked(kb []byte, principal, server, id string, bound Bound, now time.Time) *bucket {
	start := bound.Window.start(now)
	b := l.buckets[string(kb)]
	if b != nil && b.start == start && b.limit == bound.Limit {
		return b
	}
	nb := &bucket{
		name:  counterName(principal, server, id, bound.Window.Name, start),
		limit: bound.Limit,
		start: start,
		end:   time.Unix(start, 0).Add(bound.Window.Len),
	}
	if b != nil && b.start == start {
		nb.local, nb.state = b.local, b.state
	}
	l.buckets[string(kb)] = nb
	return nb
}

// sweepLocked drops the local state of windows that ended and the plans
// of other snapshots or ended windows.
func (l *Limiter) sweepLocked(now time.Time, snap *snapshot) {
	for k, b := range l.buckets {
		if !now.Before(b.end) {
			delete(l.buckets, k)
		}
	}
	for k, p := range l.plans {
		if p.snap != snap || !now.Before(p.until) {
			delete(l.plans, k)
		}
	}
	l.nextSweep = now.Add(sweepEvery)
}

// Usage is one window of one limit for one server, now.
type Usage struct {
	LimitID   string
	Server    string
	Window    string
	Limit     int64
	Used      int64
	Remaining int64
	Reset     int64
}

// Usage reports, for principal p, every limit that applies to it (for any
// server or tool) with each window's usage now, per server: the servers the
// limit names, or for a limit over every server the servers with a count
// in the window ("*" when none has). Used is the global count less the
// units this replica holds unspent; units other replicas hold count as
// used (at most limit/ChunkFraction in all).
func (l *Limiter) Usage(ctx context.Context, p *configv1.Principal) ([]Usage, error) {
	now := l.now()
	groups := Groups(p)
	counters, err := l.st.RateLimitCounters(ctx, p.GetName()+"/")
	if err != nil {
		return nil, err
	}
	var out []Usage
	for _, lim := range l.Limits() {
		if !appliesToPrincipal(lim, p.GetName(), groups) {
			continue
		}
		for _, bound := range Bounds(lim) {
			start := bound.Window.start(now)
			end := time.Unix(start, 0).Add(bound.Window.Len)
			servers := serversOf(lim)
			if servers == nil {
				for name := range counters {
					var pr, srv, id, w string
					var st int64
					if parseCounterName(name, &pr, &srv, &id, &w, &st) && id == lim.GetId() && w == bound.Window.Name && st == start {
						servers = append(servers, srv)
					}
				}
				if len(servers) == 0 {
					servers = []string{"*"}
				}
				sort.Strings(servers)
			}
			for _, srv := range servers {
				name := counterName(p.GetName(), srv, lim.GetId(), bound.Window.Name, start)
				used := counters[name].Granted
				l.mu.Lock()
				if b := l.buckets[string(bucketKey(nil, p.GetName(), srv, lim.GetId(), bound.Window.Name))]; b != nil && b.start == start {
					used -= b.local
				}
				l.mu.Unlock()
				used = max(0, min(used, bound.Limit))
				out = append(out, Usage{
					LimitID: lim.GetId(), Server: srv, Window: bound.Window.Name,
					Limit: bound.Limit, Used: used, Remaining: bound.Limit - used,
					Reset: retryAfter(end, now),
				})
			}
		}
	}
	return out, nil
}

// serversOf returns the servers a limit names, nil for every server.
func serversOf(l *configv1.RateLimit) []string {
	var out []string
	for _, s := range l.GetServers() {
		if s == "*" {
			return nil
		}
		out = append(out, s)
	}
	return out
}
