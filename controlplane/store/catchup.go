package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of the catch-up reads' bound (per store, so per replica).
const (
	DefaultCatchUpPerSecond = 20
	DefaultCatchUpBurst     = 5
	catchUpTimeout          = time.Second
)

// ErrCatchUpLimited is CatchUp's answer when reads are over their rate for
// longer than a caller would wait.
var ErrCatchUpLimited = errors.New("catch-up reads over their rate")

// Option configures a Store.
type Option func(*Store)

// WithCatchUpRate bounds CatchUp's etcd reads to perSecond a second with
// bursts of burst (both at least 1).
func WithCatchUpRate(perSecond float64, burst int) Option {
	return func(s *Store) {
		s.catchUp.lim = rate.NewLimiter(rate.Limit(max(perSecond, 1e-3)), max(burst, 1))
	}
}

// CatchUp returns once the cache reflects etcd as it was when CatchUp was
// called: the revision of a linearizable read that started after the call.
// So whatever was written before the call (a key, a token just issued by
// another replica) is in the cache when it returns nil.
//
// Callers share reads, so a flood of unknown credentials costs etcd a
// constant: at most one read is in flight per store, reads start at most at
// the catch-up rate, and one read serves every caller that arrived before
// it started. A caller arriving while a read is in flight waits for the
// next one (the current one may have started before it arrived). It fails
// with ctx's error when ctx ends first, and with the read's error.
func (s *Store) CatchUp(ctx context.Context) error {
	return s.catchUp.do(ctx)
}

// coalescer runs shared catch-up rounds. A round is pending (callers join
// it) until the loop takes it, right before its read starts.
type coalescer struct {
	lim  *rate.Limiter
	read func(ctx context.Context) error

	mu      sync.Mutex
	pending *round
	running bool // the loop goroutine is live

	reads int64 // reads started (guarded by mu), for tests and metrics
}

type round struct {
	done chan struct{}
	err  error
}

func (c *coalescer) do(ctx context.Context) error {
	c.mu.Lock()
	if c.pending == nil {
		c.pending = &round{done: make(chan struct{})}
	}
	r := c.pending
	if !c.running {
		c.running = true
		go c.loop()
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// loop runs rounds while callers wait for one, one at a time, spaced by
// the limiter; callers keep joining the pending round while it waits.
func (c *coalescer) loop() {
	for {
		c.mu.Lock()
		if c.pending == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		res := c.lim.Reserve()
		d := res.Delay()
		if d > catchUpTimeout {
			// Over the rate for longer than anyone waits: the pending
			// callers are answered at once (their first decision stands).
			res.Cancel()
			c.finish(ErrCatchUpLimited)
			continue
		}
		time.Sleep(d)
		r := c.take()
		ctx, cancel := context.WithTimeout(context.Background(), catchUpTimeout)
		r.err = c.read(ctx)
		cancel()
		close(r.done)
	}
}

// take takes the pending round to run its read.
func (c *coalescer) take() *round {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.pending
	c.pending = nil
	c.reads++
	return r
}

// finish ends the pending round without a read.
func (c *coalescer) finish(err error) {
	c.mu.Lock()
	r := c.pending
	c.pending = nil
	c.mu.Unlock()
	r.err = err
	close(r.done)
}

// CatchUpReads reports how many catch-up reads this store has made.
func (s *Store) CatchUpReads() int64 {
	s.catchUp.mu.Lock()
	defer s.catchUp.mu.Unlock()
	return s.catchUp.reads
}

// catchUpRead reads etcd's current revision and waits for the cache to
// reach it.
func (s *Store) catchUpRead(ctx context.Context) error {
	rev, err := s.HeadRevision(ctx)
	if err != nil {
		return err
	}
	return s.WaitRevision(ctx, rev)
}
