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
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/health"
	"github.com/mcpgate/mcpgate/internal/httpserver"
	"github.com/mcpgate/mcpgate/internal/metrics"
	"github.com/mcpgate/mcpgate/internal/tlsconfig"
	"github.com/mcpgate/mcpgate/internal/tracing"
)

// controlOps are a control plane's production settings: TLS, metrics,
// audit, tracing and draining.
type controlOps struct {
	TLSCert, TLSKey, ClientCA string
	MetricsListen             string
	AuditLog                  string
	OTLPEndpoint              string
	DrainTimeout              time.Duration
}

func (o *controlOps) register(fs *flag.FlagSet, io stdio) {
	fs.StringVar(&o.TLSCert, "tls-cert", io.env("MCPGATE_TLS_CERT", ""), "serve the admin API and AuthorizeService over TLS with this certificate (PEM)")
	fs.StringVar(&o.TLSKey, "tls-key", io.env("MCPGATE_TLS_KEY", ""), "key of --tls-cert (PEM)")
	fs.StringVar(&o.ClientCA, "client-ca", io.env("MCPGATE_CLIENT_CA", ""), "CA whose client certificates authenticate data planes (mTLS; then no data-plane token is needed)")
	fs.StringVar(&o.MetricsListen, "metrics-listen", io.env("MCPGATE_METRICS_LISTEN", ""), "listener for /metrics, /healthz and /readyz (e.g. 127.0.0.1:9091; empty: none)")
	fs.StringVar(&o.AuditLog, "audit-log", io.env("MCPGATE_AUDIT_LOG", ""), "audit log: stdout or a file (one JSON line per admin write; empty: none)")
	fs.StringVar(&o.OTLPEndpoint, "otlp-endpoint", io.env("MCPGATE_OTLP_ENDPOINT", ""), "OpenTelemetry collector (OTLP/gRPC URL, e.g. http://127.0.0.1:4317); tracing is off without it")
	def := 10 * time.Second
	if d, err := time.ParseDuration(io.env("MCPGATE_DRAIN_TIMEOUT", "")); err == nil {
		def = d
	}
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", def, "on SIGTERM, how long in-flight calls may run before connections close")
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
	return &controlServer{
		tracer:  tr,
		audit:   al,
		metrics: metrics.NewControlPlane(cacheStats(st)),
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
		grace = 10 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	return srv.Shutdown(sctx)
}
