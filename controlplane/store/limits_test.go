package store_test

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// TestRateLimitCounters: two stores (two replicas) taking units of one
// counter concurrently never hand out more than its bound: every
// compare-and-swap that lost re-reads in the same round trip and takes
// from what is left; the counter lives on a lease outliving its window;
// limits are cached and written by revision; replicas register on their
// lock lease.
func TestRateLimitCounters(t *testing.T) {
	srv := etcdtest.Start(t)
	log := slog.New(slog.DiscardHandler)
	a, b := startFollowing(t, srv.Client(t), log), startFollowing(t, srv.Client(t), log)
	ctx := t.Context()

	const limit = 50
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for i := range 8 {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Go(func() {
			var known store.CounterState
			for {
				took, now, err := st.TakeRateLimitUnits(ctx, "alice/github/writes/minute/60", "minute", time.Minute, known,
					func(granted int64) (int64, int64) { return min(3, limit-granted), limit })
				if err != nil {
					t.Error(err)
					return
				}
				if took == 0 {
					if now.Granted != limit || now.Limit != limit {
						t.Errorf("exhausted at %+v", now)
					}
					return
				}
				known = now
				mu.Lock()
				total += int(took)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if total != limit {
		t.Fatalf("handed out %d units, want %d", total, limit)
	}
	cs, err := a.RateLimitCounters(ctx, "alice/")
	if err != nil || len(cs) != 1 || cs["alice/github/writes/minute/60"].Granted != limit {
		t.Fatalf("counters %v %v", cs, err)
	}
	cli := srv.Client(t)
	resp, err := cli.Get(ctx, store.Prefix+store.KindRateLimitCounter+"/alice/github/writes/minute/60")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("counter not on a lease: %v %v", resp, err)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.GrantedTTL != int64((2*time.Minute+time.Minute)/time.Second) {
		t.Fatalf("lease TTL %v %v, want 180 s", ttl, err)
	}

	rev, err := a.PutRateLimit(ctx, &configv1.RateLimit{Id: "writes", PerMinute: 5}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutRateLimit(ctx, &configv1.RateLimit{Id: "writes", PerMinute: 6}, 0); err == nil {
		t.Fatal("second create succeeded")
	}
	if err := b.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if l, ok := b.RateLimit("writes"); !ok || l.GetPerMinute() != 5 || l.GetRevision() != rev {
		t.Fatalf("cached on b: %v %v", l, ok)
	}
	for _, st := range []*store.Store{a, b} {
		if err := st.RegisterRateLimitReplica(ctx, map[*store.Store]string{a: "a", b: "b"}[st]); err != nil {
			t.Fatal(err)
		}
	}
	pollUntil(t, "both replicas registered", func() bool { return a.RateLimitReplicas() == 2 && b.RateLimitReplicas() == 2 })
}
