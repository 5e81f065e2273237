package limits_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/limits"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// replica is one control plane's store and limiter over the shared etcd.
type replica struct {
	st  *store.Store
	lim *limits.Limiter
}

// clock is a settable clock shared by the replicas.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }

// replicas starts n stores (each with its own etcd client, like separate
// processes) and their limiters on clk, registered and seeing each other.
func replicas(t *testing.T, srv *etcdtest.Server, n int, clk *clock) []replica {
	t.Helper()
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var out []replica
	for i := range n {
		st := store.New(srv.Client(t), kr, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = st.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		if err := st.WaitSynced(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := st.RegisterRateLimitReplica(t.Context(), string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
		out = append(out, replica{st: st, lim: limits.New(st, slog.New(slog.DiscardHandler), limits.WithClock(clk.Now), limits.WithReplicaID(string(rune('a'+i))))})
	}
	for _, r := range out {
		waitFor(t, func() bool { return r.st.RateLimitReplicas() == n })
	}
	return out
}

func groupsOf(p *configv1.Principal) limits.GroupsFunc {
	return func() ([]string, bool) { return limits.Groups(p), true }
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func putLimit(t *testing.T, rs []replica, l *configv1.RateLimit) {
	t.Helper()
	rev, err := rs[0].st.PutRateLimit(t.Context(), l, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := r.st.WaitRevision(t.Context(), rev); err != nil {
			t.Fatal(err)
		}
	}
}

// spread makes calls calls by p to server/tool from 8 concurrent clients,
// call i going to replica i % len(rs), and returns how many were
// admitted and the refusals.
func spread(t *testing.T, rs []replica, clk *clock, p *configv1.Principal, server, tool string, calls int) (int, []*limits.Refusal) {
	t.Helper()
	var admitted atomic.Int64
	var mu sync.Mutex
	var refusals []*limits.Refusal
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(calls) {
					return
				}
				applied, refused, err := rs[i%int64(len(rs))].lim.Check(t.Context(), clk.Now(), p.GetName(), groupsOf(p), server, tool)
				if err != nil || !applied {
					t.Errorf("call %d: applied %v, err %v", i, applied, err)
					return
				}
				if refused == nil {
					admitted.Add(1)
				} else {
					mu.Lock()
					refusals = append(refusals, refused)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return int(admitted.Load()), refusals
}

// TestGlobalLimitAcrossReplicas: with two replicas (two stores, two
// limiters, one etcd) and 300 calls spread over them within one minute, a
// limit of 100/min admits between 90 and 110 calls (the design admits
// exactly 100 while load continues), refuses the rest naming the limit,
// the window and the seconds to the minute's end, and etcd sees at most
// one write per 5 calls. The next minute admits again.
func TestGlobalLimitAcrossReplicas(t *testing.T) {
	srv := etcdtest.Start(t)
	clk := &clock{now: time.Date(2026, 11, 30, 10, 0, 30, 0, time.UTC)}
	rs := replicas(t, srv, 2, clk)
	putLimit(t, rs, &configv1.RateLimit{Id: "per-minute", Principals: []string{"alice"}, PerMinute: 100})
	alice := &configv1.Principal{Name: "alice"}

	head := func() int64 {
		rev, err := rs[0].st.HeadRevision(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	before := head()
	const calls = 300
	admitted, refusals := spread(t, rs, clk, alice, "github", "", calls)
	writes := head() - before
	t.Logf("admitted %d of %d, etcd writes %d", admitted, calls, writes)
	if admitted < 90 || admitted > 110 {
		t.Fatalf("admitted %d calls, want 90..110", admitted)
	}
	if admitted+len(refusals) != calls {
		t.Fatalf("admitted %d + refused %d != %d", admitted, len(refusals), calls)
	}
	for _, r := range refusals {
		if *r != (limits.Refusal{LimitID: "per-minute", Window: "minute", RetryAfter: 30}) {
			t.Fatalf("refusal %+v", *r)
		}
	}
	if writes > calls/5 {
		t.Fatalf("etcd saw %d writes for %d calls, want at most %d", writes, calls, calls/5)
	}

	// Another principal, another server: their own counts.
	if n, _ := spread(t, rs, clk, alice, "gitlab", "", 20); n != 20 {
		t.Fatalf("another server: admitted %d of 20", n)
	}
	if applied, _, _ := rs[0].lim.Check(t.Context(), clk.Now(), "bob", groupsOf(&configv1.Principal{Name: "bob"}), "github", ""); applied {
		t.Fatal("the limit applied to bob")
	}

	// The next minute starts a new window.
	clk.Set(time.Date(2026, 11, 30, 10, 1, 0, 0, time.UTC))
	if n, _ := spread(t, rs, clk, alice, "github", "", 50); n != 50 {
		t.Fatalf("next minute: admitted %d of 50", n)
	}
}

// TestLimitWindowsAndGlobs: a glob limit counts every matching tool of a
// server together and ignores other tools and methods; a limit's day
// quota refuses with the day window once spent even while the per-second
// rate has room; a group default counts each member separately.
func TestLimitWindowsAndGlobs(t *testing.T) {
	srv := etcdtest.Start(t)
	clk := &clock{now: time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)}
	rs := replicas(t, srv, 2, clk)
	putLimit(t, rs, &configv1.RateLimit{Id: "writes", Groups: []string{"devs"}, Servers: []string{"github"}, Tools: []string{"create_*", "merge_*"}, PerSecond: 100, PerDay: 6})
	ann := &configv1.Principal{Name: "ann", Groups: []string{"devs"}}
	ben := &configv1.Principal{Name: "ben", AssertedGroups: []*configv1.GroupAssertion{{Group: "devs", IdentityProvider: "idp"}}}
	ctx := t.Context()

	for i, tool := range []string{"create_issue", "merge_pull_request", "create_branch", "merge_x", "create_y", "create_z"} {
		applied, refused, err := rs[i%2].lim.Check(ctx, clk.Now(), ann.GetName(), groupsOf(ann), "github", tool)
		if err != nil || !applied || refused != nil {
			t.Fatalf("call %d (%s): applied %v refused %v err %v", i, tool, applied, refused, err)
		}
	}
	_, refused, err := rs[0].lim.Check(ctx, clk.Now(), ann.GetName(), groupsOf(ann), "github", "create_issue")
	if err != nil || refused == nil || *refused != (limits.Refusal{LimitID: "writes", Window: "day", RetryAfter: 3600}) {
		t.Fatalf("7th write: refused %+v, err %v; want the day quota, retry in 3600 s", refused, err)
	}
	// An admin raising the quota mid-day: the day's count goes on against
	// the new bound, on both replicas.
	cur, _ := rs[0].st.RateLimit("writes")
	raised := proto.CloneOf(cur)
	raised.PerDay = 8
	rev, err := rs[0].st.PutRateLimit(ctx, raised, cur.GetRevision())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := r.st.WaitRevision(ctx, rev); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		if applied, refused, err := rs[i%2].lim.Check(ctx, clk.Now(), ann.GetName(), groupsOf(ann), "github", "create_issue"); !applied || refused != nil || err != nil {
			t.Fatalf("after raising, call %d: applied %v refused %v err %v", i, applied, refused, err)
		}
	}
	if _, refused, _ := rs[1].lim.Check(ctx, clk.Now(), ann.GetName(), groupsOf(ann), "github", "create_issue"); refused == nil || refused.Window != "day" {
		t.Fatalf("9th write: refused %+v, want the day quota", refused)
	}
	raised.PerDay = 6
	raised.Revision = 0
	if rev, err = rs[0].st.PutRateLimit(ctx, raised, rev); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := r.st.WaitRevision(ctx, rev); err != nil {
			t.Fatal(err)
		}
	}

	// Reads are not counted, on any replica.
	for i := range 10 {
		if applied, refused, err := rs[i%2].lim.Check(ctx, clk.Now(), ann.GetName(), groupsOf(ann), "github", "list_issues"); applied || refused != nil || err != nil {
			t.Fatalf("read: applied %v refused %v err %v", applied, refused, err)
		}
		if applied, _, _ := rs[i%2].lim.Check(ctx, clk.Now(), ann.GetName(), groupsOf(ann), "github", ""); applied {
			t.Fatal("a tool limit applied to a request that is not a tools/call")
		}
	}
	// Ben, a member by assertion, has his own count.
	if applied, refused, err := rs[1].lim.Check(ctx, clk.Now(), ben.GetName(), groupsOf(ben), "github", "create_issue"); !applied || refused != nil || err != nil {
		t.Fatalf("ben: applied %v refused %v err %v", applied, refused, err)
	}

	// Usage as replica 0 sees it. The day: ann spent 8 of the raised
	// quota, back at 6 now: all used. The second: each replica took a
	// chunk of 5 (100/(10×2)) and spent 4, and the one replica 1 holds
	// unspent counts as used (the documented bound): 10 - 1 held here = 9.
	us, err := rs[0].lim.Usage(ctx, ann)
	if err != nil {
		t.Fatal(err)
	}
	want := []limits.Usage{
		{LimitID: "writes", Server: "github", Window: "second", Limit: 100, Used: 9, Remaining: 91, Reset: 1},
		{LimitID: "writes", Server: "github", Window: "day", Limit: 6, Used: 6, Remaining: 0, Reset: 3600},
	}
	if len(us) != len(want) {
		t.Fatalf("usage %+v, want %+v", us, want)
	}
	for i := range want {
		if us[i] != want[i] {
			t.Errorf("usage[%d] = %+v, want %+v", i, us[i], want[i])
		}
	}
}

// BenchmarkCheck measures the limit check alone, on the path every call
// takes once its replica holds units (a day quota whose chunk is large
// enough that etcd is written once): compare with the decision's time
// (controlplane/authorizeapi BenchmarkAuthorizeRateLimit).
func BenchmarkCheck(b *testing.B) {
	srv := etcdtest.Start(b)
	kr, err := vault.Generate()
	if err != nil {
		b.Fatal(err)
	}
	st := store.New(srv.Client(b), kr, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	if _, err := st.PutRateLimit(ctx, &configv1.RateLimit{Id: "others", Principals: []string{"bob"}, PerSecond: 10}, 0); err != nil {
		b.Fatal(err)
	}
	if _, err := st.PutRateLimit(ctx, &configv1.RateLimit{Id: "reads", Tools: []string{"read_*"}, PerSecond: 10}, 0); err != nil {
		b.Fatal(err)
	}
	rev, err := st.PutRateLimit(ctx, &configv1.RateLimit{Id: "sends", Principals: []string{"alice"}, Tools: []string{"send_*"}, PerDay: 1_000_000_000_000}, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		b.Fatal(err)
	}
	lim := limits.New(st, slog.New(slog.DiscardHandler))
	alice := &configv1.Principal{Name: "alice", Groups: []string{"devs"}}
	now := time.Now() // the decision's time, which Authorize passes on
	b.ReportAllocs()
	for b.Loop() {
		if applied, refused, err := lim.Check(ctx, now, alice.GetName(), groupsOf(alice), "github", "send_mail"); !applied || refused != nil || err != nil {
			b.Fatal(applied, refused, err)
		}
	}
}
