// Package tracing sets up OpenTelemetry tracing for both planes. It is off
// unless an OTLP endpoint is configured: then incoming HTTP requests get a
// server span (continuing the caller's W3C trace context), and outgoing
// requests — data plane → control plane (Connect runs over HTTP) and data
// plane → upstream MCP server — get a client span and carry traceparent,
// so one trace crosses all three.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// Config configures tracing.
type Config struct {
	// Endpoint is the OTLP/gRPC collector URL (http://host:4317 for
	// plaintext, https://… for TLS). Empty: tracing is off.
	Endpoint string
	// ServiceName names this process in traces (mcpgate-control,
	// mcpgate-proxy).
	ServiceName string
	// SampleRatio of new traces to record (0 means 1: all); a caller's
	// sampling decision is always followed.
	SampleRatio float64
	// Exporter replaces the OTLP exporter (tests).
	Exporter sdktrace.SpanExporter
}

// Tracer is configured tracing. A nil *Tracer is tracing off: its wrappers
// return what they are given.
type Tracer struct {
	tp   *sdktrace.TracerProvider
	prop propagation.TextMapPropagator
}

// ErrBadEndpoint is returned for an endpoint that is not an http(s) URL.
var ErrBadEndpoint = errors.New("tracing endpoint must be an http:// or https:// URL")

// Setup starts tracing as cfg says, or returns nil when cfg.Endpoint and
// cfg.Exporter are both empty. It installs the provider and the W3C
// propagators globally too, for libraries that use the globals.
func Setup(ctx context.Context, cfg Config) (*Tracer, error) {
	exp := cfg.Exporter
	if exp == nil {
		if cfg.Endpoint == "" {
			return nil, nil
		}
		if !validEndpoint(cfg.Endpoint) {
			return nil, ErrBadEndpoint
		}
		var err error
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
	}
	ratio := cfg.SampleRatio
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	name := cfg.ServiceName
	if name == "" {
		name = "mcpgate"
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(name))),
	)
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(prop)
	return &Tracer{tp: tp, prop: prop}, nil
}

func validEndpoint(u string) bool {
	for _, p := range []string{"http://", "https://"} {
		if len(u) > len(p) && u[:len(p)] == p {
			return true
		}
	}
	return false
}

// Shutdown flushes pending spans.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// Handler gives every request to h a server span named operation (a fixed
// name: client-chosen paths are not span names).
func (t *Tracer) Handler(h http.Handler, operation string) http.Handler {
	if t == nil {
		return h
	}
	return otelhttp.NewHandler(h, operation,
		otelhttp.WithTracerProvider(t.tp), otelhttp.WithPropagators(t.prop))
}

// Transport gives every request through rt (nil: http.DefaultTransport) a
// client span and injects the trace context into its headers.
func (t *Tracer) Transport(rt http.RoundTripper) http.RoundTripper {
	if t == nil {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.tp), otelhttp.WithPropagators(t.prop))
}

// Start starts a span of the tracer (a no-op span when tracing is off).
func (t *Tracer) Start(ctx context.Context, name string) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tp.Tracer("github.com/mcpgate/mcpgate").Start(ctx, name)
}
