package metrics

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// CacheStats describes how current a control plane's cache is.
type CacheStats struct {
	// Synced: the cache has listed etcd at least once.
	Synced bool
	// Healthy: the watch that follows etcd is running without error.
	Healthy bool
	// Revision is the etcd revision the cache reflects.
	Revision int64
	// Head is etcd's current revision; HeadErr is set when it could not be
	// read (etcd unreachable or without quorum).
	Head    int64
	HeadErr error
}

// CacheSource reports cache statistics; it is called at scrape time with a
// short deadline.
type CacheSource func(ctx context.Context) CacheStats

// ControlPlane holds the control plane's collectors.
type ControlPlane struct {
	Registry *prometheus.Registry

	decisions *prometheus.HistogramVec
	rpcs      *prometheus.CounterVec
	rpcDur    *prometheus.HistogramVec
	refreshes *prometheus.CounterVec
}

// NewControlPlane returns the control plane's collectors on a fresh
// registry. cache may be nil.
func NewControlPlane(cache CacheSource) *ControlPlane {
	return newControlPlane(newRegistry(), cache)
}

func newControlPlane(reg *prometheus.Registry, cache CacheSource) *ControlPlane {
	m := &ControlPlane{
		Registry: reg,
		decisions: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "controlplane", Name: "authorize_duration_seconds",
			Help:    "Authorize decision latency inside the control plane, by decision.",
			Buckets: latencyBuckets,
		}, []string{"decision"}),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "controlplane", Name: "rpc_requests_total",
			Help: "Connect RPCs served, by procedure and code.",
		}, []string{"procedure", "code"}),
		rpcDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "controlplane", Name: "rpc_duration_seconds",
			Help:    "Connect RPC latency by procedure.",
			Buckets: latencyBuckets,
		}, []string{"procedure"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "vault", Name: "refreshes_total",
			Help: "Upstream OAuth token refreshes by outcome (success, revoked, failed, skipped).",
		}, []string{"outcome"}),
	}
	for o := range refreshOutcomes {
		m.refreshes.WithLabelValues(o)
	}
	m.Registry.MustRegister(m.decisions, m.rpcs, m.rpcDur, m.refreshes)
	if cache != nil {
		m.Registry.MustRegister(&cacheCollector{src: cache})
	}
	return m
}

// RecordDecision observes one Authorize decision computed in d.
func (m *ControlPlane) RecordDecision(decision string, d time.Duration) {
	if m == nil {
		return
	}
	m.decisions.WithLabelValues(decisionLabel(decision)).Observe(d.Seconds())
}

// RecordVaultRefresh counts one upstream token refresh attempt; outcome is
// one of the Refresh* constants (anything else counts as failed).
func (m *ControlPlane) RecordVaultRefresh(outcome string) {
	if m == nil {
		return
	}
	if !refreshOutcomes[outcome] {
		outcome = RefreshFailed
	}
	m.refreshes.WithLabelValues(outcome).Inc()
}

// Interceptor counts and times every unary and streaming RPC. Procedures
// are bounded: interceptors run only for registered handlers.
func (m *ControlPlane) Interceptor() connect.Interceptor { return rpcInterceptor{m} }

type rpcInterceptor struct{ m *ControlPlane }

func (i rpcInterceptor) record(procedure string, start time.Time, err error) {
	if i.m == nil {
		return
	}
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	i.m.rpcs.WithLabelValues(procedure, code).Inc()
	i.m.rpcDur.WithLabelValues(procedure).Observe(time.Since(start).Seconds())
}

func (i rpcInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		if !req.Spec().IsClient {
			i.record(req.Spec().Procedure, start, err)
			if i.m != nil && err == nil && res != nil {
				if ar, ok := res.Any().(*authorizev1.AuthorizeResponse); ok {
					i.m.RecordDecision(DecisionOf(ar.GetDecision()), time.Since(start))
				}
			}
		}
		return res, err
	}
}

func (i rpcInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i rpcInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		i.record(conn.Spec().Procedure, start, err)
		return err
	}
}

// cacheCollector reads CacheStats at scrape time.
type cacheCollector struct{ src CacheSource }

var (
	cacheRevDesc = prometheus.NewDesc(namespace+"_controlplane_cache_revision",
		"etcd revision the control plane's cache reflects.", nil, nil)
	headRevDesc = prometheus.NewDesc(namespace+"_controlplane_etcd_revision",
		"etcd's current revision (absent while etcd cannot answer).", nil, nil)
	lagDesc = prometheus.NewDesc(namespace+"_controlplane_cache_revision_lag",
		"etcd revision minus the cache's revision (absent while etcd cannot answer).", nil, nil)
	syncedDesc = prometheus.NewDesc(namespace+"_controlplane_cache_synced",
		"1 once the cache has listed etcd.", nil, nil)
	healthyDesc = prometheus.NewDesc(namespace+"_controlplane_cache_watch_healthy",
		"1 while the watch following etcd runs without error (0: serving last known state).", nil, nil)
	etcdUpDesc = prometheus.NewDesc(namespace+"_controlplane_etcd_up",
		"1 when etcd answered a linearizable read at scrape time.", nil, nil)
)

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheRevDesc, headRevDesc, lagDesc, syncedDesc, healthyDesc, etcdUpDesc} {
		ch <- d
	}
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s := c.src(ctx)
	ch <- prometheus.MustNewConstMetric(cacheRevDesc, prometheus.GaugeValue, float64(s.Revision))
	ch <- prometheus.MustNewConstMetric(syncedDesc, prometheus.GaugeValue, b2f(s.Synced))
	ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, b2f(s.Healthy))
	ch <- prometheus.MustNewConstMetric(etcdUpDesc, prometheus.GaugeValue, b2f(s.HeadErr == nil))
	if s.HeadErr == nil {
		ch <- prometheus.MustNewConstMetric(headRevDesc, prometheus.GaugeValue, float64(s.Head))
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(max(s.Head-s.Revision, 0)))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ErrNoHead may be returned as CacheStats.HeadErr by sources that cannot
// read etcd's revision.
var ErrNoHead = errors.New("etcd revision unavailable")

// DecisionOf maps the control plane's decision to its label
// (DecisionError for unset or unknown values).
func DecisionOf(d authorizev1.Decision) string {
	switch d {
	case authorizev1.Decision_DECISION_ALLOW:
		return DecisionAllow
	case authorizev1.Decision_DECISION_CHALLENGE:
		return DecisionChallenge
	case authorizev1.Decision_DECISION_DENY:
		return DecisionDeny
	case authorizev1.Decision_DECISION_NOT_FOUND:
		return DecisionNotFound
	case authorizev1.Decision_DECISION_RATE_LIMITED:
		return DecisionRateLimited
	default:
		return DecisionError
	}
}
