package proxyrun

import (
	"flag"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/ops"
)

// TestLimitsFlags: the upstream bounds come from MCPGATE_* variables,
// flags override them, unset ones take the data plane's defaults, and
// negative values are refused.
func TestLimitsFlags(t *testing.T) {
	parse := func(t *testing.T, env map[string]string, args ...string) Config {
		t.Helper()
		fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg := RegisterFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		if _, err := ops.ApplyEnv(fs, func(name string) (string, bool) { v, ok := env[name]; return v, ok }); err != nil {
			t.Fatalf("env %v: %v", env, err)
		}
		return cfg()
	}
	defaults := Limits{
		UpstreamHeaderTimeout:  dataplane.DefaultUpstreamHeaderTimeout,
		MaxStreamLifetime:      dataplane.DefaultMaxStreamLifetime,
		MaxStreamsPerPrincipal: dataplane.DefaultMaxStreamsPerPrincipal,
		DecisionCacheSize:      dataplane.DefaultDecisionCacheSize,
		DecisionCacheMaxAge:    dataplane.DefaultDecisionCacheMaxAge,
	}
	if got := parse(t, nil).Limits; got != defaults {
		t.Errorf("defaults %+v, want %+v", got, defaults)
	}
	env := map[string]string{
		"MCPGATE_UPSTREAM_HEADER_TIMEOUT":   "15s",
		"MCPGATE_MAX_STREAM_LIFETIME":       "10m",
		"MCPGATE_MAX_STREAMS_PER_PRINCIPAL": "8",
		"MCPGATE_DECISION_CACHE_SIZE":       "500",
		"MCPGATE_DECISION_CACHE_MAX_AGE":    "3s",
	}
	if got, want := parse(t, env).Limits, (Limits{15 * time.Second, 10 * time.Minute, 8, 500, 3 * time.Second}); got != want {
		t.Errorf("from env %+v, want %+v", got, want)
	}
	got := parse(t, env, "--upstream-header-timeout=2m", "--max-stream-lifetime=2h", "--max-streams-per-principal=64",
		"--decision-cache-size=0", "--decision-cache-max-age=1m").Limits
	if want := (Limits{2 * time.Minute, 2 * time.Hour, 64, 0, time.Minute}); got != want {
		t.Errorf("from flags %+v, want %+v", got, want)
	}

	cfg := parse(t, map[string]string{"MCPGATE_PUBLIC_URL": "http://127.0.0.1:8080", "MCPGATE_DATAPLANE_TOKEN": "t"}, "--max-streams-per-principal=-1")
	if _, err := Handler(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Errorf("negative limit accepted")
	}
	cfg.Limits.MaxStreamsPerPrincipal = 0
	cfg.Limits.DecisionCacheSize = -1
	if _, err := Handler(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
		t.Errorf("negative decision cache size accepted")
	}
	cfg.Limits.DecisionCacheSize = 0
	if _, err := Handler(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Errorf("Handler: %v", err)
	}
}

// TestControlPlaneProtocol: --control-plane-protocol (and its variable)
// chooses the client's protocols, HTTP/1.1 by default; an unknown value is
// refused before anything starts.
func TestControlPlaneProtocol(t *testing.T) {
	parse := func(t *testing.T, env map[string]string, args ...string) Config {
		t.Helper()
		fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		cfg := RegisterFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatalf("parse %q: %v", args, err)
		}
		if _, err := ops.ApplyEnv(fs, func(name string) (string, bool) { v, ok := env[name]; return v, ok }); err != nil {
			t.Fatalf("env %v: %v", env, err)
		}
		return cfg()
	}
	if got := parse(t, nil).Ops.ControlPlaneProtocol; got != ProtocolHTTP1 {
		t.Errorf("default %q, want %q", got, ProtocolHTTP1)
	}
	if got := parse(t, map[string]string{"MCPGATE_CONTROL_PLANE_PROTOCOL": "h2"}).Ops.ControlPlaneProtocol; got != ProtocolHTTP2 {
		t.Errorf("from env %q, want %q", got, ProtocolHTTP2)
	}
	for _, tc := range []struct {
		protocol          string
		http1, h2c, h2tls bool
	}{
		{"", true, false, false},
		{ProtocolHTTP1, true, false, false},
		{ProtocolHTTP2, false, true, true},
	} {
		hc, err := NewControlPlaneClient(tc.protocol)
		if err != nil {
			t.Fatalf("%q: %v", tc.protocol, err)
		}
		tr := hc.Transport.(*http.Transport)
		p := tr.Protocols
		if p == nil || p.HTTP1() != tc.http1 || p.UnencryptedHTTP2() != tc.h2c || p.HTTP2() != tc.h2tls {
			t.Errorf("%q: protocols %v", tc.protocol, p)
		}
		if tr.MaxIdleConnsPerHost < dataplane.DefaultMaxStreamsPerPrincipal {
			t.Errorf("%q: %d idle connections per host: steady load would dial", tc.protocol, tr.MaxIdleConnsPerHost)
		}
	}
	cfg := parse(t, map[string]string{"MCPGATE_PUBLIC_URL": "http://127.0.0.1:8080", "MCPGATE_DATAPLANE_TOKEN": "t"}, "--control-plane-protocol=spdy")
	if _, err := Handler(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil || !strings.Contains(err.Error(), `control-plane protocol "spdy": want http1 or h2`) {
		t.Errorf("unknown protocol: %v", err)
	}
}
