package dataplane_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/ops/audit"
	"github.com/mcpgate/mcpgate/ops/metrics"
)

// fakeWatch is the fake control plane's invalidation stream: every open
// stream first gets a heartbeat at the fake's revision, then what the test
// sends; drop ends the open streams; refuse makes new ones fail.
type fakeWatch struct {
	mu      sync.Mutex
	subs    map[chan *authorizev1.WatchInvalidationsResponse]chan struct{} // → its drop channel
	refuse  bool
	streams atomic.Int64
	// quiet stops the periodic heartbeats (which keep the data plane from
	// dropping a silent stream; they carry no revision).
	quiet atomic.Bool
}

func (f *fakeCP) WatchInvalidations(ctx context.Context, _ *authorizev1.WatchInvalidationsRequest, out *connect.ServerStream[authorizev1.WatchInvalidationsResponse]) error {
	w := f.watch
	if w == nil {
		return connect.NewError(connect.CodeUnimplemented, errors.New("no watch"))
	}
	w.mu.Lock()
	if w.refuse {
		w.mu.Unlock()
		return connect.NewError(connect.CodeUnavailable, errors.New("refused"))
	}
	ch, drop := make(chan *authorizev1.WatchInvalidationsResponse, 16), make(chan struct{})
	w.subs[ch] = drop
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.subs, ch)
		w.mu.Unlock()
	}()
	w.streams.Add(1)
	if err := out.Send(&authorizev1.WatchInvalidationsResponse{Revision: f.rev.Load(), Heartbeat: true}); err != nil {
		return err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if !w.quiet.Load() {
				if err := out.Send(&authorizev1.WatchInvalidationsResponse{Heartbeat: true}); err != nil {
					return err
				}
			}
		case <-ctx.Done():
			return nil
		case <-drop:
			return connect.NewError(connect.CodeUnavailable, errors.New("dropped"))
		case m := <-ch:
			if err := out.Send(m); err != nil {
				return err
			}
		}
	}
}

// send delivers m to every open stream (at the fake's revision when m has
// none).
func (w *fakeWatch) send(f *fakeCP, m *authorizev1.WatchInvalidationsResponse) {
	if m.Revision == 0 {
		m.Revision = f.rev.Load()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs {
		ch <- m
	}
}

func (w *fakeWatch) drop(refuse bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.refuse = refuse
	for ch, d := range w.subs {
		close(d)
		delete(w.subs, ch)
	}
}

func fakeTokenID(tok string) string {
	if tok == "" {
		return ""
	}
	return "tid-" + tok
}

// fakeClock is the decision cache's clock in these tests: it moves only
// when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type cacheFixture struct {
	cp    *fakeCP
	up    *upstream
	g     *gateway
	clock *fakeClock
	audit *lockedBuffer
	m     *metrics.DataPlane
}

// newCacheFixture: a gateway with the decision cache on, in front of a
// fake control plane that allows reuse for a minute at revision 7, with
// route Echo (no upstream auth), Static (a static secret) and Pass
// (passthrough), all granted to alice.
func newCacheFixture(t *testing.T, mod func(*dataplane.Config)) *cacheFixture {
	t.Helper()
	f := &cacheFixture{cp: newFakeCP(t), up: newUpstream(t, true), clock: &fakeClock{t: time.Now()}, audit: &lockedBuffer{}, m: metrics.NewDataPlane()}
	f.cp.watch = &fakeWatch{subs: map[chan *authorizev1.WatchInvalidationsResponse]chan struct{}{}}
	f.cp.rev.Store(7)
	f.cp.cacheAgeMs.Store(60_000)
	alice := map[string]bool{"alice": true}
	f.cp.setRoute("Echo", &route{mode: "none", upstream: f.up.url(), principals: alice})
	f.cp.setRoute("Static", &route{mode: "static", upstream: f.up.url(), principals: alice})
	f.cp.setRoute("Pass", &route{mode: "passthrough", upstream: f.up.url(), principals: alice})
	f.g = newGateway(t, f.cp, func(c *dataplane.Config) {
		c.DecisionCacheSize = 100
		c.DecisionCacheMaxAge = time.Hour
		c.Audit = audit.New(f.audit)
		c.Metrics = f.m
		if mod != nil {
			mod(c)
		}
	})
	dataplane.SetDecisionCacheClock(f.g.proxy, f.clock.now)
	f.waitCurrent(t, true)
	return f
}

