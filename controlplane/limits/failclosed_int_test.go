package limits_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/limits"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// cuttable forwards TCP connections to etcd's unix socket until cut, as a
// network partition between a replica and etcd.
type cuttable struct {
	ln    net.Listener
	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func newCuttable(t *testing.T, endpoint string) *cuttable {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cuttable{ln: ln}
	t.Cleanup(func() { _ = ln.Close(); c.partition() })
	target := strings.TrimPrefix(endpoint, "unix://")
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			if c.cut {
				c.mu.Unlock()
				_ = in.Close()
				continue
			}
			up, err := net.Dial("unix", target)
			if err != nil {
				c.mu.Unlock()
				_ = in.Close()
				continue
			}
			c.conns = append(c.conns, in, up)
			c.mu.Unlock()
			go func() { _, _ = io.Copy(up, in); _ = up.Close(); _ = in.Close() }()
			go func() { _, _ = io.Copy(in, up); _ = up.Close(); _ = in.Close() }()
		}
	}()
	return c
}

func (c *cuttable) partition() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = true
	for _, x := range c.conns {
		_ = x.Close()
	}
	c.conns = nil
}

func (c *cuttable) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = false
}

// runStore runs st until the test ends and waits for its first sync.
func runStore(t *testing.T, st *store.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := st.WaitSynced(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestLimiterFailsClosed: cut off from etcd, a replica keeps admitting
// calls from the units it holds, and a call that needs a new chunk is an
// error (Authorize answers "could not decide": 503), never an uncounted
// admission.
func TestLimiterFailsClosed(t *testing.T) {
	srv := etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCuttable(t, srv.Endpoint)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + proxy.ln.Addr().String()}, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	clk := &clock{now: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	st := store.New(cli, kr, slog.New(slog.DiscardHandler))
	runStore(t, st)
	rev, err := st.PutRateLimit(t.Context(), &configv1.RateLimit{Id: "day", PerDay: 1000}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(t.Context(), rev); err != nil {
		t.Fatal(err)
	}
	lim := limits.New(st, slog.New(slog.DiscardHandler), limits.WithClock(clk.Now))
	alice := &configv1.Principal{Name: "alice"}
	if applied, refused, err := lim.Check(t.Context(), clk.Now(), "alice", groupsOf(alice), "github", ""); !applied || refused != nil || err != nil {
		t.Fatalf("first call: %v %v %v", applied, refused, err)
	}
	proxy.partition()
	// Healed before the store stops, so that it ends its etcd session
	// cleanly.
	t.Cleanup(proxy.heal)
	// The chunk taken (1000/10 = 100 with one replica) serves 99 more.
	for i := range 99 {
		if applied, refused, err := lim.Check(t.Context(), clk.Now(), "alice", groupsOf(alice), "github", ""); !applied || refused != nil || err != nil {
			t.Fatalf("call %d from local units: %v %v %v", i, applied, refused, err)
		}
	}
	applied, refused, err := lim.Check(t.Context(), clk.Now(), "alice", groupsOf(alice), "github", "")
	if !applied || refused != nil || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("call needing a chunk while cut off: applied %v refused %v err %v, want ErrUnavailable", applied, refused, err)
	}
}
