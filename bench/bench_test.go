package bench

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// Calls per measurement: fixed, so that direct and gateway numbers come
// from the same amount of work in the same run.
const (
	seqCalls    = 2000
	concCalls   = 8000
	concWorkers = 16
)

type headerTransport struct {
	h    http.Header
	base http.RoundTripper
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, vs := range t.h {
		r.Header[k] = vs
	}
	return t.base.RoundTrip(r)
}

func httpClient(key string) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2 * concWorkers
	var rt http.RoundTripper = tr
	if key != "" {
		rt = headerTransport{h: http.Header{"X-Mcpgate-Api-Key": {key}}, base: tr}
	}
	return &http.Client{Transport: rt}
}

// sessions opens n Go SDK client sessions to endpoint.
func sessions(b *testing.B, endpoint, key string, n int) []*mcp.ClientSession {
	b.Helper()
	hc := httpClient(key)
	out := make([]*mcp.ClientSession, n)
	for i := range out {
		c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
		cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: endpoint, HTTPClient: hc, DisableStandaloneSSE: true}, nil)
		if err != nil {
			b.Fatalf("connect %s: %v", endpoint, err)
		}
		b.Cleanup(func() { _ = cs.Close() })
		out[i] = cs
	}
	return out
}

type result struct {
	p50, p99 time.Duration
	rps      float64
}

// measure makes calls tools/call echo round trips spread over the sessions
// (one worker each) and returns latency percentiles and throughput.
func measure(b *testing.B, ss []*mcp.ClientSession, calls int) result {
	b.Helper()
	lat := make([]time.Duration, calls)
	per := calls / len(ss)
	var wg sync.WaitGroup
	errc := make(chan error, len(ss))
	start := time.Now()
	for w, cs := range ss {
		wg.Go(func() {
			for i := range per {
				t0 := time.Now()
				res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "ping"}})
				if err == nil && res.IsError {
					err = context.Canceled
				}
				if err != nil {
					errc <- err
					return
				}
				lat[w*per+i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		b.Fatalf("tools/call: %v", err)
	}
	lat = lat[:per*len(ss)]
	slices.Sort(lat)
	return result{
		p50: lat[len(lat)/2],
		p99: lat[len(lat)*99/100],
		rps: float64(len(lat)) / elapsed.Seconds(),
	}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// report puts direct, gateway and gateway/direct ratios on one line.
func report(b *testing.B, direct, gw result) {
	b.ReportMetric(us(direct.p50), "direct-p50-µs")
	b.ReportMetric(us(direct.p99), "direct-p99-µs")
	b.ReportMetric(direct.rps, "direct-req/s")
	b.ReportMetric(us(gw.p50), "gw-p50-µs")
	b.ReportMetric(us(gw.p99), "gw-p99-µs")
	b.ReportMetric(gw.rps, "gw-req/s")
	b.ReportMetric(float64(gw.p50)/float64(direct.p50), "p50-gw/direct")
	b.ReportMetric(float64(gw.p99)/float64(direct.p99), "p99-gw/direct")
	b.ReportMetric(gw.rps/direct.rps, "req/s-gw/direct")
	b.ReportMetric(0, "ns/op") // the per-iteration time is a fixed batch, not a call
}

// BenchmarkToolsCall compares tools/call round trips straight to the
// upstream and through the full stack, sequentially (one session) and
// concurrently (concWorkers sessions). Each iteration is a fixed batch of
// calls for both paths, alternating so both see the same machine load.
func BenchmarkToolsCall(b *testing.B) {
	s := stacktest.Start(b)
	key := s.AddUser("bench", stacktest.GateRoute)
	for _, tc := range []struct {
		name    string
		calls   int
		workers int
	}{
		{"sequential", seqCalls, 1},
		{"concurrent", concCalls, concWorkers},
	} {
		b.Run(tc.name, func(b *testing.B) {
			direct := sessions(b, s.UpstreamURL, "", tc.workers)
			gw := sessions(b, s.RouteURL(stacktest.GateRoute), key, tc.workers)
			measure(b, direct, tc.workers*50) // warm connections
			measure(b, gw, tc.workers*50)
			var d, g result
			for b.Loop() {
				d = measure(b, direct, tc.calls)
				g = measure(b, gw, tc.calls)
			}
			report(b, d, g)
		})
	}
}

// BenchmarkAuthorize measures AuthorizeService decisions per second over
// Connect, as a data plane calls it (tools/call of an allowed tool with an
// API key), sequentially and in parallel.
func BenchmarkAuthorize(b *testing.B) {
	s := stacktest.Start(b)
	key := s.AddUser("bench", stacktest.GateRoute)
	req := s.AuthorizeRequest(stacktest.GateRoute, key, "echo")
	res, err := s.Authorize.Authorize(context.Background(), req)
	if err != nil || res.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
		b.Fatalf("Authorize: %v %v", res, err)
	}
	b.Run("sequential", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			if _, err := s.Authorize.Authorize(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(8)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Authorize.Authorize(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
	})
}
