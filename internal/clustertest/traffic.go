package clustertest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Traffic keeps MCP clients calling the echo tool until stopped and
// records every outcome.
type Traffic struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	ok      int
	lat     []time.Duration
	fails   []Failure
	firstAt time.Time
}

// Failure is one failed call.
type Failure struct {
	At  time.Time
	Err string
}

// StartTraffic starts one worker per client, each calling echo in a loop
// with pause between calls.
func StartTraffic(ctx context.Context, clients []*Client, pause time.Duration) *Traffic {
	ctx, cancel := context.WithCancel(ctx)
	tr := &Traffic{cancel: cancel, firstAt: time.Now()}
	for w, c := range clients {
		tr.wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				start := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
				err := c.Echo(cctx, fmt.Sprintf("w%d-%d", w, i))
				ccancel()
				if ctx.Err() != nil {
					return // stopped mid-call: not an outcome
				}
				tr.record(start, err)
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	return tr
}

func (tr *Traffic) record(start time.Time, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if err != nil {
		tr.fails = append(tr.fails, Failure{At: time.Now(), Err: err.Error()})
		return
	}
	tr.ok++
	tr.lat = append(tr.lat, time.Since(start))
}

// OK is the number of successful calls so far.
func (tr *Traffic) OK() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.ok
}

// WaitOK waits until n more calls succeeded than now (traffic is flowing).
func (tr *Traffic) WaitOK(ctx context.Context, n int) error {
	target := tr.OK() + n
	for tr.OK() < target {
		select {
		case <-ctx.Done():
			return fmt.Errorf("traffic: %d calls succeeded, waited for %d: %w", tr.OK(), target, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// Result summarises a traffic run.
type Result struct {
	OK            int
	Failures      []Failure
	P50, P99, Max time.Duration
	Duration      time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("%d ok, %d failed in %v; latency p50 %v p99 %v max %v",
		r.OK, len(r.Failures), r.Duration.Round(time.Millisecond), r.P50, r.P99, r.Max)
}

// Stop stops the workers and summarises.
func (tr *Traffic) Stop() Result {
	tr.cancel()
	tr.wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	r := Result{OK: tr.ok, Failures: tr.fails, Duration: time.Since(tr.firstAt)}
	if len(tr.lat) > 0 {
		l := slices.Clone(tr.lat)
		slices.Sort(l)
		r.P50 = l[len(l)/2].Round(100 * time.Microsecond)
		r.P99 = l[len(l)*99/100].Round(100 * time.Microsecond)
		r.Max = l[len(l)-1].Round(100 * time.Microsecond)
	}
	return r
}
