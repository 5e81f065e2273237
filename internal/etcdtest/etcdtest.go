// Package etcdtest starts an in-process etcd server for tests.
package etcdtest

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
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
	// log is etcd's (and its clients') logger: it writes into a buffer that
	// reaches the test log only when the test failed, so a passing run
	// prints none of etcd's shutdown noise.
	log *zap.Logger
}

// logBuffer collects log lines; it may be written after the test ended
// (etcd's goroutines stop late), which t.Log would not allow.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) Sync() error { return nil }

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logger returns a zap logger (warnings and errors) for etcd's servers and
// clients in tests: its lines are written to the test log at the end of tb,
// and only if tb failed. Register it before the etcd's own cleanup, so
// that the dump comes after etcd stopped.
func Logger(tb testing.TB) *zap.Logger {
	tb.Helper()
	buf := &logBuffer{}
	tb.Cleanup(func() {
		if tb.Failed() {
			if s := buf.String(); s != "" {
				tb.Logf("etcd log (shown because the test failed):\n%s", s)
			}
		}
	})
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, buf, zapcore.WarnLevel))
}

// Start starts a single-member etcd in tb.TempDir, closed by tb.Cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	return start(tb, nil)
}

// StartTLS starts a single-member etcd whose clients connect over TLS on
// loopback TCP (https://127.0.0.1:<port>) with the server certificate
// certFile/keyFile and must present a certificate issued by a CA in
// clientCAFile. Clients come from the code under test (Client is for
// plaintext servers only).
func StartTLS(tb testing.TB, certFile, keyFile, clientCAFile string) *Server {
	tb.Helper()
	return start(tb, &transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: clientCAFile, ClientCertAuth: true})
}

func start(tb testing.TB, tlsInfo *transport.TLSInfo) *Server {
	tb.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = filepath.Join(tb.TempDir(), "etcd")
	lg := Logger(tb)
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	cfg.UnsafeNoFsync = true
	curl, purl := unixURL(tb), unixURL(tb)
	if tlsInfo != nil {
		curl = url.URL{Scheme: "https", Host: "127.0.0.1:0"}
		cfg.ClientTLSInfo = *tlsInfo
	}
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
	endpoint := curl.String()
	if tlsInfo != nil {
		endpoint = "https://" + e.Clients[0].Addr().String()
	}
	return &Server{Etcd: e, Endpoint: endpoint, log: lg}
}

// Client returns a new client to s, closed by tb.Cleanup.
func (s *Server) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint}, DialTimeout: 5 * time.Second, Logger: s.log})
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
