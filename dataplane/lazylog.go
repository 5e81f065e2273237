package dataplane

import (
	"context"
	"log/slog"
)

// lazyAttrs is a slog.Handler whose WithAttrs only remembers the
// attributes; they reach the wrapped handler when a record is actually
// handled. The data plane derives a logger with the route, method and
// decision for every request, and almost none of them logs anything: a
// text or JSON handler's WithAttrs formats the attributes at once (a
// handler clone and a buffer per request, profiled), this costs a slice.
type lazyAttrs struct {
	h     slog.Handler
	attrs []slog.Attr
}

func newLazyLogger(log *slog.Logger) *slog.Logger {
	if _, ok := log.Handler().(lazyAttrs); ok {
		return log
	}
	return slog.New(lazyAttrs{h: log.Handler()})
}

func (l lazyAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	return l.resolve().Handle(ctx, r)
}

func (l lazyAttrs) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return l
	}
	// Full slice expression: siblings never share a backing array.
	return lazyAttrs{h: l.h, attrs: append(l.attrs[:len(l.attrs):len(l.attrs)], attrs...)}
}

func (l lazyAttrs) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	return lazyAttrs{h: l.resolve().WithGroup(name)}
}

func (l lazyAttrs) resolve() slog.Handler {
	if len(l.attrs) == 0 {
		return l.h
	}
	return l.h.WithAttrs(l.attrs)
}
