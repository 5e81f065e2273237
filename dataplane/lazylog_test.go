package dataplane

import (
	"bytes"
	"log/slog"
	"testing"
)

// TestLazyAttrsLogsLikeWith: a logger through lazyAttrs writes exactly
// what the wrapped handler writes with eager With/WithGroup, levels
// included, and loggers derived from one parent do not share attributes.
func TestLazyAttrsLogsLikeWith(t *testing.T) {
	run := func(wrap func(*slog.Logger) *slog.Logger) string {
		var buf bytes.Buffer
		base := wrap(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
			Level: slog.LevelInfo,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				return map[bool]slog.Attr{true: {}, false: a}[a.Key == slog.TimeKey]
			},
		})))
		parent := base.With(slog.String("route", "r"), slog.String("http_method", "POST"))
		a := parent.With(slog.String("decision", "allow"))
		b := parent.With(slog.String("decision", "deny"))
		a.Info("forwarded", slog.Int("upstream_status", 200))
		b.Warn("refused")
		a.Debug("not shown")
		a.WithGroup("g").With(slog.Int("n", 1)).Info("grouped", slog.Bool("x", true))
		base.Info("plain")
		return buf.String()
	}
	eager := run(func(l *slog.Logger) *slog.Logger { return l })
	lazy := run(newLazyLogger)
	if lazy != eager || eager == "" {
		t.Errorf("lazy:\n%s\neager:\n%s", lazy, eager)
	}
}
