package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DataPlane holds the data plane's collectors.
type DataPlane struct {
	Registry *prometheus.Registry

	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	authorize *prometheus.HistogramVec
	upstream  *prometheus.HistogramVec
	inflight  prometheus.Gauge

	cacheLookups       *prometheus.CounterVec
	cacheInvalidations *prometheus.CounterVec
	cacheEntries       prometheus.Gauge
	cacheCurrent       prometheus.Gauge
}

// Decision cache lookup results and invalidation kinds (fixed labels).
const (
	CacheHit = "hit"
	// CacheMiss: no entry (or expired, or newer than the stream).
	CacheMiss = "miss"
	// CacheBypass: the invalidation stream is down or stale; no entry used.
	CacheBypass = "bypass"

	InvalidateAll       = "all"
	InvalidatePrincipal = "principal"
	InvalidateKey       = "key"
	InvalidateToken     = "token"
	InvalidateRoute     = "route"
	InvalidateGrant     = "grant"
	// InvalidateConnect: flushed on (re)connecting or losing the stream.
	InvalidateConnect = "connect"
)

// NewDataPlane returns the data plane's collectors on a fresh registry
// (with the Go and process collectors).
func NewDataPlane() *DataPlane { return newDataPlane(newRegistry()) }

func newDataPlane(reg *prometheus.Registry) *DataPlane {
	m := &DataPlane{
		Registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "dataplane", Name: "requests_total",
			Help: "MCP requests by route (configured servers only), MCP method, decision and HTTP status.",
		}, []string{"route", "method", "decision", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "dataplane", Name: "request_duration_seconds",
			Help:    "Whole MCP request latency, until the response (or stream) ended.",
			Buckets: latencyBuckets,
		}, []string{"route", "method", "decision"}),
		authorize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "dataplane", Name: "authorize_duration_seconds",
			Help:    "Authorize RPC latency seen by the data plane, by decision (error: could not decide).",
			Buckets: latencyBuckets,
		}, []string{"decision"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "dataplane", Name: "upstream_duration_seconds",
			Help:    "Upstream latency until response headers, by route and upstream status.",
			Buckets: latencyBuckets,
		}, []string{"route", "status"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "dataplane", Name: "requests_in_flight",
			Help: "MCP requests (including open streams) being served.",
		}),
	}
	m.cacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "dataplane", Name: "decision_cache_lookups_total",
		Help: "Decision cache lookups by result: hit, miss, bypass (invalidation stream down or stale).",
	}, []string{"result"})
	m.cacheInvalidations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "dataplane", Name: "decision_cache_invalidations_total",
		Help: "Invalidations applied to the decision cache by what they named (all, principal, key, token, route, grant, connect).",
	}, []string{"kind"})
	m.cacheEntries = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "dataplane", Name: "decision_cache_entries",
		Help: "Cached ALLOW decisions held.",
	})
	m.cacheCurrent = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "dataplane", Name: "decision_cache_stream_current",
		Help: "1 while the invalidation stream is connected and its heartbeat fresh (cached decisions usable), else 0.",
	})
	m.Registry.MustRegister(m.requests, m.duration, m.authorize, m.upstream, m.inflight,
		m.cacheLookups, m.cacheInvalidations, m.cacheEntries, m.cacheCurrent)
	return m
}

// Request is one finished MCP request as the data plane saw it.
type Request struct {
	// Route is the server name; Configured says the control plane knows it
	// (any decision other than not found or error).
	Route      string
	Configured bool
	// Method is the JSON-RPC method ("" for GET/DELETE).
	Method   string
	Decision string
	Status   int
	Duration time.Duration
}

// RecordRequest counts one finished request.
func (m *DataPlane) RecordRequest(r Request) {
	if m == nil {
		return
	}
	route, method, decision := RouteLabel(r.Route, r.Configured), MethodLabel(r.Method), decisionLabel(r.Decision)
	m.requests.WithLabelValues(route, method, decision, statusLabel(r.Status)).Inc()
	m.duration.WithLabelValues(route, method, decision).Observe(r.Duration.Seconds())
}

// RecordAuthorize observes one Authorize call; decision is one of the
// Decision* constants (DecisionError when the call failed).
func (m *DataPlane) RecordAuthorize(decision string, d time.Duration) {
	if m == nil {
		return
	}
	m.authorize.WithLabelValues(decisionLabel(decision)).Observe(d.Seconds())
}

// RecordUpstream observes one upstream round trip (status 0: no response).
func (m *DataPlane) RecordUpstream(route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	s := "error"
	if status != 0 {
		s = statusLabel(status)
	}
	m.upstream.WithLabelValues(RouteLabel(route, true), s).Observe(d.Seconds())
}

// InFlight increments the in-flight gauge and returns its decrement.
func (m *DataPlane) InFlight() (done func()) {
	if m == nil {
		return func() {}
	}
	m.inflight.Inc()
	return m.inflight.Dec
}

// RecordCacheLookup counts one decision cache lookup (CacheHit, CacheMiss,
// CacheBypass).
func (m *DataPlane) RecordCacheLookup(result string) {
	if m == nil {
		return
	}
	m.cacheLookups.WithLabelValues(result).Inc()
}

// RecordCacheInvalidation counts invalidations of kind (Invalidate*).
func (m *DataPlane) RecordCacheInvalidation(kind string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.cacheInvalidations.WithLabelValues(kind).Add(float64(n))
}

// SetCacheState sets the entry gauge and whether the stream is current.
func (m *DataPlane) SetCacheState(entries int, current bool) {
	if m == nil {
		return
	}
	m.cacheEntries.Set(float64(entries))
	c := 0.0
	if current {
		c = 1
	}
	m.cacheCurrent.Set(c)
}
