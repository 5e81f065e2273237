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
}

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
	m.Registry.MustRegister(m.requests, m.duration, m.authorize, m.upstream, m.inflight)
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
