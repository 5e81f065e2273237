package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/ops"
	"github.com/mcpgate/mcpgate/ops/audit"
	"github.com/mcpgate/mcpgate/ops/health"
	"github.com/mcpgate/mcpgate/ops/httpserver"
	"github.com/mcpgate/mcpgate/ops/metrics"
	"github.com/mcpgate/mcpgate/ops/tlsconfig"
	"github.com/mcpgate/mcpgate/ops/tracing"
)

// controlOps are a control plane's production settings: TLS, metrics,
// audit, tracing and draining.
type controlOps struct {
	TLSCert, TLSKey, ClientCA string
	// Flags are the settings both planes share: metrics listener, audit
	// log, tracing, drain timeout.
	ops.Flags
}

func (o *controlOps) register(fs *flag.FlagSet) {
	fs.StringVar(&o.TLSCert, "tls-cert", "", "serve the admin API and AuthorizeService over TLS with this certificate (PEM)")
	fs.StringVar(&o.TLSKey, "tls-key", "", "key of --tls-cert (PEM)")
	fs.StringVar(&o.ClientCA, "client-ca", "", "CA whose client certificates authenticate data planes (mTLS; then no data-plane token is needed)")
	o.Register(fs, "127.0.0.1:9091", "admin write", "in-flight calls")
}

func (o *controlOps) validate() error {
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if o.ClientCA != "" && o.TLSCert == "" {
		return fmt.Errorf("%w: --client-ca needs --tls-cert and --tls-key", errUsage)
	}
	return nil
}

// identifyAdmin names an admin RPC's caller for the audit log from its
// admin key (never logged itself).
func identifyAdmin(st *store.Store) audit.Identify {
	return func(_ context.Context, h http.Header) (string, string) {
		scheme, tok, ok := strings.Cut(strings.TrimSpace(h.Get("Authorization")), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", ""
		}
		rec, p, _ := configapi.ResolveKey(st, strings.TrimSpace(tok), time.Now())
		if rec == nil {
			return "", ""
		}
		return p.GetName(), rec.GetKey().GetId()
	}
}

func cacheStats(st *store.Store) metrics.CacheSource {
	return func(ctx context.Context) metrics.CacheStats {
		s := st.CacheStatus()
		head, err := st.HeadRevision(ctx)
		return metrics.CacheStats{
			Synced: s.Synced, Healthy: s.Synced && s.LastErr == nil,
			Revision: s.Revision, Head: head, HeadErr: err,
		}
	}
}

func cacheHealth(st *store.Store) func() health.Cache {
	return func() health.Cache {
		s := st.CacheStatus()
		return health.Cache{Synced: s.Synced, LastErr: s.LastErr, ErrAt: s.ErrAt}
	}
}

// controlServer is a control plane's observability around its handler.
type controlServer struct {
	tracer  *tracing.Tracer
	audit   *audit.Logger
	metrics *metrics.ControlPlane
	checker *health.Checker
}

func newControlServer(ctx context.Context, o controlOps, st *store.Store) (*controlServer, error) {
	tr, err := tracing.Setup(ctx, tracing.Config{Endpoint: o.OTLPEndpoint, ServiceName: "mcpgate-control"})
	if err != nil {
		return nil, err
	}
	al, err := audit.Open(o.AuditLog)
	if err != nil {
		_ = tr.Shutdown(ctx)
		return nil, err
	}
	m := metrics.NewControlPlane(cacheStats(st))
	metrics.CountAuditDrops(m.Registry, al.Dropped)
	return &controlServer{
		tracer:  tr,
		audit:   al,
		metrics: m,
		checker: health.NewChecker(health.ControlPlane(cacheHealth(st))),
	}, nil
}

// handlerOptions are the Connect options every service gets.
func (c *controlServer) handlerOptions() []connect.HandlerOption {
	return []connect.HandlerOption{connect.WithInterceptors(c.metrics.Interceptor())}
}

// adminHandlerOptions are the Connect options of the admin services only.
func (c *controlServer) adminHandlerOptions(st *store.Store) []connect.HandlerOption {
	return []connect.HandlerOption{connect.WithInterceptors(audit.AdminInterceptor(c.audit, identifyAdmin(st)))}
}

// serve serves h until ctx ends, then drains.
func (c *controlServer) serve(ctx context.Context, o controlOps, listen string, h http.Handler, log *slog.Logger) error {
	defer func() { _ = c.tracer.Shutdown(context.WithoutCancel(ctx)) }()
	defer c.audit.Close()
	h = health.Wrap(c.tracer.Handler(h, "mcpgate.controlplane"), c.checker)
	var srv *httpserver.Server
	var err error
	if o.TLSCert != "" {
		tc, terr := tlsconfig.ServerClientCertOptional(o.TLSCert, o.TLSKey, o.ClientCA)
		if terr != nil {
			return terr
		}
		srv, err = httpserver.ListenTLS(listen, h, tc)
	} else {
		srv, err = httpserver.Listen(listen, h)
	}
	if err != nil {
		return err
	}
	if o.MetricsListen != "" {
		ml, err := metrics.Listen(o.MetricsListen, c.metrics.Registry, c.checker, log)
		if err != nil {
			_ = srv.Close()
			return err
		}
		defer func() { _ = ml.Close(context.WithoutCancel(ctx)) }()
	}
	log.InfoContext(ctx, "control plane listening", slog.String("addr", srv.Addr()),
		slog.Bool("tls", o.TLSCert != ""), slog.Bool("mtls", o.ClientCA != ""), slog.String("metrics", o.MetricsListen))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	c.checker.SetDraining()
	grace := o.DrainTimeout
	if grace <= 0 {
		grace = ops.DefaultDrainTimeout
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	return srv.Shutdown(sctx)
}
