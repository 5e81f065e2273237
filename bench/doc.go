// Package bench measures the gateway end to end, always side by side in one
// run so that only ratios are compared (the machine is shared and noisy).
//
// # The harness: TestBenchHarness
//
//	go test ./bench -run TestBenchHarness -v                 # smoke run, < 60 s
//	go test ./bench -run TestBenchHarness -v -args -rounds=5 -calls1=2000 -calls16=20000
//
// It runs four paths to the same kind of upstream (the Go SDK's server with
// one tool, echo; stateless, JSON responses; each path has its own upstream
// on loopback TCP):
//
//   - direct: the load client straight to the upstream;
//   - bare ReverseProxy: httputil.ReverseProxy with a pooled transport, the
//     floor for any proxy;
//   - mcpgate dev: the shape of `mcpgate dev` in one process: etcd embedded
//     with an in-memory client, the control plane and the data plane
//     (proxyrun.Handler) on their own ops/httpserver listeners, logging at
//     Info to a file;
//   - mcpgate split: the production shape: etcd serving over a socket, a
//     control plane with the metrics and admin-audit interceptors, and a data
//     plane run by proxyrun.Run (as `mcpgate proxy`: metrics, audit log to a
//     file), each on its own listener; the hop between them is real TCP.
//
// Each path gets the same load: tools/call of echo as raw HTTP POSTs (the
// load client costs the same on every path), -calls1 calls one at a time
// (p50 latency) and -calls16 calls over 16 workers (throughput). Paths are
// interleaved for -rounds rounds, each round starting one path later, and
// the table shows each metric's median over the rounds:
//
//   - c=16 req/s, and as ratios to direct and to the bare proxy;
//   - p50 at c=1 and what the path adds to direct's p50, also as a ratio to
//     what the bare proxy adds;
//   - CPU-seconds per 10k calls: everything runs in this test process, so it
//     is the process's CPU (getrusage) over the path's measurement; what a
//     gateway adds is its figure minus direct's (the client and the
//     upstream cost the same on every path), also as a ratio to the bare
//     proxy's addition;
//   - upstream connections the path's upstream accepted while measured (0:
//     no connection churn).
//
// The harness asserts only that every call succeeds: timings are printed,
// never asserted, so CI can run the smoke version.
//
// # Benchmarks
//
//   - BenchmarkAuthorizeHop: the data plane's Authorize call to a control
//     plane on its production listener, HTTP/1.1 against HTTP/2 (h2c, and h2
//     over mTLS), one call at a time and 16 in flight, alternating batches of
//     both protocols in every iteration; reports wall and CPU per call and
//     the h2/http1 ratios (the evidence for --control-plane-protocol's
//     default).
//   - BenchmarkToolsCall: Go SDK client sessions straight to the upstream
//     and through internal/stacktest's stack, sequential and concurrent.
//   - BenchmarkAuthorize: AuthorizeService decisions per second over Connect.
//
// Connection reuse is asserted (by counting dials, not by timing) in
// internal/stacktest's TestPoolsSteadyLoadOpensNoConnections.
package bench
