// Package metrics holds the Prometheus collectors of both planes. Every
// label is bounded and carries no secret: routes are labelled only when the
// control plane knows the server (else "unknown"), MCP methods only from a
// fixed list (else "other"), and nothing a client controls freely (tool
// names, key ids, arguments) ever becomes a label.
//
// All recording methods are safe on a nil receiver, so metrics stay
// optional for callers.
package metrics

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "mcpgate"

// Unknown labels a route that names no configured server, or a request
// whose route could not be resolved.
const Unknown = "unknown"

// Decision labels. Decisions of the control plane are lower-case names of
// the Decision enum; Error means "could not decide" (RPC error, timeout,
// unknown decision) and Rejected a request refused before Authorize
// (bad origin, oversized body, unsupported method).
const (
	DecisionAllow     = "allow"
	DecisionChallenge = "challenge"
	DecisionDeny      = "deny"
	DecisionNotFound  = "not_found"
	// DecisionRateLimited: a rate limit refused the call (429).
	DecisionRateLimited = "rate_limited"
	DecisionError       = "error"
	DecisionRejected    = "rejected"
)

// Vault refresh outcomes, for RecordVaultRefresh.
const (
	RefreshSuccess = "success" // a new upstream token was stored
	RefreshRevoked = "revoked" // the upstream refused the refresh token: the grant is unusable
	RefreshFailed  = "failed"  // transient failure (network, 5xx, etcd)
	RefreshSkipped = "skipped" // another replica held the lock or had refreshed already
)

var decisions = map[string]bool{
	DecisionAllow: true, DecisionChallenge: true, DecisionDeny: true,
	DecisionNotFound: true, DecisionError: true, DecisionRejected: true,
	DecisionRateLimited: true,
}

var refreshOutcomes = map[string]bool{
	RefreshSuccess: true, RefreshRevoked: true, RefreshFailed: true, RefreshSkipped: true,
}

// mcpMethods are the JSON-RPC methods of MCP (2025-06-18 .. 2026-07-28);
// anything else is labelled "other".
var mcpMethods = map[string]bool{
	"initialize": true, "ping": true, "server/discover": true,
	"tools/list": true, "tools/call": true,
	"resources/list": true, "resources/read": true, "resources/templates/list": true,
	"resources/subscribe": true, "resources/unsubscribe": true,
	"prompts/list": true, "prompts/get": true,
	"completion/complete": true, "logging/setLevel": true,
	"tasks/get": true, "tasks/list": true, "tasks/cancel": true, "tasks/result": true,
	"notifications/initialized": true, "notifications/cancelled": true,
	"notifications/progress": true, "notifications/roots/list_changed": true,
	"roots/list": true, "sampling/createMessage": true, "elicitation/create": true,
}

// MethodLabel maps a JSON-RPC method to a bounded label: the method itself
// when MCP defines it, "none" for requests without one (GET streams,
// DELETE, JSON-RPC responses and batches), else "other".
func MethodLabel(method string) string {
	switch {
	case method == "":
		return "none"
	case mcpMethods[method]:
		return method
	default:
		return "other"
	}
}

// RouteLabel is route when the control plane resolved it to a configured
// server, else Unknown.
func RouteLabel(route string, configured bool) string {
	if !configured || route == "" {
		return Unknown
	}
	return route
}

func decisionLabel(d string) string {
	if decisions[d] {
		return d
	}
	return DecisionError
}

func statusLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

// Handler serves reg in the Prometheus exposition format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// NewShared returns both planes' collectors on one registry, for a process
// that runs both (`mcpgate dev`): one /metrics shows everything. cache may
// be nil.
func NewShared(cache CacheSource) (*DataPlane, *ControlPlane) {
	reg := newRegistry()
	return newDataPlane(reg), newControlPlane(reg, cache)
}

// CountAuditDrops exports dropped, the audit log's count of events it
// could not write (audit.Logger.Dropped), on reg as
// mcpgate_audit_dropped_events_total. Register it once per registry, also
// when auditing is off (a nil logger's count stays 0).
func CountAuditDrops(reg *prometheus.Registry, dropped func() uint64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "audit", Name: "dropped_events_total",
		Help: "Audit events not written: the audit log's queue was full (its writer stuck or too slow), the log was closed, or the write failed.",
	}, func() float64 { return float64(dropped()) }))
}

func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Latency buckets from 0.5 ms (a cached Authorize) to 60 s (a slow tool).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
