// Package health serves /healthz and /readyz with precise meanings and
// drains servers on shutdown.
//
//   - /healthz: the process is alive and serving HTTP. Nothing else is
//     checked: a failing dependency must not get a process restarted.
//   - /readyz on a control plane: the cache has listed etcd and its watch
//     is healthy (200 "ok"); or it has listed once but etcd is unreachable
//     or without quorum, so Authorize is served from the last known state
//     and writes fail (200 "degraded": keep routing Authorize to it); or it
//     has never listed etcd (503 "unavailable").
//   - /readyz on a data plane: at least one control plane answered its
//     last probe (200 "ok"), else 503 "unavailable" — every MCP request
//     would get 503.
//   - Both: 503 "draining" once shutdown has begun, so load balancers stop
//     sending new requests while in-flight ones finish.
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"
)

// State is a readiness state.
type State string

// Readiness states.
const (
	OK          State = "ok"
	Degraded    State = "degraded"
	Unavailable State = "unavailable"
	Draining    State = "draining"
)

// Status is a readiness answer.
type Status struct {
	State State `json:"status"`
	// Detail is a fixed, secret-free explanation.
	Detail string `json:"detail,omitempty"`
	// Since is when the current non-ok state began, when known.
	Since *time.Time `json:"since,omitempty"`
}

// Check computes readiness; it must be fast (it runs per probe).
type Check func(ctx context.Context) Status

// Checker serves /healthz and /readyz for one process.
type Checker struct {
	check    Check
	draining atomic.Bool
}

// NewChecker returns a checker over check.
func NewChecker(check Check) *Checker { return &Checker{check: check} }

// SetDraining makes /readyz answer 503 "draining" from now on.
func (c *Checker) SetDraining() { c.draining.Store(true) }

// Status is the current readiness.
func (c *Checker) Status(ctx context.Context) Status {
	if c.draining.Load() {
		return Status{State: Draining, Detail: "shutting down"}
	}
	return c.check(ctx)
}

// Mount registers GET /healthz and GET /readyz on mux.
func (c *Checker) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", Healthz)
	mux.HandleFunc("GET /readyz", c.Readyz)
}

// Healthz answers 200 "ok" while the process serves HTTP.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// Readyz answers the readiness as JSON: 200 for ok and degraded, 503
// otherwise.
func (c *Checker) Readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s := c.Status(ctx)
	code := http.StatusOK
	if s.State != OK && s.State != Degraded {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(s)
}

// Cache is what a control plane's readiness depends on (the store's cache
// status).
type Cache struct {
	Synced bool
	// LastErr is the watch's last failure, nil while it follows etcd.
	LastErr error
	ErrAt   time.Time
}

// ControlPlane is the control plane's readiness check over its cache.
func ControlPlane(cache func() Cache) Check {
	return func(context.Context) Status {
		c := cache()
		switch {
		case !c.Synced:
			return Status{State: Unavailable, Detail: "cache has not listed etcd yet"}
		case c.LastErr != nil:
			s := Status{State: Degraded, Detail: "etcd unreachable or without quorum: serving decisions from the last known state; writes fail"}
			if !c.ErrAt.IsZero() {
				at := c.ErrAt.UTC()
				s.Since = &at
			}
			return s
		default:
			return Status{State: OK}
		}
	}
}

// Wrap serves GET /healthz and /readyz from c in front of next, without a
// ServeMux (which would clean and redirect next's paths). Both planes use
// it on their main listener, so a prober that only reaches that listener
// (a data plane probing a control plane) sees the same answers as the
// metrics listener.
func Wrap(next http.Handler, c *Checker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			switch r.URL.Path {
			case "/healthz":
				Healthz(w, r)
				return
			case "/readyz":
				c.Readyz(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
