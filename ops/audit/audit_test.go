package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
)

func lines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestRequestEvent(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	at := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
	handle := "sealed-session-handle-value"
	err := l.Request(Request{
		Time: at, Principal: "alice", KeyID: "k7f3a9c2e81d4b6f", Route: "Gmail",
		Method: "tools/call", Tool: strings.Repeat("t", 500), Decision: "allow", Reason: "ok",
		Status: 200, Upstream: 200, Latency: 1500 * time.Microsecond, SessionID: handle,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := lines(t, buf.Bytes())
	if len(got) != 1 {
		t.Fatalf("%d lines, want 1", len(got))
	}
	ev := got[0]
	want := map[string]any{
		"time": "2026-11-28T03:00:00Z", "kind": KindRequest, "principal": "alice",
		"key_id_prefix": "k7f3a9c2", "route": "Gmail", "method": "tools/call", "decision": "allow",
		"reason": "ok", "status": 200.0, "upstream_status": 200.0, "latency_ms": 1.5,
		"session_hash": SessionHash(handle),
	}
	for k, v := range want {
		if ev[k] != v {
			t.Errorf("%s = %v, want %v", k, ev[k], v)
		}
	}
	if tool := ev["tool"].(string); len(tool) > maxField+len("…") {
		t.Errorf("tool not clipped: %d bytes", len(tool))
	}
	if strings.Contains(buf.String(), handle) || strings.Contains(buf.String(), "k7f3a9c2e81d4b6f") {
		t.Error("session handle or full key id logged")
	}
}

// TestRequestEventRuleAndLimit: a deny's event names its rule (rule_id),
// a rate-limited one its limit (limit_id), each absent when empty.
func TestRequestEventRuleAndLimit(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	at := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
	for _, ev := range []Request{
		{Time: at, Principal: "alice", Route: "gh", Method: "tools/call", Tool: "merge_pr", Decision: "deny", Reason: "not allowed by policy", Rule: "release-merge", Status: 403},
		{Time: at, Principal: "alice", Route: "gh", Method: "tools/call", Tool: "create_issue", Decision: "rate_limited", Reason: "rate limit exceeded", Limit: "writes", Status: 429},
	} {
		if err := l.Request(ev); err != nil {
			t.Fatal(err)
		}
	}
	want := `{"time":"2026-11-28T03:00:00Z","kind":"mcp_request","principal":"alice","route":"gh","method":"tools/call","tool":"merge_pr","decision":"deny","reason":"not allowed by policy","rule_id":"release-merge","status":403,"latency_ms":0}` + "\n" +
		`{"time":"2026-11-28T03:00:00Z","kind":"mcp_request","principal":"alice","route":"gh","method":"tools/call","tool":"create_issue","decision":"rate_limited","reason":"rate limit exceeded","limit_id":"writes","status":429,"latency_ms":0}` + "\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestConcurrentEventsDoNotInterleave(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_ = l.Request(Request{Route: "r", Decision: "allow", Status: 200, Tool: strings.Repeat("x", i)})
		})
	}
	wg.Wait()
	if got := len(lines(t, buf.Bytes())); got != 50 {
		t.Errorf("%d lines, want 50", got)
	}
}

