package devetcd

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// listeningSockets returns the inodes of this process's TCP sockets in the
// LISTEN state (st 0A in /proc/net/tcp{,6}) that belong to this process.
func listeningSockets(t *testing.T) map[string]bool {
	t.Helper()
	mine := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("read fds: %v", err)
	}
	for _, fd := range fds {
		l, err := os.Readlink("/proc/self/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	out := map[string]bool{}
	for _, p := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) > 9 && fs[3] == "0A" && mine[fs[9]] {
				out[fs[1]] = true
			}
		}
		_ = f.Close()
	}
	return out
}

// TestSec11DevEtcdListensOnNothing: dev's embedded etcd opens no client,
// peer or metrics port (any local user could read every record and plant
// an admin key through one); the in-process client reads and writes, and
// the data survives a restart.
func TestSec11DevEtcdListensOnNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	before := listeningSockets(t)

	e, closeEtcd, err := start(ctx, dir)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if len(e.Clients) != 0 || len(e.Peers) != 0 {
		t.Fatalf("etcd listens: %d client, %d peer listeners", len(e.Clients), len(e.Peers))
	}
	for addr := range listeningSockets(t) {
		if !before[addr] {
			t.Errorf("a new TCP listener at %s (hex address:port) while dev etcd runs", addr)
		}
	}
	closeEtcd()

	cli, stop, err := Start(ctx, dir)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}
	stop()

	cli, stop, err = Start(ctx, dir)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer stop()
	r, err := cli.Get(ctx, "k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" {
		t.Fatalf("after restart: %v %v", r, err)
	}
}