// waitCurrent polls until the cache's usability is want (the stream
// connects and drops asynchronously).
func (f *cacheFixture) waitCurrent(t *testing.T, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // hang guard only
	for dataplane.DecisionCacheCurrent(f.g.proxy) != want {
		if time.Now().After(deadline) {
			t.Fatalf("decision cache current: still %v", !want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitRevision polls until the stream has applied revision rev.
func (f *cacheFixture) waitRevision(t *testing.T, rev int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // hang guard only
	for dataplane.DecisionCacheRevision(f.g.proxy) < rev {
		if time.Now().After(deadline) {
			t.Fatalf("stream revision %d, want %d", dataplane.DecisionCacheRevision(f.g.proxy), rev)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// invalidate sends m at the next revision and waits until it is applied.
func (f *cacheFixture) invalidate(t *testing.T, m *authorizev1.WatchInvalidationsResponse) {
	t.Helper()
	m.Revision = f.cp.rev.Add(1)
	f.cp.watch.send(f.cp, m)
	f.waitRevision(t, m.Revision)
}

func (f *cacheFixture) calls() int {
	f.cp.mu.Lock()
	defer f.cp.mu.Unlock()
	return len(f.cp.requests)
}

// post sends an initialize to route with header and checks the status.
func (f *cacheFixture) post(t *testing.T, route string, header map[string]string, status int) {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	for k, v := range header {
		h[k] = v
	}
	resp, body := f.g.do(t, "POST", "/"+route+"/mcp", h, initBody)
	if resp.StatusCode != status {
		t.Fatalf("POST /%s/mcp: %d %s, want %d", route, resp.StatusCode, body, status)
	}
}

// expectRPC sends the request and asserts whether it reached the control
// plane.
func (f *cacheFixture) expectRPC(t *testing.T, rpc bool, route string, header map[string]string, status int) {
	t.Helper()
	before := f.calls()
	f.post(t, route, header, status)
	if got := f.calls() - before; (got == 1) != rpc || got > 1 {
		t.Fatalf("POST /%s/mcp made %d Authorize calls, want rpc=%v", route, got, rpc)
	}
}

var aliceKey = map[string]string{"X-MCPGate-API-Key": "mcpg_alice"}

func (f *cacheFixture) auditLines(t *testing.T, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // hang guard only
	for {
		var lines []map[string]any
		sc := bufio.NewScanner(strings.NewReader(f.audit.String()))
		for sc.Scan() {
			var l map[string]any
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l)
		}
		if len(lines) >= n || time.Now().After(deadline) {
			if len(lines) != n {
				t.Fatalf("%d audit events, want %d:\n%s", len(lines), n, f.audit.String())
			}
			return lines
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (f *cacheFixture) metric(t *testing.T, want string) {
	t.Helper()
	rec := httptest.NewRecorder()
	metrics.Handler(f.m.Registry).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %s", want)
	}
}

// TestDecisionCacheReusesAllow: the same request with the same credential
// is decided once while the stream is current; the upstream still gets the
// decision's headers every time; every request has one audit event, the
// reused ones marked cached; hits and misses are counted.
func TestDecisionCacheReusesAllow(t *testing.T) {
	f := newCacheFixture(t, nil)
	f.expectRPC(t, true, "Static", aliceKey, 200)
	f.expectRPC(t, false, "Static", aliceKey, 200)
	f.expectRPC(t, false, "Static", aliceKey, 200)
	// Another route, method or credential is another decision.
	f.expectRPC(t, true, "Echo", aliceKey, 200)
	f.expectRPC(t, true, "Echo", map[string]string{"Authorization": "Bearer tok_alice"}, 200)
	f.expectRPC(t, false, "Echo", map[string]string{"Authorization": "Bearer tok_alice"}, 200)

	seen := f.up.requests()
	if len(seen) != 6 {
		t.Fatalf("upstream saw %d requests, want 6", len(seen))
	}
	for i, r := range seen[:3] {
		if r.header.Get("X-API-Key") != "upstream-static-secret" {
			t.Errorf("upstream request %d: X-API-Key %q", i, r.header.Get("X-API-Key"))
		}
		if r.header.Get("X-MCPGate-API-Key") != "" {
			t.Errorf("upstream request %d carries the gateway key", i)
		}
	}
	lines := f.auditLines(t, 6)
	for i, want := range []bool{false, true, true, false, false, true} {
		if got, _ := lines[i]["cached"].(bool); got != want || lines[i]["decision"] != "allow" || lines[i]["principal"] != "alice" {
			t.Errorf("audit event %d: %v, want cached=%v", i, lines[i], want)
		}
	}
	f.metric(t, `mcpgate_dataplane_decision_cache_lookups_total{result="hit"} 3`)
	f.metric(t, `mcpgate_dataplane_decision_cache_lookups_total{result="miss"} 3`)
	f.metric(t, `mcpgate_dataplane_decision_cache_stream_current 1`)
}

// TestDecisionCacheNeverCachesRefusals: CHALLENGE, DENY and NOT_FOUND are
// asked for every time, and an ALLOW without a max age is not reused.
func TestDecisionCacheNeverCachesRefusals(t *testing.T) {
	f := newCacheFixture(t, nil)
	for range 2 {
		f.expectRPC(t, true, "Echo", nil, 401)
		f.expectRPC(t, true, "Echo", map[string]string{"X-MCPGate-API-Key": "mcpg_nobody"}, 401)
		f.expectRPC(t, true, "Echo", map[string]string{"X-MCPGate-API-Key": "mcpg_bob"}, 403)
		f.expectRPC(t, true, "Nope", aliceKey, 404)
	}
	f.cp.cacheAgeMs.Store(0)
	f.expectRPC(t, true, "Echo", aliceKey, 200)
	f.expectRPC(t, true, "Echo", aliceKey, 200)
	if n := dataplane.DecisionCacheLen(f.g.proxy); n != 0 {
		t.Errorf("%d decisions cached", n)
	}
}

// TestDecisionCachePassthroughValue: the passthrough credential is part of
// the key: another value is another decision, and the upstream gets the
// value of each request.
func TestDecisionCachePassthroughValue(t *testing.T) {
	f := newCacheFixture(t, nil)
	with := func(v string) map[string]string {
		return map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "X-MCP-Pass-Authorization": v}
	}
	f.expectRPC(t, true, "Pass", with("Bearer up-a"), 200)
	f.expectRPC(t, false, "Pass", with("Bearer up-a"), 200)
	f.expectRPC(t, true, "Pass", with("Bearer up-b"), 200)
	f.expectRPC(t, false, "Pass", with("Bearer up-a"), 200)
	var got []string
	for _, r := range f.up.requests() {
		got = append(got, r.header.Get("Authorization"))
	}
	if strings.Join(got, ",") != "Bearer up-a,Bearer up-a,Bearer up-b,Bearer up-a" {
		t.Errorf("upstream Authorization values %q", got)
	}
}

// TestDecisionCacheInvalidations: a message naming a cached decision's
// principal, key, token, route or (principal, route), or all, makes the
// next request ask again; other names leave it alone.
func TestDecisionCacheInvalidations(t *testing.T) {
	f := newCacheFixture(t, nil)
	token := map[string]string{"Authorization": "Bearer tok_alice"}
	warm := func() {
		t.Helper()
		f.post(t, "Echo", aliceKey, 200)
		f.post(t, "Echo", token, 200)
		f.expectRPC(t, false, "Echo", aliceKey, 200)
		f.expectRPC(t, false, "Echo", token, 200)
	}
	cases := []struct {
		name           string
		msg            *authorizev1.WatchInvalidationsResponse
		keyGone, tokGo bool
	}{
		{"other principal", &authorizev1.WatchInvalidationsResponse{Principals: []string{"bob"}}, false, false},
		{"other route", &authorizev1.WatchInvalidationsResponse{Routes: []string{"Static"}, Grants: []*authorizev1.InvalidatedGrant{{Principal: "alice", Route: "Static"}}}, false, false},
		{"key", &authorizev1.WatchInvalidationsResponse{KeyIds: []string{fakeKeyID("mcpg_alice")}}, true, false},
		{"token", &authorizev1.WatchInvalidationsResponse{AccessTokenIds: []string{fakeTokenID("tok_alice")}}, false, true},
		{"principal", &authorizev1.WatchInvalidationsResponse{Principals: []string{"alice"}}, true, true},
		{"route", &authorizev1.WatchInvalidationsResponse{Routes: []string{"Echo"}}, true, true},
		{"grant", &authorizev1.WatchInvalidationsResponse{Grants: []*authorizev1.InvalidatedGrant{{Principal: "alice", Route: "Echo"}}}, true, true},
		{"all", &authorizev1.WatchInvalidationsResponse{All: true}, true, true},
		{"heartbeat", &authorizev1.WatchInvalidationsResponse{Heartbeat: true}, false, false},
	}
	for _, c := range cases {
		warm()
		f.invalidate(t, c.msg)
		f.expectRPC(t, c.keyGone, "Echo", aliceKey, 200)
		f.expectRPC(t, c.tokGo, "Echo", token, 200)
		if t.Failed() {
			t.Fatalf("after invalidation %q", c.name)
		}
	}
	f.metric(t, `mcpgate_dataplane_decision_cache_invalidations_total{kind="all"} 2`)
}

// TestDecisionCacheStreamDown: when the invalidation stream ends and
// cannot be opened again, no cached decision is used (every request asks
// the control plane, and gets 503 when it cannot answer); once a stream is
// back, the cache starts empty.
func TestDecisionCacheStreamDown(t *testing.T) {
	f := newCacheFixture(t, nil)
	f.post(t, "Static", aliceKey, 200)
	f.expectRPC(t, false, "Static", aliceKey, 200)

	f.cp.watch.drop(true)
	f.waitCurrent(t, false)
	if n := dataplane.DecisionCacheLen(f.g.proxy); n != 0 {
		t.Errorf("%d decisions kept after the stream ended", n)
	}
	f.expectRPC(t, true, "Static", aliceKey, 200)
	f.expectRPC(t, true, "Static", aliceKey, 200)
	f.cp.down.Store(true)
	before := len(f.up.requests())
	f.post(t, "Static", aliceKey, 503)
	if len(f.up.requests()) != before {
		t.Error("forwarded while the control plane could not decide")
	}
	f.cp.down.Store(false)

	f.cp.watch.mu.Lock()
	f.cp.watch.refuse = false
	f.cp.watch.mu.Unlock()
	f.waitCurrent(t, true)
	f.expectRPC(t, true, "Static", aliceKey, 200)
	f.expectRPC(t, false, "Static", aliceKey, 200)
}

// TestDecisionCacheStaleHeartbeat: with no message from the stream for
// 750 ms (by the cache's clock) nothing cached is used; a message makes
// the entries usable again (the stream never broke, so nothing was
// missed).
func TestDecisionCacheStaleHeartbeat(t *testing.T) {
	f := newCacheFixture(t, nil)
	f.cp.watch.quiet.Store(true)
	f.post(t, "Static", aliceKey, 200)
	f.expectRPC(t, false, "Static", aliceKey, 200)
	f.clock.advance(700 * time.Millisecond)
	f.expectRPC(t, false, "Static", aliceKey, 200)
	f.clock.advance(100 * time.Millisecond)
	f.expectRPC(t, true, "Static", aliceKey, 200)
	f.expectRPC(t, true, "Static", aliceKey, 200)
	f.invalidate(t, &authorizev1.WatchInvalidationsResponse{Heartbeat: true})
	f.expectRPC(t, false, "Static", aliceKey, 200)
	f.metric(t, `mcpgate_dataplane_decision_cache_lookups_total{result="bypass"} 2`)
}

// TestDecisionCacheMaxAge: an entry lives until the earlier of the
// control plane's max age and the data plane's own maximum.
func TestDecisionCacheMaxAge(t *testing.T) {
	f := newCacheFixture(t, func(c *dataplane.Config) { c.DecisionCacheMaxAge = 5 * time.Second })
	step := func(d time.Duration) {
		f.clock.advance(d)
		f.invalidate(t, &authorizev1.WatchInvalidationsResponse{Heartbeat: true}) // keep the stream current
	}
	f.cp.cacheAgeMs.Store(2_000) // below the data plane's 5 s
	f.post(t, "Static", aliceKey, 200)
	step(1900 * time.Millisecond)
	f.expectRPC(t, false, "Static", aliceKey, 200)
	step(100 * time.Millisecond)
	f.expectRPC(t, true, "Static", aliceKey, 200)

	f.cp.cacheAgeMs.Store(60_000) // above it
	f.expectRPC(t, true, "Echo", aliceKey, 200)
	for range 9 {
		step(500 * time.Millisecond)
	}
	f.expectRPC(t, false, "Echo", aliceKey, 200)
	step(500 * time.Millisecond)
	f.expectRPC(t, true, "Echo", aliceKey, 200)
}

// TestDecisionCacheRevisions: a decision made on a revision older than the
// stream's is not cached (a change in between may not have reached it); one
// made on a revision the stream has not reached is (it reflects every
// change up to its revision), and an invalidation below its revision still
// drops it.
func TestDecisionCacheRevisions(t *testing.T) {
	f := newCacheFixture(t, nil)
	f.invalidate(t, &authorizev1.WatchInvalidationsResponse{Heartbeat: true}) // stream at 8
	f.cp.rev.Store(7)                                                         // a replica behind
	f.expectRPC(t, true, "Static", aliceKey, 200)
	f.expectRPC(t, true, "Static", aliceKey, 200)

	f.cp.rev.Store(10) // a replica ahead of the stream
	f.expectRPC(t, true, "Echo", aliceKey, 200)
	f.expectRPC(t, false, "Echo", aliceKey, 200)
	f.cp.watch.send(f.cp, &authorizev1.WatchInvalidationsResponse{Revision: 9, Routes: []string{"Echo"}})
	f.waitRevision(t, 9)
	f.expectRPC(t, true, "Echo", aliceKey, 200)
}

// TestDecisionCacheBounded: the cache keeps at most its size, dropping the
// least recently used.
func TestDecisionCacheBounded(t *testing.T) {
	f := newCacheFixture(t, func(c *dataplane.Config) { c.DecisionCacheSize = 2 })
	f.post(t, "Echo", aliceKey, 200)
	f.post(t, "Static", aliceKey, 200)
	f.expectRPC(t, false, "Echo", aliceKey, 200) // Echo now most recent
	f.expectRPC(t, true, "Pass", map[string]string{"X-MCPGate-API-Key": "mcpg_alice", "X-MCP-Pass-Authorization": "Bearer x"}, 200)
	if n := dataplane.DecisionCacheLen(f.g.proxy); n != 2 {
		t.Errorf("%d entries, want 2", n)
	}
	f.expectRPC(t, false, "Echo", aliceKey, 200)
	f.expectRPC(t, true, "Static", aliceKey, 200)
}

// TestDecisionCacheUpstreamUnauthorized: an upstream 401 drops the cached
// decision that carried the refused credential.
func TestDecisionCacheUpstreamUnauthorized(t *testing.T) {
	f := newCacheFixture(t, nil)
	refusing := newStatusServer(http.StatusUnauthorized, "")
	t.Cleanup(refusing.Close)
	f.cp.setRoute("Gmail", &route{mode: "authcode", upstream: refusing.URL, principals: map[string]bool{"alice": true}, vault: map[string]bool{"alice": true}})
	f.expectRPC(t, true, "Gmail", aliceKey, 401)
	f.expectRPC(t, true, "Gmail", aliceKey, 401)
}

// TestDecisionCacheStreamBehind: a stream that stays behind the revision
// the control plane decides on (its replica stopped following the store,
// though it still sends heartbeats) is not trusted after 750 ms; once it
// catches up, the cache is used again.
func TestDecisionCacheStreamBehind(t *testing.T) {
	f := newCacheFixture(t, nil)
	f.cp.watch.quiet.Store(true)
	heartbeat := func(rev int64) {
		t.Helper()
		f.cp.watch.send(f.cp, &authorizev1.WatchInvalidationsResponse{Heartbeat: true, Revision: rev})
		f.waitRevision(t, rev)
		deadline := time.Now().Add(10 * time.Second) // hang guard only
		for !dataplane.DecisionCacheHeardAt(f.g.proxy).Equal(f.clock.now()) {
			if time.Now().After(deadline) {
				t.Fatal("heartbeat not applied")
			}
			time.Sleep(time.Millisecond)
		}
	}
	f.post(t, "Static", aliceKey, 200) // cached at 7
	f.cp.rev.Store(9)                  // another replica decides at 9
	f.expectRPC(t, true, "Echo", aliceKey, 200)
	f.expectRPC(t, false, "Static", aliceKey, 200) // behind only just now
	f.clock.advance(700 * time.Millisecond)
	heartbeat(7)
	f.expectRPC(t, false, "Static", aliceKey, 200)
	f.clock.advance(100 * time.Millisecond)
	heartbeat(7)
	f.expectRPC(t, true, "Static", aliceKey, 200) // stuck behind 9 for 800 ms
	heartbeat(9)
	f.expectRPC(t, false, "Static", aliceKey, 200)
	f.expectRPC(t, false, "Echo", aliceKey, 200)
}
