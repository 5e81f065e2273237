// Package proxyrun runs a data plane on its own (`mcpgate proxy` and the
// thin `mcpgate-proxy` binary). It links no etcd and no control-plane code.
package proxyrun

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/internal/httpserver"
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
}

// RegisterFlags defines the data plane's flags on fs, with defaults from
// MCPGATE_* variables (env(name, default)); call the result after parsing.
func RegisterFlags(fs *flag.FlagSet, env func(name, def string) string) func() Config {
	var cfg Config
	var cps, origins string
	fs.StringVar(&cfg.Listen, "listen", env("MCPGATE_LISTEN", "127.0.0.1:8080"), "public (MCP) listener")
	fs.StringVar(&cfg.PublicURL, "public-url", env("MCPGATE_PUBLIC_URL", ""), "public base URL clients use, e.g. https://gw.example.com (required)")
	fs.StringVar(&cps, "control-plane", env("MCPGATE_CONTROL_PLANE", "http://127.0.0.1:8081"), "comma-separated control plane URLs")
	fs.StringVar(&cfg.DataPlaneToken, "dataplane-token", "", "token presented to the control plane (default: $MCPGATE_DATAPLANE_TOKEN, the better place for it)")
	fs.StringVar(&origins, "allowed-origins", env("MCPGATE_ALLOWED_ORIGINS", ""), "comma-separated browser origins accepted besides the public URL's")
	registerOpsFlags(fs, env, &cfg.Ops)
	return func() Config {
		if cfg.DataPlaneToken == "" {
			cfg.DataPlaneToken = env("MCPGATE_DATAPLANE_TOKEN", "")
		}
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

// ControlPlaneClient is the HTTP client data planes use for the control
// plane: HTTP/2 over TLS, HTTP/1.1 on plain http, with enough idle
// connections for a busy proxy.
func ControlPlaneClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}

// Handler builds the data plane for cfg (without metrics, audit or
// tracing: Run adds those).
func Handler(cfg Config, log *slog.Logger) (*dataplane.Proxy, error) {
	if err := check(cfg); err != nil {
		return nil, err
	}
	cp, err := controlPlaneClient(cfg.Ops, nil)
	if err != nil {
		return nil, err
	}
	return dataplane.New(dataplane.Config{
		PublicURL:          cfg.PublicURL,
		ControlPlaneURLs:   cfg.ControlPlaneURLs,
		DataPlaneToken:     cfg.DataPlaneToken,
		AllowedOrigins:     cfg.AllowedOrigins,
		ControlPlaneClient: cp,
	}, log)
}

func check(cfg Config) error {
	if cfg.PublicURL == "" {
		return errors.New("public URL required (--public-url or MCPGATE_PUBLIC_URL)")
	}
	if len(cfg.ControlPlaneURLs) == 0 {
		return errors.New("control plane URL required (--control-plane or MCPGATE_CONTROL_PLANE)")
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
