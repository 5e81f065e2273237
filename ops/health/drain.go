package health

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Drain says how a server shuts down.
type Drain struct {
	// Delay keeps accepting (with readiness "draining") so load balancers
	// notice before the listener closes.
	Delay time.Duration
	// Grace bounds how long in-flight requests and streams may run after
	// the listener closed.
	Grace time.Duration
}

// Serve serves srv on ln (TLS when srv.TLSConfig is set) until ctx ends,
// then drains: readiness turns to "draining" (c may be nil), after
// d.Delay the listener closes so no new connection is accepted, and
// in-flight requests — including open SSE streams — get up to d.Grace to
// finish before the remaining connections are closed. It returns nil after
// a clean drain.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, c *Checker, d Drain, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if c != nil {
		c.SetDraining()
	}
	log.Info("draining", slog.String("addr", ln.Addr().String()), slog.Duration("grace", d.Grace))
	if d.Delay > 0 {
		time.Sleep(d.Delay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), d.Grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("drain deadline reached; closing remaining connections", slog.String("addr", ln.Addr().String()))
		err = srv.Close()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
