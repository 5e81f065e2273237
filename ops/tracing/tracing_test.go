package tracing

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestOffByDefault(t *testing.T) {
	tr, err := Setup(t.Context(), Config{})
	if err != nil || tr != nil {
		t.Fatalf("Setup(empty) = %v, %v; want nil, nil", tr, err)
	}
	h := http.NotFoundHandler()
	if got := tr.Handler(h, "x"); got == nil {
		t.Fatal("nil handler")
	}
	if rt := tr.Transport(http.DefaultTransport); rt != http.DefaultTransport {
		t.Error("Transport wrapped although tracing is off")
	}
	if err := tr.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestBadEndpoint(t *testing.T) {
	for _, ep := range []string{"collector:4317", "ftp://x"} {
		if _, err := Setup(t.Context(), Config{Endpoint: ep}); err == nil {
			t.Errorf("Setup(%q) succeeded", ep)
		}
	}
}

// TestPropagation follows one client request through a "data plane" that
// calls a "control plane" and then an "upstream": all spans share the
// client's trace id and the upstream receives it in traceparent.
func TestPropagation(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr, err := Setup(t.Context(), Config{Exporter: exp, ServiceName: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Shutdown(t.Context()) }()

	var upstreamParent, controlParent string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamParent = r.Header.Get("Traceparent")
	}))
	defer upstream.Close()
	control := httptest.NewServer(tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		controlParent = r.Header.Get("Traceparent")
	}), "control"))
	defer control.Close()
	cli := &http.Client{Transport: tr.Transport(nil)}
	data := httptest.NewServer(tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, u := range []string{control.URL, upstream.URL} {
			req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, u, nil)
			resp, err := cli.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}
	}), "data"))
	defer data.Close()

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest(http.MethodPost, data.URL+"/echo/mcp", nil)
	req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := tr.tp.ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for name, tp := range map[string]string{"upstream": upstreamParent, "control plane": controlParent} {
		if !strings.Contains(tp, traceID) {
			t.Errorf("%s got traceparent %q, want trace %s", name, tp, traceID)
		}
	}
	spans := exp.GetSpans()
	if len(spans) != 4 { // data server, 2 clients, control server
		t.Errorf("%d spans, want 4", len(spans))
	}
	for _, s := range spans {
		if s.SpanContext.TraceID().String() != traceID {
			t.Errorf("span %q in trace %s", s.Name, s.SpanContext.TraceID())
		}
	}
}
