package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	"github.com/mcpgate/mcpgate/ops/audit"
	"github.com/mcpgate/mcpgate/ops/health"
)

func TestLabels(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"known_method", MethodLabel("tools/call"), "tools/call"},
		{"no_method", MethodLabel(""), "none"},
		{"client_invented_method", MethodLabel("tools/call/../../secret"), "other"},
		{"configured_route", RouteLabel("Gmail", true), "Gmail"},
		{"unconfigured_route", RouteLabel("attacker-chosen-name", false), Unknown},
		{"empty_route", RouteLabel("", true), Unknown},
		{"known_decision", decisionLabel(DecisionChallenge), DecisionChallenge},
		{"unknown_decision", decisionLabel("DECISION_UNSPECIFIED"), DecisionError},
		{"status", statusLabel(401), "401"},
		{"bogus_status", statusLabel(7000), "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestDataPlaneRecords(t *testing.T) {
	m := NewDataPlane()
	m.RecordRequest(Request{Route: "Gmail", Configured: true, Method: "tools/call", Decision: DecisionAllow, Status: 200, Duration: 20 * time.Millisecond})
	m.RecordRequest(Request{Route: "made-up-by-client", Configured: false, Method: "initialize", Decision: DecisionNotFound, Status: 404})
	m.RecordRequest(Request{Route: "Gmail", Configured: true, Method: "x/y", Decision: DecisionError, Status: 503})
	m.RecordAuthorize(DecisionChallenge, time.Millisecond)
	m.RecordUpstream("Gmail", 200, 10*time.Millisecond)
	m.RecordUpstream("Gmail", 0, time.Second)
	done := m.InFlight()
	if got := value(t, m.inflight); got != 1 {
		t.Errorf("in flight = %v, want 1", got)
	}
	done()

	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"Gmail", "tools/call", "allow", "200"}, 1},
		{[]string{"unknown", "initialize", "not_found", "404"}, 1},
		{[]string{"Gmail", "other", "error", "503"}, 1},
	} {
		if got := value(t, m.requests.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("requests%v = %v, want %v", c.labels, got, c.want)
		}
	}
	body := scrape(t, Handler(m.Registry))
	for _, want := range []string{
		`mcpgate_dataplane_authorize_duration_seconds_count{decision="challenge"} 1`,
		`mcpgate_dataplane_upstream_duration_seconds_count{route="Gmail",status="error"} 1`,
		`mcpgate_dataplane_request_duration_seconds_bucket{decision="allow",method="tools/call",route="Gmail",le="0.025"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Contains(body, "made-up-by-client") {
		t.Error("an unconfigured route became a label")
	}
}

func TestNilIsNoop(t *testing.T) {
	var d *DataPlane
	d.RecordRequest(Request{})
	d.RecordAuthorize(DecisionAllow, 0)
	d.RecordUpstream("x", 200, 0)
	d.InFlight()()
	var c *ControlPlane
	c.RecordDecision(DecisionAllow, 0)
	c.RecordVaultRefresh(RefreshSuccess)
}

func TestVaultRefreshOutcomes(t *testing.T) {
	m := NewControlPlane(nil)
	m.RecordVaultRefresh(RefreshSuccess)
	m.RecordVaultRefresh(RefreshSuccess)
	m.RecordVaultRefresh("token=abc123") // never a label
	tests := []struct {
		outcome string
		want    float64
	}{
		{RefreshSuccess, 2}, {RefreshFailed, 1}, {RefreshRevoked, 0}, {RefreshSkipped, 0},
	}
	for _, tt := range tests {
		if got := value(t, m.refreshes.WithLabelValues(tt.outcome)); got != tt.want {
			t.Errorf("refreshes{%s} = %v, want %v", tt.outcome, got, tt.want)
		}
	}
	if strings.Contains(scrape(t, Handler(m.Registry)), "abc123") {
		t.Error("an unknown outcome became a label")
	}
}

func TestCacheCollector(t *testing.T) {
	tests := []struct {
		name    string
		stats   CacheStats
		want    []string
		wantNot []string
	}{
		{
			name:  "following",
			stats: CacheStats{Synced: true, Healthy: true, Revision: 40, Head: 42},
			want: []string{
				"mcpgate_controlplane_cache_revision 40", "mcpgate_controlplane_etcd_revision 42",
				"mcpgate_controlplane_cache_revision_lag 2", "mcpgate_controlplane_cache_synced 1",
				"mcpgate_controlplane_cache_watch_healthy 1", "mcpgate_controlplane_etcd_up 1",
			},
		},
		{
			name:    "quorum_lost",
			stats:   CacheStats{Synced: true, Healthy: false, Revision: 40, HeadErr: ErrNoHead},
			want:    []string{"mcpgate_controlplane_cache_revision 40", "mcpgate_controlplane_cache_watch_healthy 0", "mcpgate_controlplane_etcd_up 0"},
			wantNot: []string{"mcpgate_controlplane_cache_revision_lag", "mcpgate_controlplane_etcd_revision "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewControlPlane(func(context.Context) CacheStats { return tt.stats })
			body := scrape(t, Handler(m.Registry))
			for _, w := range tt.want {
				if !strings.Contains(body, w+"\n") {
					t.Errorf("scrape lacks %q", w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(body, w) {
					t.Errorf("scrape has %q", w)
				}
			}
		})
	}
}

type fakeAuthorize struct {
	authorizev1connect.UnimplementedAuthorizeServiceHandler
	err error
}

func (f fakeAuthorize) Authorize(context.Context, *authorizev1.AuthorizeRequest) (*authorizev1.AuthorizeResponse, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &authorizev1.AuthorizeResponse{Decision: authorizev1.Decision_DECISION_DENY}, nil
}

func TestInterceptor(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		code string
	}{
		{"ok", nil, "ok"},
		{"unavailable", connect.NewError(connect.CodeUnavailable, errors.New("etcd unavailable")), "unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := NewControlPlane(nil)
			mux := http.NewServeMux()
			mux.Handle(authorizev1connect.NewAuthorizeServiceHandler(fakeAuthorize{err: tt.err}, connect.WithInterceptors(m.Interceptor())))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			cli := authorizev1connect.NewAuthorizeServiceClient(srv.Client(), srv.URL)
			_, _ = cli.Authorize(t.Context(), &authorizev1.AuthorizeRequest{Route: "x"})
			proc := authorizev1connect.AuthorizeServiceAuthorizeProcedure
			if got := value(t, m.rpcs.WithLabelValues(proc, tt.code)); got != 1 {
				t.Errorf("rpc_requests_total{%s,%s} = %v, want 1", proc, tt.code, got)
			}
			body := scrape(t, Handler(m.Registry))
			denied := strings.Contains(body, `mcpgate_controlplane_authorize_duration_seconds_count{decision="deny"} 1`)
			if denied != (tt.err == nil) {
				t.Errorf("decision histogram has a deny: %v, want %v", denied, tt.err == nil)
			}
		})
	}
}

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestDecisionOf(t *testing.T) {
	tests := []struct {
		d    authorizev1.Decision
		want string
	}{
		{authorizev1.Decision_DECISION_ALLOW, DecisionAllow},
		{authorizev1.Decision_DECISION_CHALLENGE, DecisionChallenge},
		{authorizev1.Decision_DECISION_DENY, DecisionDeny},
		{authorizev1.Decision_DECISION_NOT_FOUND, DecisionNotFound},
		{authorizev1.Decision_DECISION_RATE_LIMITED, DecisionRateLimited},
		{authorizev1.Decision_DECISION_UNSPECIFIED, DecisionError},
		{authorizev1.Decision(99), DecisionError},
	}
	for _, tt := range tests {
		if got := DecisionOf(tt.d); got != tt.want {
			t.Errorf("DecisionOf(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestListener(t *testing.T) {
	m := NewDataPlane()
	c := health.NewChecker(func(context.Context) health.Status { return health.Status{State: health.OK} })
	l, err := Listen("127.0.0.1:0", m.Registry, c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(t.Context())
	for path, want := range map[string]string{"/metrics": "go_goroutines", "/healthz": "ok", "/readyz": `"status":"ok"`} {
		resp, err := http.Get("http://" + l.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %q, want 200 containing %q", path, resp.StatusCode, b, want)
		}
	}
}

// stuck blocks every Write until release closes.
type stuck struct{ entered, release chan struct{} }

func (s stuck) Write(b []byte) (int, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release
	return len(b), nil
}

// TestAuditDropsExported: events a stuck audit log drops show on /metrics
// as mcpgate_audit_dropped_events_total; with both planes on one registry
// (NewShared) the counter and both planes' families are exported once.
func TestAuditDropsExported(t *testing.T) {
	w := stuck{entered: make(chan struct{}, 1), release: make(chan struct{})}
	al := audit.NewBuffered(w, 1)
	defer func() { close(w.release); _ = al.Close() }()
	dp, cp := NewShared(nil)
	if dp.Registry != cp.Registry {
		t.Fatal("NewShared: two registries")
	}
	CountAuditDrops(dp.Registry, al.Dropped)
	_ = al.Request(audit.Request{Route: "r"})
	<-w.entered                               // the writer holds one event
	_ = al.Request(audit.Request{Route: "r"}) // queued
	for range 3 {
		if err := al.Request(audit.Request{Route: "r"}); !errors.Is(err, audit.ErrDropped) {
			t.Fatalf("event beyond a full queue: %v", err)
		}
	}
	dp.RecordAuthorize(DecisionAllow, time.Millisecond)
	cp.RecordDecision(DecisionAllow, time.Millisecond)
	rec := httptest.NewRecorder()
	Handler(dp.Registry).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"\nmcpgate_audit_dropped_events_total 3\n",
		"\nmcpgate_dataplane_authorize_duration_seconds_count{decision=\"allow\"} 1\n",
		"\nmcpgate_controlplane_authorize_duration_seconds_count{decision=\"allow\"} 1\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}

	var nilLog *audit.Logger
	reg := NewDataPlane().Registry
	CountAuditDrops(reg, nilLog.Dropped) // auditing off: exported, 0
	rec = httptest.NewRecorder()
	Handler(reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "\nmcpgate_audit_dropped_events_total 0\n") {
		t.Error("auditing off: counter not exported as 0")
	}
}
