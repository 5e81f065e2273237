package store_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// Issue 8 item 9 (leases): a leased write that fails, and the lease of a
// record that a renewal replaced, do not linger in etcd for their TTL (30
// days for registrations, 90 for consents): etcd keeps exactly one lease
// per leased record.
func TestSec09LeasedWritesLeaveNoLeases(t *testing.T) {
	cli := etcdtest.New(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(cli, kr, slog.New(slog.DiscardHandler))
	ctx := t.Context()
	leases := func() int {
		t.Helper()
		r, err := cli.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(r.Leases)
	}
	rev, err := st.PutLeased(ctx, "sec09", "a", []byte("v1"), time.Hour)
	if err != nil || leases() != 1 {
		t.Fatalf("put: %v, %d leases", err, leases())
	}
	// Create-only on an existing record: conflict, and its lease is gone.
	if _, err := st.PutLeased(ctx, "sec09", "a", []byte("v2"), time.Hour); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := st.PutLeasedAt(ctx, "sec09", "a", []byte("v2"), time.Hour, rev+100); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale renewal: %v", err)
	}
	if n := leases(); n != 1 {
		t.Fatalf("%d leases after failed writes", n)
	}
	// A renewal replaces the lease.
	for range 3 {
		if rev, err = st.PutLeasedAt(ctx, "sec09", "a", []byte("v3"), time.Hour, rev); err != nil {
			t.Fatal(err)
		}
	}
	if n := leases(); n != 1 {
		t.Fatalf("%d leases after renewals", n)
	}
	b, _, err := st.Get(ctx, "sec09", "a")
	if err != nil || string(b) != "v3" {
		t.Fatalf("record %q %v", b, err)
	}
}
