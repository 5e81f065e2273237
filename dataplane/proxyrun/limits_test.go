package proxyrun

import (
	"flag"
	"io"
	"log/slog"
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
