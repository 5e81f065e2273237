package proxyrun

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/ops"
	"github.com/mcpgate/mcpgate/ops/audit"
	"github.com/mcpgate/mcpgate/ops/health"
	"github.com/mcpgate/mcpgate/ops/httpserver"
	"github.com/mcpgate/mcpgate/ops/metrics"
	"github.com/mcpgate/mcpgate/ops/tlsconfig"
	"github.com/mcpgate/mcpgate/ops/tracing"
)

// Ops are the production settings of a data plane: TLS to the control
// plane, metrics, audit, tracing and draining. The zero value (what
// `mcpgate dev` uses) turns all of them off.
type Ops struct {
	// ControlPlaneCA verifies the control planes' certificate;
	// ControlPlaneCert and ControlPlaneKey are this data plane's client
	// certificate (mTLS: no token needed).
	ControlPlaneCA, ControlPlaneCert, ControlPlaneKey string
	// ControlPlaneProtocol is ProtocolHTTP1 or ProtocolHTTP2 (""
	// is DefaultControlPlaneProtocol).
	ControlPlaneProtocol string
	// Flags are the settings both planes share: metrics listener, audit
	// log, tracing, drain timeout (ShutdownGrace when zero).
	ops.Flags
}

func registerOpsFlags(fs *flag.FlagSet, o *Ops) {
	fs.StringVar(&o.ControlPlaneCA, "control-plane-ca", "", "CA bundle verifying the control planes' TLS certificate (PEM)")
	fs.StringVar(&o.ControlPlaneCert, "control-plane-cert", "", "this data plane's client certificate for mTLS to the control plane (PEM)")
	fs.StringVar(&o.ControlPlaneKey, "control-plane-key", "", "key of --control-plane-cert (PEM)")
	fs.StringVar(&o.ControlPlaneProtocol, "control-plane-protocol", DefaultControlPlaneProtocol,
		"protocol to the control plane: http1 (a pool of kept-alive HTTP/1.1 connections; the least CPU per call) or h2 (one multiplexed connection per replica: h2c on http://, HTTP/2 over TLS on https://)")
	o.Register(fs, "127.0.0.1:9090", "MCP request", "in-flight requests and streams")
}

// controlPlaneClient is ControlPlaneClient with the data plane's TLS
// settings and tracing.
func controlPlaneClient(o Ops, tr *tracing.Tracer) (*http.Client, error) {
	hc, err := NewControlPlaneClient(o.ControlPlaneProtocol)
	if err != nil {
		return nil, err
	}
	if o.ControlPlaneCA != "" || o.ControlPlaneCert != "" || o.ControlPlaneKey != "" {
		cfg, err := tlsconfig.Client(o.ControlPlaneCA, o.ControlPlaneCert, o.ControlPlaneKey)
		if err != nil {
			return nil, fmt.Errorf("control-plane TLS: %w", err)
		}
		hc.Transport.(*http.Transport).TLSClientConfig = cfg
	}
	hc.Transport = tr.Transport(hc.Transport)
	return hc, nil
}

// upstreamClient is nil (the data plane's default) unless tracing wraps it.
func upstreamClient(tr *tracing.Tracer) *http.Client {
	if tr == nil {
		return nil
	}
	return &http.Client{
		Transport:     tr.Transport(dataplane.NewUpstreamTransport()),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Run serves the data plane until ctx ends, then drains.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := check(cfg); err != nil {
		return err
	}
	tr, err := tracing.Setup(ctx, tracing.Config{Endpoint: cfg.Ops.OTLPEndpoint, ServiceName: "mcpgate-proxy"})
	if err != nil {
		return err
	}
	defer func() { _ = tr.Shutdown(context.WithoutCancel(ctx)) }()
	al, err := audit.Open(cfg.Ops.AuditLog)
	if err != nil {
		return err
	}
	defer al.Close()
	m := metrics.NewDataPlane()
	metrics.CountAuditDrops(m.Registry, al.Dropped)
	cp, err := controlPlaneClient(cfg.Ops, tr)
	if err != nil {
		return err
	}
	p, err := dataplane.New(dataplane.Config{
		PublicURL:          cfg.PublicURL,
		ControlPlaneURLs:   cfg.ControlPlaneURLs,
		DataPlaneToken:     cfg.DataPlaneToken,
		AllowedOrigins:     cfg.AllowedOrigins,
		ControlPlaneClient: cp,
		UpstreamClient:     upstreamClient(tr),
		Metrics:            m,
		Audit:              al,

		UpstreamHeaderTimeout:  cfg.Limits.UpstreamHeaderTimeout,
		MaxStreamLifetime:      cfg.Limits.MaxStreamLifetime,
		MaxStreamsPerPrincipal: cfg.Limits.MaxStreamsPerPrincipal,
		DecisionCacheSize:      cfg.Limits.DecisionCacheSize,
		DecisionCacheMaxAge:    cfg.Limits.DecisionCacheMaxAge,
	}, log)
	if err != nil {
		return err
	}
	probe := health.NewProbe(cfg.ControlPlaneURLs, cp, 2*time.Second, log)
	checker := health.NewChecker(probe.Check)
	srv, err := httpserver.Listen(cfg.Listen, health.Wrap(tr.Handler(p, "mcpgate.dataplane"), checker))
	if err != nil {
		return err
	}
	if cfg.Ops.MetricsListen != "" {
		ml, err := metrics.Listen(cfg.Ops.MetricsListen, m.Registry, checker, log)
		if err != nil {
			_ = srv.Close()
			return err
		}
		defer func() { _ = ml.Close(context.WithoutCancel(ctx)) }()
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	go probe.Run(probeCtx)
	log.InfoContext(ctx, "data plane listening", slog.String("addr", srv.Addr()),
		slog.String("public_url", cfg.PublicURL), slog.Any("control_plane", cfg.ControlPlaneURLs),
		slog.String("metrics", cfg.Ops.MetricsListen))
	return ServeDrain(ctx, srv, p, checker, cfg.Ops.DrainTimeout)
}

// ServeDrain runs p's background work and srv until ctx ends, then drains:
// readiness turns "draining" (checker may be nil), the listener closes, and
// in-flight requests and streams get up to grace (ShutdownGrace when zero)
// before the remaining connections close.
func ServeDrain(ctx context.Context, srv *httpserver.Server, p *dataplane.Proxy, checker *health.Checker, grace time.Duration) error {
	if grace <= 0 {
		grace = ShutdownGrace
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() { _ = p.Run(runCtx) }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if checker != nil {
		checker.SetDraining()
	}
	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("data plane: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
