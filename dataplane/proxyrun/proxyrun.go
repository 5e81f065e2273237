// Package proxyrun runs a data plane on its own (`mcpgate proxy` and the
// thin `mcpgate-proxy` binary). It links no etcd and no control-plane code.
package proxyrun

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/ops/audit"
	"github.com/mcpgate/mcpgate/ops/httpserver"
	"github.com/mcpgate/mcpgate/ops/metrics"
)

// ShutdownGrace is how long running requests get to finish on shutdown.
const ShutdownGrace = 3 * time.Second

// Config configures a standalone data plane.
type Config struct {
	// Listen is the public listener address (127.0.0.1:8080).
	Listen string
	// PublicURL is the base URL clients use; required.
	PublicURL string
	// ControlPlaneURLs are the control-plane replicas' base URLs.
	ControlPlaneURLs []string
	// DataPlaneToken authenticates this data plane to the control plane.
	DataPlaneToken string
	// AllowedOrigins are browser origins accepted besides the public URL's.
	AllowedOrigins []string
	// Ops are the production settings (TLS to the control plane, metrics,
	// audit, tracing, drain); the zero value turns them off.
	Ops Ops
	// Limits bound upstream exchanges; zero fields take the data plane's
	// defaults.
	Limits Limits
}

// Limits are the data plane's bounds on upstream exchanges (see
// dataplane.Config); zero fields take dataplane's defaults.
type Limits struct {
	// UpstreamHeaderTimeout bounds the wait for an upstream's response
	// headers (504 past it).
	UpstreamHeaderTimeout time.Duration
	// MaxStreamLifetime bounds how long one upstream response or SSE stream
	// is relayed.
	MaxStreamLifetime time.Duration
	// MaxStreamsPerPrincipal bounds the streams and calls one principal may
	// have in flight on this data plane (429 past it).
	MaxStreamsPerPrincipal int
	// DecisionCacheSize bounds the ALLOW decisions kept for reuse; 0 turns
	// the decision cache off.
	DecisionCacheSize int
	// DecisionCacheMaxAge is this data plane's own bound on reusing an
	// ALLOW (the control plane's max age, and credential expiry, bound it
	// further).
	DecisionCacheMaxAge time.Duration
}

// RegisterLimitsFlags defines the Limits flags on fs (their variables are
// applied by ops.ApplyEnv); `mcpgate dev`, `mcpgate proxy` and
// mcpgate-proxy share them.
func RegisterLimitsFlags(fs *flag.FlagSet, l *Limits) {
	fs.DurationVar(&l.UpstreamHeaderTimeout, "upstream-header-timeout", dataplane.DefaultUpstreamHeaderTimeout,
		"how long to wait for an upstream's response headers before answering 504 (a JSON-response upstream's longest tool call)")
	fs.DurationVar(&l.MaxStreamLifetime, "max-stream-lifetime", dataplane.DefaultMaxStreamLifetime,
		"longest an upstream SSE stream (or any upstream response) is relayed; the stream then ends cleanly and clients resume with Last-Event-ID")
	fs.IntVar(&l.MaxStreamsPerPrincipal, "max-streams-per-principal", dataplane.DefaultMaxStreamsPerPrincipal,
		"GET streams and POSTs carrying requests one principal may have in flight on this data plane; more get 429")
	fs.IntVar(&l.DecisionCacheSize, "decision-cache-size", dataplane.DefaultDecisionCacheSize,
		"ALLOW decisions kept for reuse while the control plane's invalidation stream is current (LRU); 0 turns the cache off")
	fs.DurationVar(&l.DecisionCacheMaxAge, "decision-cache-max-age", dataplane.DefaultDecisionCacheMaxAge,
		"longest this data plane reuses an ALLOW decision (the control plane's max age and credential expiry bound it further)")
}

// RegisterFlags defines the data plane's flags on fs; call the result after
// parsing and applying the variables (ops.DocumentEnv before parsing,
// ops.ApplyEnv after: every flag --foo-bar defaults to MCPGATE_FOO_BAR).
func RegisterFlags(fs *flag.FlagSet) func() Config {
	var cfg Config
	var cps, origins string
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "public (MCP) listener")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "public base URL clients use, e.g. https://gw.example.com (required)")
	fs.StringVar(&cps, "control-plane", "http://127.0.0.1:8081", "comma-separated control plane URLs")
	fs.StringVar(&cfg.DataPlaneToken, "dataplane-token", "", "token presented to the control plane (the variable is the better place for it)")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated browser origins accepted besides the public URL's")
	registerOpsFlags(fs, &cfg.Ops)
	RegisterLimitsFlags(fs, &cfg.Limits)
	return func() Config {
		cfg.ControlPlaneURLs = SplitList(cps)
		cfg.AllowedOrigins = SplitList(origins)
		return cfg
	}
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Protocols a data plane speaks to the control plane
// (--control-plane-protocol). The control plane's listener (ops/httpserver)
// serves both, with and without TLS.
const (
	// ProtocolHTTP1 is one HTTP/1.1 exchange per call over a pool of
	// kept-alive connections (one per call in flight, never one per call).
	// The default: measured side by side with HTTP/2 for the Authorize hop
	// (bench: BenchmarkAuthorizeHop), Go's HTTP/1.1 costs both planes
	// 1.25-1.5x less CPU per call than its HTTP/2, plain or over mTLS, one
	// call at a time or 16 in flight, and answers sooner.
	ProtocolHTTP1 = "http1"
	// ProtocolHTTP2 multiplexes every call over one connection per replica:
	// h2c (HTTP/2 with prior knowledge) on http:// URLs, HTTP/2 negotiated
	// by ALPN over TLS on https:// URLs. Fewer connections (one per data
	// plane and replica), at more CPU per call.
	ProtocolHTTP2 = "h2"
	// DefaultControlPlaneProtocol is --control-plane-protocol's default.
	DefaultControlPlaneProtocol = ProtocolHTTP1
)

