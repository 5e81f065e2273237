// Package etcdtest starts an in-process etcd server for tests.
package etcdtest

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

var seq atomic.Uint64

// unixURL uses unix sockets, as etcd's own tests do, to avoid port races.
func unixURL(tb testing.TB) url.URL {
	u, err := url.Parse(fmt.Sprintf("unix://localhost:%d%06d", os.Getpid(), seq.Add(1)))
	if err != nil {
		tb.Fatal(err)
	}
	return *u
}

// Server is a running single-member etcd.
type Server struct {
	Etcd     *embed.Etcd
	Endpoint string
}

// Start starts a single-member etcd in tb.TempDir, closed by tb.Cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = filepath.Join(tb.TempDir(), "etcd")
	cfg.Logger, cfg.LogLevel, cfg.LogOutputs = "zap", "error", []string{"stderr"}
	cfg.UnsafeNoFsync = true
	curl, purl := unixURL(tb), unixURL(tb)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{curl}, []url.URL{curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{purl}, []url.URL{purl}
	cfg.InitialCluster = cfg.Name + "=" + purl.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		tb.Fatalf("start etcd: %v", err)
	}
	tb.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		e.Server.Stop()
		tb.Fatal("etcd did not become ready in 20s")
	}
	return &Server{Etcd: e, Endpoint: curl.String()}
}

// Client returns a new client to s, closed by tb.Cleanup.
func (s *Server) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { _ = cli.Close() })
	return cli
}

// New starts an etcd and returns a client to it.
func New(tb testing.TB) *clientv3.Client {
	tb.Helper()
	return Start(tb).Client(tb)
}
