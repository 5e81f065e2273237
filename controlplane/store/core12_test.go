package store_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// TestAccessTokenComparesWholeHash: the access-token lookup (Authorize's,
// from the cache, and the token endpoint's, from etcd) finds a record only
// when its stored hash is the whole presented hash, like the key lookup;
// a record under the same id (the hash's first 96 bits) with another or no
// hash is not the presented token.
func TestAccessTokenComparesWholeHash(t *testing.T) {
	cli := etcdtest.New(t)
	st := startFollowing(t, cli, slog.New(slog.DiscardHandler))
	ctx := t.Context()
	sum := store.HashKey("mcpgt_presented")
	other := sum
	other[31] ^= 0xff // same id, different hash
	rec := &storev1.AccessTokenRecord{Principal: "p", Route: "r", ExpireTime: timestamppb.New(time.Now().Add(time.Hour))}
	// The prefix-only record, as a writer bypassing PutAccessToken would
	// store it (PutAccessToken always stores the whole hash of its sum).
	rev, err := st.PutAccessToken(ctx, other, rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.AccessToken(sum); ok {
		t.Fatal("cache: a token matching only the id was found")
	}
	if _, _, err := st.AccessTokens().Find(ctx, sum); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("etcd: %v, want ErrNotFound", err)
	}
	if _, ok := st.AccessToken(other); !ok {
		t.Fatal("the stored token itself is not found")
	}
	// A record without a hash (written before hashes were stored) is found
	// by nobody.
	if _, err := st.AccessTokens().Put(ctx, store.KeyID(sum), rec, -1); err != nil {
		t.Fatal(err)
	}
	rev, err = st.HeadRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.AccessToken(sum); ok {
		t.Fatal("a token record without its hash was found")
	}
}

// TestSecretRecordsCompareWholeHash: codes, states, sessions and refresh
// tokens are found (and taken) by their secret's whole hash only; Create
// refuses a record that does not carry its hash.
func TestSecretRecordsCompareWholeHash(t *testing.T) {
	st := store.New(etcdtest.New(t), nil, slog.New(slog.DiscardHandler))
	ctx := t.Context()
	sum := store.HashKey("code-presented")
	other := sum
	other[0] ^= 0x01 // first byte differs: another id
	prefixTwin := sum
	prefixTwin[20] ^= 0x01 // same id (first 12 bytes), different hash
	codes := st.OAuthCodes()
	if _, err := codes.Create(ctx, sum, &storev1.OAuthCodeRecord{Family: "f", Sha256: other[:]}, time.Minute); err == nil {
		t.Fatal("Create accepted a record carrying another hash")
	}
	if _, err := codes.Create(ctx, prefixTwin, &storev1.OAuthCodeRecord{Family: "f", Sha256: prefixTwin[:]}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := codes.Find(ctx, sum); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Find by a hash sharing only the id: %v, want ErrNotFound", err)
	}
	if _, err := codes.Take(ctx, sum); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Take by a hash sharing only the id: %v, want ErrNotFound", err)
	}
	if _, err := codes.Create(ctx, sum, &storev1.OAuthCodeRecord{Family: "mine", Sha256: sum[:]}, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, _, err := codes.Find(ctx, sum)
	if err != nil || got.GetFamily() != "mine" {
		t.Fatalf("Find: %v %v", got, err)
	}
}

// TestTakeOnce: of many concurrent Takes of one record exactly one gets
// it, the others ErrNotFound.
func TestTakeOnce(t *testing.T) {
	st := store.New(etcdtest.New(t), nil, slog.New(slog.DiscardHandler))
	ctx := t.Context()
	for round := range 5 {
		sum := store.HashKey("state-" + string(rune('a'+round)))
		if _, err := st.OAuthStates().Create(ctx, sum, &storev1.OAuthStateRecord{Principal: "p", Sha256: sum[:]}, time.Minute); err != nil {
			t.Fatal(err)
		}
		var won, lost atomic.Int32
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				rec, err := st.OAuthStates().Take(ctx, sum)
				switch {
				case err == nil && rec.GetPrincipal() == "p":
					won.Add(1)
				case errors.Is(err, store.ErrNotFound):
					lost.Add(1)
				default:
					t.Errorf("take: %v %v", rec, err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 || lost.Load() != 9 {
			t.Fatalf("round %d: %d won, %d lost", round, won.Load(), lost.Load())
		}
	}
}

// TestLocksShareOneSession: locks are held on the store's one long-lived
// session: however many locks are taken, etcd holds one lease for them,
// and it goes when the store stops.
func TestLocksShareOneSession(t *testing.T) {
	cli := etcdtest.New(t)
	st := store.New(cli, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	leases := func() int {
		t.Helper()
		r, err := cli.Leases(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Leases)
	}
	for i := range 5 {
		unlock, err := st.Lock(t.Context(), "grant/alice/Gmail")
		if err != nil {
			t.Fatal(err)
		}
		// Another lock while holding the first: same session.
		unlock2, err := st.Lock(t.Context(), "grant/bob/Gmail")
		if err != nil {
			t.Fatal(err)
		}
		if n := leases(); n != 1 {
			t.Fatalf("cycle %d: %d leases, want 1", i, n)
		}
		unlock2()
		unlock()
	}
	// Mutual exclusion still holds on the shared session: a second
	// holder waits until the first unlocks.
	unlock, err := st.Lock(t.Context(), "grant/alice/Gmail")
	if err != nil {
		t.Fatal(err)
	}
	other := store.New(cli, nil, slog.New(slog.DiscardHandler))
	octx, ocancel := context.WithCancel(context.Background())
	odone := make(chan struct{})
	go func() { defer close(odone); _ = other.Run(octx) }()
	got := make(chan error, 1)
	go func() {
		u, err := other.Lock(t.Context(), "grant/alice/Gmail")
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("second replica locked a held lock: %v", err)
	default:
	}
	unlock()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	ocancel()
	<-odone
	cancel()
	<-done
	if n := leases(); n != 0 {
		t.Fatalf("%d leases after the stores stopped, want 0", n)
	}
}