func TestOpen(t *testing.T) {
	l, err := Open("")
	if err != nil || l != nil {
		t.Fatalf("Open(\"\") = %v, %v; want nil, nil", l, err)
	}
	if err := l.Request(Request{}); err != nil { // nil logger discards
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for range 2 { // appends across reopen
		l, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Admin(Admin{Procedure: "/p", Code: "ok"}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(lines(t, b)); n != 2 {
		t.Errorf("%d lines, want 2", n)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing", "dir", "a.log")); err == nil {
		t.Error("Open of an impossible path succeeded")
	}
}

type fakeAdmin struct {
	configv1connect.UnimplementedServerServiceHandler
	vaultv1connect.UnimplementedConnectionServiceHandler
}

func (fakeAdmin) PutServer(_ context.Context, req *configv1.PutServerRequest) (*configv1.PutServerResponse, error) {
	if req.GetServer().GetName() == "bad" {
		return nil, connect.NewError(connect.CodeAborted, errors.New("revision conflict"))
	}
	return &configv1.PutServerResponse{Server: &configv1.McpServer{Name: req.GetServer().GetName(), Revision: 42}}, nil
}

func (fakeAdmin) ListServers(context.Context, *configv1.ListServersRequest) (*configv1.ListServersResponse, error) {
	return &configv1.ListServersResponse{}, nil
}

func (fakeAdmin) RevokeConnection(context.Context, *vaultv1.RevokeConnectionRequest) (*vaultv1.RevokeConnectionResponse, error) {
	return &vaultv1.RevokeConnectionResponse{}, nil
}

func TestAdminInterceptor(t *testing.T) {
	var buf bytes.Buffer
	identify := func(_ context.Context, h http.Header) (string, string) {
		if h.Get("Authorization") == "" {
			return "", ""
		}
		return "admin", "kadmin0123456789"
	}
	ic := connect.WithInterceptors(AdminInterceptor(New(&buf), identify))
	mux := http.NewServeMux()
	mux.Handle(configv1connect.NewServerServiceHandler(fakeAdmin{}, ic))
	mux.Handle(vaultv1connect.NewConnectionServiceHandler(fakeAdmin{}, ic))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := t.Context()
	auth := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, r connect.AnyRequest) (connect.AnyResponse, error) {
			r.Header().Set("Authorization", "Bearer mcpg_supersecretadminkey")
			return next(ctx, r)
		}
	}))
	servers := configv1connect.NewServerServiceClient(srv.Client(), srv.URL, auth)
	conns := vaultv1connect.NewConnectionServiceClient(srv.Client(), srv.URL, auth)

	const secret = "upstream-secret-value"
	if _, err := servers.PutServer(ctx, &configv1.PutServerRequest{Server: &configv1.McpServer{Name: "Gmail", AuthValue: secret}}); err != nil {
		t.Fatal(err)
	}
	_, _ = servers.PutServer(ctx, &configv1.PutServerRequest{Server: &configv1.McpServer{Name: "bad"}})
	if _, err := servers.ListServers(ctx, &configv1.ListServersRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := conns.RevokeConnection(ctx, &vaultv1.RevokeConnectionRequest{Principal: "alice", Server: "Gmail"}); err != nil {
		t.Fatal(err)
	}

	got := lines(t, buf.Bytes())
	want := []struct {
		procedure, object, code string
		revision                float64
	}{
		{configv1connect.ServerServicePutServerProcedure, "Gmail", "ok", 42},
		{configv1connect.ServerServicePutServerProcedure, "bad", "aborted", 0},
		{vaultv1connect.ConnectionServiceRevokeConnectionProcedure, "alice/Gmail", "ok", 0},
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d (reads are not audited):\n%s", len(got), len(want), buf.String())
	}
	for i, w := range want {
		ev := got[i]
		if ev["kind"] != KindAdmin || ev["procedure"] != w.procedure || ev["object"] != w.object || ev["code"] != w.code || ev["principal"] != "admin" || ev["key_id_prefix"] != "kadmin01" {
			t.Errorf("event %d = %v", i, ev)
		}
		if r, _ := ev["revision"].(float64); r != w.revision {
			t.Errorf("event %d revision = %v, want %v", i, ev["revision"], w.revision)
		}
	}
	for _, s := range []string{secret, "mcpg_supersecretadminkey"} {
		if strings.Contains(buf.String(), s) {
			t.Errorf("audit log contains secret %q", s)
		}
	}
}

