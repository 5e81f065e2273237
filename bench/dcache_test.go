package bench

import (
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/internal/stacktest"
	"github.com/mcpgate/mcpgate/ops/metrics"
)

// lookups sums the decision cache's lookup counter by result.
func lookups(b *testing.B, m *metrics.DataPlane) map[string]float64 {
	b.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "mcpgate_dataplane_decision_cache_lookups_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "result" {
					out[l.GetValue()] += s.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDecisionCache compares tools/call round trips through two full
// stacks in the same run, one with the data plane's decision cache off and
// one with it on, in the steady state: the same credentials in use, and
// meanwhile credentials of another principal being created (store
// revisions advance; nothing a cached decision depends on changes). It
// reports each path's p50, mean wall time and process CPU time per call,
// their ratios, and the cache hit ratio over the measured calls (target
// ≥ 0.99).
func BenchmarkDecisionCache(b *testing.B) {
	m := metrics.NewDataPlane()
	off := stacktest.Start(b, stacktest.WithDataPlaneConfig(func(c *dataplane.Config) { c.DecisionCacheSize = 0 }))
	on := stacktest.Start(b, stacktest.WithDataPlaneConfig(func(c *dataplane.Config) {
		c.DecisionCacheSize = dataplane.DefaultDecisionCacheSize
		c.Metrics = m
	}))
	offKey := off.AddUser("bench", stacktest.GateRoute)
	onKey := on.AddUser("bench", stacktest.GateRoute)
	on.AddUser("other", stacktest.GateRoute)
	for _, tc := range []struct {
		name    string
		calls   int
		workers int
	}{
		{"sequential", seqCalls, 1},
		{"concurrent", concCalls, concWorkers},
	} {
		b.Run(tc.name, func(b *testing.B) {
			gwOff := sessions(b, off.RouteURL(stacktest.GateRoute), offKey, tc.workers)
			gwOn := sessions(b, on.RouteURL(stacktest.GateRoute), onKey, tc.workers)
			measure(b, gwOff, tc.workers*50) // warm connections and the cache
			measure(b, gwOn, tc.workers*50)

			// Steady-state writes: another principal's keys being created.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				t := time.NewTicker(20 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
						on.NewKey("other")
					}
				}
			})
			defer func() { close(stop); wg.Wait() }()

			var r0, r1 result
			var t0, t1, c0, c1 time.Duration
			before := lookups(b, m)
			n := 0
			for b.Loop() {
				s, c := time.Now(), cpuTime(b)
				r0 = measure(b, gwOff, tc.calls)
				t0 += time.Since(s)
				c0 += cpuTime(b) - c
				s, c = time.Now(), cpuTime(b)
				r1 = measure(b, gwOn, tc.calls)
				t1 += time.Since(s)
				c1 += cpuTime(b) - c
				n += tc.calls
			}
			after := lookups(b, m)
			hits := after[metrics.CacheHit] - before[metrics.CacheHit]
			total := hits + after[metrics.CacheMiss] - before[metrics.CacheMiss] + after[metrics.CacheBypass] - before[metrics.CacheBypass]
			b.ReportMetric(us(r0.p50), "nocache-p50-µs")
			b.ReportMetric(us(r1.p50), "cache-p50-µs")
			b.ReportMetric(float64(r1.p50)/float64(r0.p50), "p50-cache/nocache")
			b.ReportMetric(float64(t0.Nanoseconds())/float64(n), "nocache-ns/call")
			b.ReportMetric(float64(t1.Nanoseconds())/float64(n), "cache-ns/call")
			b.ReportMetric(r1.rps/r0.rps, "req/s-cache/nocache")
			// CPU of the whole test process (clients, both stacks, etcd)
			// while each path ran: less sensitive to a loaded machine
			// than latency.
			b.ReportMetric(float64(c0.Microseconds())/float64(n), "nocache-cpu-µs/call")
			b.ReportMetric(float64(c1.Microseconds())/float64(n), "cache-cpu-µs/call")
			b.ReportMetric(float64(c1)/float64(c0), "cpu-cache/nocache")
			if total > 0 {
				b.ReportMetric(hits/total, "hit-ratio")
			}
			b.ReportMetric(after[metrics.CacheMiss]-before[metrics.CacheMiss], "misses")
			b.ReportMetric(after[metrics.CacheBypass]-before[metrics.CacheBypass], "bypasses")
			b.ReportMetric(0, "ns/op")
		})
	}
}
