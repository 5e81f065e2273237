package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpgate/mcpgate/ops/health"
)

// Listener is the separate metrics listener: /metrics, /healthz, /readyz.
type Listener struct {
	srv *http.Server
	ln  net.Listener
}

// Listen binds addr and serves reg's metrics and c's health endpoints on
// it until Close. Keeping them off the public listener keeps metrics away
// from MCP clients.
func Listen(addr string, reg *prometheus.Registry, c *health.Checker, log *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", Handler(reg))
	if c != nil {
		c.Mount(mux)
	}
	l := &Listener{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
	}}
	go func() {
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", slog.Any("err", err))
		}
	}()
	return l, nil
}

// Addr is the bound address.
func (l *Listener) Addr() string { return l.ln.Addr().String() }

// Close stops the listener within ctx.
func (l *Listener) Close(ctx context.Context) error {
	if l == nil {
		return nil
	}
	if err := l.srv.Shutdown(ctx); err != nil {
		return l.srv.Close()
	}
	return nil
}