func TestIdPEvent(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	at := time.Date(2026, 11, 30, 13, 0, 0, 0, time.UTC)
	many := make([]string, 300)
	for i := range many {
		many[i] = "g"
	}
	if err := l.IdP(IdP{Time: at, Event: IdPSignIn, IdP: "okta", Principal: "ada_corp-example", Subject: "ada@corp.example",
		Outcome: IdPOK, Created: true, GroupsAdded: []string{"release", strings.Repeat("x", 200)}}); err != nil {
		t.Fatal(err)
	}
	if err := l.IdP(IdP{Time: at, Event: IdPReassert, IdP: "okta", Principal: "ada_corp-example", Outcome: IdPRefused,
		Reason: "identity_changed", GroupsRemoved: many}); err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want0 := `{"time":"2026-11-30T13:00:00Z","kind":"idp","event":"signin","idp":"okta","principal":"ada_corp-example",` +
		`"subject":"ada@corp.example","outcome":"ok","created":true,"groups_added":["release","` + strings.Repeat("x", 128) + `…"]}`
	if len(got) != 2 || got[0] != want0 {
		t.Fatalf("line 1:\n%s\nwant\n%s", got[0], want0)
	}
	var ev struct {
		Outcome, Reason string
		Removed         []string `json:"groups_removed"`
		Added           []string `json:"groups_added"`
	}
	if err := json.Unmarshal([]byte(got[1]), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Outcome != "refused" || ev.Reason != "identity_changed" || len(ev.Removed) != maxGroups || ev.Added != nil {
		t.Fatalf("line 2: %s", got[1])
	}
	var nilLogger *Logger
	if err := nilLogger.IdP(IdP{Event: IdPSignIn}); err != nil {
		t.Fatal(err)
	}
}

// TestBufferedWritesEveryEventInOrder: a buffered logger whose writer
// keeps up writes every event, in the order they were logged, and Close
// writes what is still queued.
func TestBufferedWritesEveryEventInOrder(t *testing.T) {
	var buf bytes.Buffer
	l := NewBuffered(&buf, 0)
	const n = 2000 // well within DefaultBufferEvents: nothing can be dropped
	for i := range n {
		if err := l.Request(Request{Route: "r", Decision: "allow", Status: 200, Tool: strconv.Itoa(i)}); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := lines(t, buf.Bytes())
	if len(got) != n {
		t.Fatalf("%d lines, want %d", len(got), n)
	}
	for i, ev := range got {
		if ev["tool"] != strconv.Itoa(i) || ev["kind"] != KindRequest {
			t.Fatalf("line %d is %v, want tool %d", i, ev, i)
		}
	}
	if d := l.Dropped(); d != 0 {
		t.Errorf("Dropped() = %d, want 0", d)
	}
	if err := l.Request(Request{Route: "late"}); !errors.Is(err, ErrDropped) || l.Dropped() != 1 {
		t.Errorf("event after Close: %v, dropped %d; want ErrDropped, 1", err, l.Dropped())
	}
	if err := l.Close(); err != nil { // idempotent
		t.Errorf("second Close: %v", err)
	}
}

// stuckWriter blocks every Write until released, and signals the first.
type stuckWriter struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *stuckWriter) Write(b []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

// TestBufferedBlockedWriterDropsAndCounts: while the writer is stuck, every
// event returns at once (the request path never waits on the audit sink);
// those beyond the queue are dropped and counted, never silently; once
// the writer moves again, the queued ones are written in order.
func TestBufferedBlockedWriterDropsAndCounts(t *testing.T) {
	w := &stuckWriter{entered: make(chan struct{}), release: make(chan struct{})}
	const queue = 4
	l := NewBuffered(w, queue)
	if err := l.Request(Request{Route: "r", Tool: "0"}); err != nil {
		t.Fatal(err)
	}
	<-w.entered // the writer holds event 0 and is stuck in Write
	for i := 1; i <= queue; i++ {
		if err := l.Request(Request{Route: "r", Tool: strconv.Itoa(i)}); err != nil {
			t.Fatalf("event %d with room in the queue: %v", i, err)
		}
	}
	const extra = 3
	for i := range extra {
		if err := l.Request(Request{Route: "r", Tool: "dropped"}); !errors.Is(err, ErrDropped) {
			t.Fatalf("event %d beyond the queue: %v, want ErrDropped", i, err)
		}
	}
	if err := l.Admin(Admin{Procedure: "/p", Code: "ok"}); !errors.Is(err, ErrDropped) {
		t.Fatalf("admin event beyond the queue: %v, want ErrDropped", err)
	}
	if d := l.Dropped(); d != extra+1 {
		t.Errorf("Dropped() = %d, want %d", d, extra+1)
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := lines(t, w.buf.Bytes())
	if len(got) != queue+1 {
		t.Fatalf("%d lines written, want %d", len(got), queue+1)
	}
	for i, ev := range got {
		if ev["tool"] != strconv.Itoa(i) {
			t.Errorf("line %d is %v, want tool %d", i, ev, i)
		}
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestBufferedWriteErrorsCount: events the writer failed to write count as
// dropped.
func TestBufferedWriteErrorsCount(t *testing.T) {
	l := NewBuffered(failingWriter{}, 0)
	for range 5 {
		if err := l.Request(Request{Route: "r"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if d := l.Dropped(); d != 5 {
		t.Errorf("Dropped() = %d, want 5", d)
	}
}
