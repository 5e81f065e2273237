package clustertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// hangGuard bounds a whole fault test; no assertion depends on it.
const hangGuard = 2 * time.Minute

type fixture struct {
	c        *Cluster
	up       *Upstream
	key, id  string
	ctx      context.Context
	proxyURL []string
}

func setup(t *testing.T) *fixture { return setupWith(t, Options{}) }

func setupWith(t *testing.T, opts Options) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	t.Cleanup(cancel)
	c := Start(t, opts)
	up := StartUpstream(t)
	key, id, err := c.Admin(0).Setup(ctx, "echo", up.URL, "alice")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{c: c, up: up, key: key, id: id, ctx: ctx}
	for _, p := range c.Proxies {
		f.proxyURL = append(f.proxyURL, p.URL)
		if _, err := f.waitStatus(p.URL, key, http.StatusOK); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// waitStatus polls an initialize POST until it gets want; it returns how
// long that took.
func (f *fixture) waitStatus(base, key string, want int) (time.Duration, error) {
	start := time.Now()
	last := 0
	for {
		status, _, _, err := Post(f.ctx, base, "echo", key, InitializeBody)
		if err == nil && status == want {
			return time.Since(start), nil
		}
		if err == nil {
			last = status
		}
		select {
		case <-f.ctx.Done():
			return 0, fmt.Errorf("%s: still %d, want %d: %w", base, last, want, f.ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// clients opens n sessions per data plane.
func (f *fixture) clients(t *testing.T, key string, n int) []*Client {
	t.Helper()
	var out []*Client
	for _, u := range f.proxyURL {
		for range n {
			cl, err := Connect(f.ctx, u, "echo", key)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cl.Close() })
			out = append(out, cl)
		}
	}
	return out
}

type readiness struct {
	Status string `json:"status"`
	Detail string `json:"detail"`
}

func ready(ctx context.Context, n *Node) (int, readiness) {
	var r readiness
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.MetricsURL+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, r
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

// waitReadiness polls n's /readyz until its status is want.
func (f *fixture) waitReadiness(n *Node, want string) (time.Duration, error) {
	start := time.Now()
	for {
		if _, r := ready(f.ctx, n); r.Status == want {
			return time.Since(start), nil
		}
		select {
		case <-f.ctx.Done():
			_, r := ready(context.Background(), n)
			return 0, fmt.Errorf("%s readiness %q, want %q: %w", n.Name, r.Status, want, f.ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// writer creates principals through alternating control planes from
// several concurrent loops until stopped, recording which writes were
// acknowledged and when each was issued.
type writer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	acked  []string
	ackAt  []time.Time // issue time of each acknowledged write
	errors map[string]int
	slow   time.Duration // longest write
}

func startWriter(ctx context.Context, c *Cluster) *writer {
	ctx, cancel := context.WithCancel(ctx)
	w := &writer{cancel: cancel, errors: map[string]int{}}
	admins := []*Admin{c.Admin(0), c.Admin(1)}
	// A new write is issued every 20 ms whatever the earlier ones are
	// doing (at most 64 in flight), so a stalled write does not hide when
	// writes became possible again.
	sem := make(chan struct{}, 64)
	w.wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				continue
			}
			w.wg.Go(func() {
				defer func() { <-sem }()
				name := fmt.Sprintf("writer-%d", i)
				issued := time.Now()
				wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
				_, err := admins[i%2].Principals.PutPrincipal(wctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
					Name: name, Kind: configv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT, Role: configv1.Role_ROLE_MEMBER,
				}})
				wcancel()
				if ctx.Err() != nil {
					return
				}
				w.mu.Lock()
				defer w.mu.Unlock()
				w.slow = max(w.slow, time.Since(issued))
				if err != nil {
					w.errors[connect.CodeOf(err).String()]++
					return
				}
				w.acked = append(w.acked, name)
				w.ackAt = append(w.ackAt, issued)
			})
		}
	})
	return w
}

// ackedSince counts acknowledged writes issued after t and returns the
// earliest issue time among them.
func (w *writer) ackedSince(t time.Time) (int, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, first := 0, time.Time{}
	for _, at := range w.ackAt {
		if at.After(t) {
			if n == 0 || at.Before(first) {
				first = at
			}
			n++
		}
	}
	return n, first
}

func (w *writer) stop() ([]string, map[string]int, time.Duration) {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.errors, w.slow
}

// waitWrites waits until at least n writes issued after t were
// acknowledged and returns when the first of them was issued.
func (f *fixture) waitWrites(w *writer, t time.Time, n int) (time.Time, error) {
	for {
		if got, first := w.ackedSince(t); got >= n {
			return first, nil
		}
		select {
		case <-f.ctx.Done():
			return time.Time{}, fmt.Errorf("writes after %v: %w", t, f.ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// checkNoLostWrite polls every control plane until each lists every
// acknowledged principal.
func (f *fixture) checkNoLostWrite(t *testing.T, acked []string) {
	t.Helper()
	for i := range f.c.Controls {
		for {
			res, err := f.c.Admin(i).Principals.ListPrincipals(f.ctx, &configv1.ListPrincipalsRequest{})
			missing := len(acked)
			if err == nil {
				have := map[string]bool{}
				for _, p := range res.GetPrincipals() {
					have[p.GetName()] = true
				}
				missing = 0
				for _, n := range acked {
					if !have[n] {
						missing++
					}
				}
			}
			if missing == 0 {
				break
			}
			select {
			case <-f.ctx.Done():
				t.Fatalf("control-%d: %d of %d acknowledged writes missing", i, missing, len(acked))
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

func TestEtcdMemberKilledAndRestarted(t *testing.T) {
	f := setup(t)
	traffic := StartTraffic(f.ctx, f.clients(t, f.key, 2), 5*time.Millisecond)
	w := startWriter(f.ctx, f.c)
	if err := traffic.WaitOK(f.ctx, 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.waitWrites(w, time.Time{}, 5); err != nil {
		t.Fatal(err)
	}

	victim := f.c.Etcd.Leader(f.ctx)
	if victim < 0 {
		victim = 0
	}
	killAt := time.Now()
	f.c.Etcd.Members[victim].Kill()
	firstWrite, err := f.waitWrites(w, killAt, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := traffic.WaitOK(f.ctx, 100); err != nil {
		t.Fatal(err)
	}
	restartAt := time.Now()
	if err := f.c.Etcd.Restart(f.ctx, victim); err != nil {
		t.Fatal(err)
	}
	rejoin := time.Since(restartAt)
	if _, err := f.waitWrites(w, time.Now(), 10); err != nil {
		t.Fatal(err)
	}
	if err := traffic.WaitOK(f.ctx, 100); err != nil {
		t.Fatal(err)
	}
	res := traffic.Stop()
	acked, werrs, slow := w.stop()
	f.checkNoLostWrite(t, acked)

	t.Logf("killed etcd member m%d (the leader); the first write issued after the kill that succeeded was issued %s after it; member healthy again %s after restart",
		victim, ms(firstWrite.Sub(killAt)), ms(rejoin))
	t.Logf("MCP traffic: %v", res)
	t.Logf("writes: %d acknowledged, all present on every control plane; failed (retryable) writes by code: %v; slowest write %s", len(acked), werrs, ms(slow))
	for _, fl := range res.Failures {
		t.Errorf("MCP call failed at +%s: %s", ms(fl.At.Sub(killAt)), fl.Err)
	}
	for code, n := range werrs {
		if code != connect.CodeUnavailable.String() && code != connect.CodeDeadlineExceeded.String() {
			t.Errorf("%d writes failed with non-retryable %s", n, code)
		}
	}
}

func TestEtcdQuorumLost(t *testing.T) {
	f := setup(t)
	traffic := StartTraffic(f.ctx, f.clients(t, f.key, 2), 5*time.Millisecond)
	if err := traffic.WaitOK(f.ctx, 20); err != nil {
		t.Fatal(err)
	}

	lostAt := time.Now()
	f.c.Etcd.Members[1].Kill()
	f.c.Etcd.Members[2].Kill()
	var detect []string
	for _, n := range f.c.Controls {
		_, err := f.waitReadiness(n, "degraded")
		if err != nil {
			t.Fatal(err)
		}
		detect = append(detect, fmt.Sprintf("%s after %s", n.Name, ms(time.Since(lostAt))))
	}
	t.Logf("quorum lost; control planes report degraded: %s", strings.Join(detect, ", "))

	// Reads: decisions keep coming from the last known state.
	if err := traffic.WaitOK(f.ctx, 100); err != nil {
		t.Fatal(err)
	}
	for _, p := range f.c.Proxies {
		if code, r := ready(f.ctx, p); code != http.StatusOK {
			t.Errorf("%s readiness %d %q while control planes serve cached state", p.Name, code, r.Status)
		}
	}
	// Writes fail with unavailable, and the CLI says so clearly.
	writeStart := time.Now()
	_, err := f.c.Admin(1).Keys.CreateKey(f.ctx, &configv1.CreateKeyRequest{Principal: "alice"})
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("CreateKey without quorum: %v, want code unavailable", err)
	}
	writeFail := time.Since(writeStart)
	cliStart := time.Now()
	out, code := f.c.CLI(f.ctx, 0, "keys", "create", "--principal", "alice")
	t.Logf("write without quorum failed with %v after %s; CLI (exit %d after %s): %s",
		connect.CodeOf(err), ms(writeFail), code, ms(time.Since(cliStart)), out)
	if code == 0 || !strings.Contains(strings.ToLower(out), "unavailable") || strings.Count(out, "\n") > 1 {
		t.Errorf("CLI without quorum: exit %d, output %q; want a one-line unavailable error", code, out)
	}

	restoreAt := time.Now()
	for _, i := range []int{1, 2} {
		if err := f.c.Etcd.Members[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []int{1, 2} {
		if err := f.c.Etcd.WaitHealthy(f.ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	quorum := time.Since(restoreAt)
	var catchUp []string
	for _, n := range f.c.Controls {
		if _, err := f.waitReadiness(n, "ok"); err != nil {
			t.Fatal(err)
		}
		catchUp = append(catchUp, fmt.Sprintf("%s ok %s after restart", n.Name, ms(time.Since(restoreAt))))
	}
	// Writes work again, and a key written now works on every data plane
	// without any restart.
	var newKey string
	for {
		res, err := f.c.Admin(1).Keys.CreateKey(f.ctx, &configv1.CreateKeyRequest{Principal: "alice", Name: "after-quorum"})
		if err == nil {
			newKey = res.GetKey()
			break
		}
		select {
		case <-f.ctx.Done():
			t.Fatalf("write after quorum returned: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	firstWrite := time.Since(restoreAt)
	for _, u := range f.proxyURL {
		if _, err := f.waitStatus(u, newKey, http.StatusOK); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := f.c.CLI(f.ctx, 1, "keys", "create", "--principal", "alice"); code != 0 {
		t.Errorf("CLI after quorum returned: exit %d: %s", code, out)
	}
	res := traffic.Stop()
	t.Logf("quorum back %s after restart; %s; first write %s after restart; new key usable on every data plane %s after restart",
		ms(quorum), strings.Join(catchUp, ", "), ms(firstWrite), ms(time.Since(restoreAt)))
	t.Logf("MCP traffic through quorum loss: %v", res)
	for _, fl := range res.Failures {
		t.Errorf("MCP call failed at +%s: %s", ms(fl.At.Sub(lostAt)), fl.Err)
	}
}

func TestControlPlaneKilled(t *testing.T) {
	f := setup(t)
	malloryKey, _, err := f.c.Admin(0).Principal(f.ctx, "mallory") // no grant on echo
	if err != nil {
		t.Fatal(err)
	}
	// A route the principal is not granted answers 404 like a missing one
	// (issue 8 item 16).
	for _, u := range f.proxyURL {
		if _, err := f.waitStatus(u, malloryKey, http.StatusNotFound); err != nil {
			t.Fatal(err)
		}
	}
	traffic := StartTraffic(f.ctx, f.clients(t, f.key, 2), 2*time.Millisecond)
	// A principal without a grant probes both data planes throughout: any
	// 200 would be a wrong decision.
	var wrong, refused, retryable atomic.Int64
	pctx, pcancel := context.WithCancel(f.ctx)
	var pwg sync.WaitGroup
	for _, u := range f.proxyURL {
		pwg.Go(func() {
			for pctx.Err() == nil {
				status, _, _, err := Post(pctx, u, "echo", malloryKey, InitializeBody)
				switch {
				case err != nil:
				case status == http.StatusNotFound:
					refused.Add(1)
				case status == http.StatusServiceUnavailable:
					retryable.Add(1)
				default:
					wrong.Add(1)
				}
			}
		})
	}
	if err := traffic.WaitOK(f.ctx, 50); err != nil {
		t.Fatal(err)
	}
	var log []string
	for i, n := range f.c.Controls {
		killAt := time.Now()
		n.Kill()
		if err := traffic.WaitOK(f.ctx, 200); err != nil {
			t.Fatal(err)
		}
		log = append(log, fmt.Sprintf("control-%d killed: 200 calls served in %s on the survivor", i, ms(time.Since(killAt))))
		restartAt := time.Now()
		if err := n.Restart(f.ctx); err != nil {
			t.Fatal(err)
		}
		log = append(log, fmt.Sprintf("control-%d back (ready) %s after restart", i, ms(time.Since(restartAt))))
		if err := traffic.WaitOK(f.ctx, 50); err != nil {
			t.Fatal(err)
		}
	}
	res := traffic.Stop()
	pcancel()
	pwg.Wait()
	for _, l := range log {
		t.Log(l)
	}
	t.Logf("MCP traffic through two control-plane crashes: %v", res)
	t.Logf("ungranted principal during failover: %d refused (404), %d retryable (503), %d wrong", refused.Load(), retryable.Load(), wrong.Load())
	if wrong.Load() != 0 {
		t.Errorf("%d requests of an ungranted principal got neither 404 nor 503", wrong.Load())
	}
	for i, fl := range res.Failures {
		if i < 5 {
			t.Logf("failed call: %s", fl.Err)
		}
		// The SDK reports a 503 as an error naming the status; anything
		// else is a failure of the failover.
		if !strings.Contains(fl.Err, "503") && !strings.Contains(fl.Err, "Service Unavailable") {
			t.Errorf("MCP call failed with a non-retryable error: %s", fl.Err)
		}
	}
}

func TestAllControlPlanesDown(t *testing.T) {
	f := setup(t)
	sessions := f.clients(t, f.key, 1)
	for _, s := range sessions {
		if err := s.Echo(f.ctx, "before"); err != nil {
			t.Fatal(err)
		}
	}
	downAt := time.Now()
	for _, n := range f.c.Controls {
		n.Kill()
	}
	before := f.up.Requests()
	for i, u := range f.proxyURL {
		for _, req := range []struct{ name, session, body string }{
			{"initialize", "", InitializeBody},
			{"tools/call in an existing session", sessions[i].ID(), EchoCallBody},
		} {
			status, retry, _, err := PostSession(f.ctx, u, "echo", f.key, req.session, req.body)
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusServiceUnavailable || retry == "" {
				t.Errorf("%s %s: %d Retry-After %q, want 503 with Retry-After", f.c.Proxies[i].Name, req.name, status, retry)
			}
		}
		if err := sessions[i].Echo(f.ctx, "during"); err == nil {
			t.Errorf("%s: SDK call succeeded with every control plane down", f.c.Proxies[i].Name)
		}
	}
	forwarded := f.up.Requests() - before
	if forwarded != 0 {
		t.Errorf("%d requests reached the upstream while no control plane could decide", forwarded)
	}
	var notReady []string
	for _, p := range f.c.Proxies {
		_, err := f.waitReadiness(p, "unavailable")
		if err != nil {
			t.Fatal(err)
		}
		notReady = append(notReady, fmt.Sprintf("%s not ready %s after the outage began", p.Name, ms(time.Since(downAt))))
	}

	for _, n := range f.c.Controls {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	var recovered []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, u := range f.proxyURL {
		wg.Go(func() {
			d, err := f.waitStatus(u, f.key, http.StatusOK)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			recovered = append(recovered, fmt.Sprintf("%s serves again %s after the control planes were restarted", f.c.Proxies[i].Name, ms(d)))
		})
	}
	wg.Wait()
	for _, s := range sessions {
		if err := s.Echo(f.ctx, "after"); err != nil {
			t.Errorf("existing session after recovery: %v", err)
		}
	}
	t.Logf("all control planes down: every request 503 + Retry-After, %d forwarded; %s", forwarded, strings.Join(notReady, ", "))
	t.Logf("recovery: %s", strings.Join(recovered, "; "))
}

func TestKeyRevokedOnOneReplica(t *testing.T) {
	f := setup(t)
	sessions := f.clients(t, f.key, 1)
	for _, s := range sessions {
		if err := s.Echo(f.ctx, "before"); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if _, err := f.c.Admin(1).Keys.RevokeKey(f.ctx, &configv1.RevokeKeyRequest{Id: f.id}); err != nil {
		t.Fatal(err)
	}
	acked := time.Since(start)
	var mu sync.Mutex
	var times []string
	var wg sync.WaitGroup
	for i, u := range f.proxyURL {
		wg.Go(func() {
			_, err := f.waitStatus(u, f.key, http.StatusUnauthorized)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			times = append(times, fmt.Sprintf("%s refuses it %s after the revoke call began", f.c.Proxies[i].Name, ms(d)))
		})
	}
	wg.Wait()
	for i, s := range sessions {
		if err := s.Echo(f.ctx, "after"); err == nil {
			t.Errorf("%s: existing session still works with a revoked key", f.c.Proxies[i].Name)
		}
	}
	t.Logf("key revoked on control-1 (call took %s): %s", ms(acked), strings.Join(times, "; "))
}

func TestDataPlaneRestarted(t *testing.T) {
	f := setup(t)
	lb := NewBalancer(f.proxyURL...)
	balanced, err := ConnectWith(f.ctx, f.proxyURL[0], "echo", f.key, ConnectOptions{Balancer: lb, Standalone: true})
	if err != nil {
		t.Fatal(err)
	}
	defer balanced.Close()
	pinned, err := Connect(f.ctx, f.proxyURL[0], "echo", f.key)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	for i := range 6 { // alternates between the two data planes
		if err := balanced.Echo(f.ctx, fmt.Sprint("rr", i)); err != nil {
			t.Fatal(err)
		}
	}

	p0 := f.c.Proxies[0]
	p0.Kill()
	lb.SetTargets(f.proxyURL[1])
	for i := range 3 {
		if err := balanced.Echo(f.ctx, fmt.Sprint("survivor", i)); err != nil {
			t.Fatalf("session moved to %s: %v", f.c.Proxies[1].Name, err)
		}
	}
	restartAt := time.Now()
	if err := p0.Restart(f.ctx); err != nil {
		t.Fatal(err)
	}
	restart := time.Since(restartAt)
	lb.SetTargets(f.proxyURL...)
	for i := range 6 {
		if err := balanced.Echo(f.ctx, fmt.Sprint("after", i)); err != nil {
			t.Fatalf("balanced session after restart: %v", err)
		}
	}
	if err := pinned.Echo(f.ctx, "pinned"); err != nil {
		t.Fatalf("session pinned to the restarted data plane: %v", err)
	}

	// SIGTERM drains: a streaming tool call in flight on the data plane
	// that is stopped completes.
	p1 := f.c.Proxies[1]
	onP1, err := Connect(f.ctx, p1.URL, "echo", f.key)
	if err != nil {
		t.Fatal(err)
	}
	defer onP1.Close()
	done := make(chan error, 1)
	go func() { done <- onP1.Countdown(f.ctx, 10, 100) }()
	if err := onP1.WaitProgress(f.ctx); err != nil {
		t.Fatal(err)
	}
	stopAt := time.Now()
	p1.Stop(20 * time.Second)
	if err := <-done; err != nil {
		t.Errorf("streaming call in flight during SIGTERM: %v", err)
	}
	t.Logf("data plane restarted in %s (to ready); sessions kept working through it and on the other replica; SIGTERM drain of %s took %s with a streaming call in flight",
		ms(restart), p1.Name, ms(time.Since(stopAt)))
}
