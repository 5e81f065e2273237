package store_test

import (
	"bytes"
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
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// etcdProxy forwards TCP connections to etcd's unix socket and can cut the
// store off from etcd, as a network partition would.
type etcdProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	blocked bool
	conns   map[net.Conn]bool
}

func newEtcdProxy(t *testing.T, etcdEndpoint string) *etcdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &etcdProxy{ln: ln, target: strings.TrimPrefix(etcdEndpoint, "unix://"), conns: map[net.Conn]bool{}}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *etcdProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.blocked {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.Dial("unix", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); _ = up.Close(); _ = c.Close() }()
		go func() { _, _ = io.Copy(c, up); _ = up.Close(); _ = c.Close() }()
	}
}

// cut closes every forwarded connection and refuses new ones until restore.
func (p *etcdProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = true
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *etcdProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = false
}

func startFollowing(t *testing.T, cli *clientv3.Client, log *slog.Logger) *store.Store {
	t.Helper()
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(cli, kr, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer wcancel()
	if err := st.WaitSynced(wctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
	return st
}

func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testPrincipal(name string) *configv1.Principal {
	return &configv1.Principal{Name: name, Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: configv1.Role_ROLE_MEMBER}
}

func principalNames(st *store.Store) string {
	var out []string
	for _, p := range st.Principals() {
		out = append(out, p.GetName())
	}
	return strings.Join(out, ",")
}

// The cache follows writes made through another client (another replica),
// and after a partition during which etcd compacted past the cache's watch
// position it relists instead of missing changes.
func TestCacheFollowsAndRelistsAfterCompaction(t *testing.T) {
	srv := etcdtest.Start(t)
	raw := srv.Client(t)
	px := newEtcdProxy(t, srv.Endpoint)
	pcli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + px.ln.Addr().String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pcli.Close() })

	logs := &logBuffer{}
	st := startFollowing(t, pcli, slog.New(slog.NewJSONHandler(logs, nil)))
	var mu sync.Mutex
	applied := map[string]int{}
	st.OnChange(func(kind, name string, _ any) {
		mu.Lock()
		defer mu.Unlock()
		applied[name]++
	})
	// writer is another replica: its own client, no cache needed for writes.
	writer := store.New(raw, nil, slog.New(slog.DiscardHandler))
	ctx := t.Context()

	// Puts and deletes by another writer reach the cache through the watch.
	ra, err := writer.PutPrincipal(ctx, testPrincipal("a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := writer.PutPrincipal(ctx, testPrincipal("b"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rb); err != nil {
		t.Fatal(err)
	}
	if got := principalNames(st); got != "a,b" {
		t.Fatalf("after puts: %q", got)
	}
	if p, _ := st.Principal("a"); p.GetRevision() != ra {
		t.Fatalf("revision of a = %d, want %d", p.GetRevision(), ra)
	}
	if _, err := writer.PutPrincipal(ctx, testPrincipal("a"), 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("create of existing: %v, want ErrConflict", err)
	}
	if _, err := writer.DeletePrincipal(ctx, "a", rb); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("delete at stale revision: %v, want ErrConflict", err)
	}
	rd, err := writer.DeletePrincipal(ctx, "a", ra)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rd); err != nil {
		t.Fatal(err)
	}
	if got := principalNames(st); got != "b" {
		t.Fatalf("after delete: %q", got)
	}
	if _, err := writer.DeletePrincipal(ctx, "a", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete of missing: %v, want ErrNotFound", err)
	}

	// Partition: the cache cannot see these writes, and the compaction
	// removes the history its watch would resume from.
	px.cut()
	if _, err := writer.PutPrincipal(ctx, testPrincipal("c"), 0); err != nil {
		t.Fatal(err)
	}
	rev, err := writer.DeletePrincipal(ctx, "b", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if got := principalNames(st); got != "b" {
		t.Fatalf("cache changed during the partition: %q", got)
	}
	px.restore()

	pollUntil(t, "the cache to reflect the writes made during the partition", func() bool {
		return principalNames(st) == "c" && st.CacheStatus().Revision >= rev
	})
	if !strings.Contains(logs.String(), "cache watch compacted; relisting") {
		t.Fatalf("no relist after compaction; logs: %s", logs.String())
	}
	mu.Lock()
	ac, aa, ab := applied["c"], applied["a"], applied["b"]
	mu.Unlock()
	if ac != 0 {
		t.Fatal("c arrived as a watch event; the compacted history was not relisted")
	}
	if aa != 2 || ab != 1 {
		t.Fatalf("watch events before the partition: a=%d b=%d, want 2 and 1", aa, ab)
	}

	// After the relist the watch follows new writes again.
	rn, err := writer.PutPrincipal(ctx, testPrincipal("d"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rn); err != nil {
		t.Fatal(err)
	}
	if got := principalNames(st); got != "c,d" {
		t.Fatalf("after relist: %q", got)
	}
}

// TestKeyByHashComparesWholeHash: a record found by the id (a prefix of the
// hash) whose stored hash differs is not the presented key.
func TestKeyByHashComparesWholeHash(t *testing.T) {
	st := startFollowing(t, etcdtest.New(t), slog.New(slog.DiscardHandler))
	sum := store.HashKey("mcpg_presented")
	other := sum
	other[31] ^= 0xff // same id, different hash
	for name, stored := range map[string][32]byte{"match": sum, "prefix only": other} {
		t.Run(name, func(t *testing.T) {
			rev, err := st.PutKey(t.Context(), &storev1.KeyRecord{Key: &configv1.ApiKey{Id: store.KeyID(sum), Principal: "p"}, Sha256: stored[:]}, -1)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.WaitRevision(t.Context(), rev); err != nil {
				t.Fatal(err)
			}
			_, ok := st.KeyByHash(sum)
			if want := name == "match"; ok != want {
				t.Fatalf("KeyByHash found=%v, want %v", ok, want)
			}
		})
	}
}

// TestKeyBindsToPrincipalWrittenJustBefore: a key created right after its
// principal (as apply does) binds to that principal's uid even when the
// writing store's cache has not seen the principal: here it follows
// nothing at all. It used to take the uid from the cache and bind to "".
func TestKeyBindsToPrincipalWrittenJustBefore(t *testing.T) {
	cli := etcdtest.New(t)
	st := store.New(cli, nil, slog.New(slog.DiscardHandler)) // no Run: an empty cache
	ctx := t.Context()
	if _, err := st.PutPrincipal(ctx, &configv1.Principal{Name: "p"}, 0); err != nil {
		t.Fatal(err)
	}
	sum := store.HashKey("mcpg_fresh")
	if _, err := st.PutKey(ctx, &storev1.KeyRecord{Key: &configv1.ApiKey{Id: store.KeyID(sum), Principal: "p"}, Sha256: sum[:]}, 0); err != nil {
		t.Fatal(err)
	}
	follower := startFollowing(t, cli, slog.New(slog.DiscardHandler))
	p, ok := follower.Principal("p")
	k, kok := follower.Key(store.KeyID(sum))
	if !ok || !kok || p.GetUid() == "" || k.GetPrincipalUid() != p.GetUid() {
		t.Fatalf("principal uid %q, key bound to %q", p.GetUid(), k.GetPrincipalUid())
	}
}