// Control-plane connection settings.
const (
	// cpMaxIdleConnsPerHost keeps, with HTTP/1.1, an idle connection for
	// every Authorize call a busy data plane has in flight, so steady load
	// opens none.
	cpMaxIdleConnsPerHost = 256
	// cpPingAfter and cpPingTimeout detect a dead HTTP/2 connection: with
	// every call on one connection, a replica that vanished without a
	// FIN must be noticed (and the connection dropped) quickly.
	cpPingAfter   = 10 * time.Second
	cpPingTimeout = 5 * time.Second
)

// ControlPlaneClient is the HTTP client data planes use for the control
// plane with DefaultControlPlaneProtocol.
func ControlPlaneClient() *http.Client {
	hc, _ := NewControlPlaneClient(DefaultControlPlaneProtocol)
	return hc
}

// NewControlPlaneClient is the HTTP client data planes use for the control
// plane with protocol (ProtocolHTTP1, ProtocolHTTP2, or "" for the
// default): with HTTP/1.1 an idle pool sized for a busy proxy, with HTTP/2
// one connection per replica multiplexing all calls.
func NewControlPlaneClient(protocol string) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * cpMaxIdleConnsPerHost
	t.MaxIdleConnsPerHost = cpMaxIdleConnsPerHost
	var p http.Protocols
	switch protocol {
	case "", ProtocolHTTP1:
		p.SetHTTP1(true)
	case ProtocolHTTP2:
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
		t.HTTP2 = &http.HTTP2Config{SendPingTimeout: cpPingAfter, PingTimeout: cpPingTimeout}
	default:
		return nil, fmt.Errorf("control-plane protocol %q: want %s or %s", protocol, ProtocolHTTP1, ProtocolHTTP2)
	}
	t.Protocols = &p
	return &http.Client{Transport: t}, nil
}

// Handler builds the data plane for cfg (without metrics, audit or
// tracing: Run adds those).
func Handler(cfg Config, log *slog.Logger) (*dataplane.Proxy, error) {
	return HandlerObserved(cfg, nil, nil, log)
}

// HandlerObserved is Handler recording metrics on m and one audit event per
// MCP request on al (either may be nil), for `mcpgate dev`.
func HandlerObserved(cfg Config, m *metrics.DataPlane, al *audit.Logger, log *slog.Logger) (*dataplane.Proxy, error) {
	if err := check(cfg); err != nil {
		return nil, err
	}
	cp, err := controlPlaneClient(cfg.Ops, nil)
	if err != nil {
		return nil, err
	}
	return dataplane.New(dataplane.Config{
		PublicURL:              cfg.PublicURL,
		ControlPlaneURLs:       cfg.ControlPlaneURLs,
		DataPlaneToken:         cfg.DataPlaneToken,
		AllowedOrigins:         cfg.AllowedOrigins,
		ControlPlaneClient:     cp,
		Metrics:                m,
		Audit:                  al,
		UpstreamHeaderTimeout:  cfg.Limits.UpstreamHeaderTimeout,
		MaxStreamLifetime:      cfg.Limits.MaxStreamLifetime,
		MaxStreamsPerPrincipal: cfg.Limits.MaxStreamsPerPrincipal,
		DecisionCacheSize:      cfg.Limits.DecisionCacheSize,
		DecisionCacheMaxAge:    cfg.Limits.DecisionCacheMaxAge,
	}, log)
}

func check(cfg Config) error {
	if cfg.PublicURL == "" {
		return errors.New("public URL required (--public-url or MCPGATE_PUBLIC_URL)")
	}
	if len(cfg.ControlPlaneURLs) == 0 {
		return errors.New("control plane URL required (--control-plane or MCPGATE_CONTROL_PLANE)")
	}
	if l := cfg.Limits; l.UpstreamHeaderTimeout < 0 || l.MaxStreamLifetime < 0 || l.MaxStreamsPerPrincipal < 0 {
		return errors.New("upstream limits must not be negative (--upstream-header-timeout, --max-stream-lifetime, --max-streams-per-principal)")
	}
	if l := cfg.Limits; l.DecisionCacheSize < 0 || l.DecisionCacheMaxAge < 0 {
		return errors.New("decision cache bounds must not be negative (--decision-cache-size, --decision-cache-max-age)")
	}
	if cfg.DataPlaneToken == "" && cfg.Ops.ControlPlaneCert == "" {
		return errors.New("data-plane credential required (--dataplane-token / MCPGATE_DATAPLANE_TOKEN, or --control-plane-cert for mTLS)")
	}
	return nil
}

// Serve runs p's background work and srv until ctx ends, then shuts srv
// down within ShutdownGrace.
func Serve(ctx context.Context, srv *httpserver.Server, p *dataplane.Proxy) error {
	return ServeDrain(ctx, srv, p, nil, ShutdownGrace)
}
