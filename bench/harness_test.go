package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	clientv3 "go.etcd.io/etcd/client/v3"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/controlplane"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/dataplane/proxyrun"
	"github.com/mcpgate/mcpgate/internal/devetcd"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
	"github.com/mcpgate/mcpgate/ops"
	"github.com/mcpgate/mcpgate/ops/audit"
	"github.com/mcpgate/mcpgate/ops/httpserver"
	"github.com/mcpgate/mcpgate/ops/metrics"
	"github.com/mcpgate/mcpgate/ops/tlsconfig"
)

// Harness settings (go test ./bench -run TestBenchHarness -v -args -rounds=5 -calls1=2000 -calls16=20000).
// The defaults are a smoke run that finishes well within a minute.
var (
	hRounds  = flag.Int("rounds", 1, "harness: interleaved rounds (the table shows each metric's median)")
	hCalls1  = flag.Int("calls1", 300, "harness: calls per path and round at c=1 (p50 latency)")
	hCalls16 = flag.Int("calls16", 2000, "harness: calls per path and round at c=16 (throughput)")
	hLogDir  = flag.String("logdir", "", "harness: keep the gateways' logs and audit logs in this directory (default: a temporary one)")
)

const harnessRoute = "echo"

// callBody is one stateless tools/call of the echo tool.
var callBody = []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"ping"}}}`)

// path is one way of reaching the echo upstream.
type path struct {
	name string
	url  string
	key  string // API key, "" for none
	// accepts counts connections the path's upstream accepted.
	accepts *atomic.Int64
}

// sample is one measurement of one path.
type sample struct {
	p50     time.Duration // c=1
	rps     float64       // c=16
	cpu10k  float64       // process CPU seconds per 10k calls (both phases)
	newConn int64         // upstream connections accepted while measuring
}

// TestBenchHarness runs direct, a bare httputil.ReverseProxy, a `mcpgate
// dev`-shaped stack and the split production shape side by side on
// loopback against the Go SDK echo upstream (stateless, JSON responses),
// and prints c=16 throughput, c=1 p50 and CPU per 10k calls as ratios to
// direct and to the bare proxy. It asserts only that every call succeeds.
func TestBenchHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("harness: not in -short")
	}
	logDir := *hLogDir
	if logDir == "" {
		logDir = t.TempDir()
	} else if err := os.MkdirAll(logDir, 0o700); err != nil {
		t.Fatal(err)
	}
	paths := []path{
		startDirect(t),
		startBare(t),
		startDev(t, logDir),
		startSplit(t, logDir, false),
		startSplit(t, logDir, true),
	}
	client := &http.Client{Transport: loadTransport()}
	for _, p := range paths { // warm up: connections, caches, the JIT of nothing
		if _, err := run(client, p, 1, 50); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		if _, err := run(client, p, 16, 320); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
	}
	samples := make([][]sample, len(paths))
	for r := range *hRounds {
		for j := range paths { // each round starts one path later: no path is always first
			i := (r + j) % len(paths)
			p := paths[i]
			s, err := measurePath(client, p)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			samples[i] = append(samples[i], s)
		}
	}
	med := make([]sample, len(paths))
	for i, ss := range samples {
		med[i] = median(ss)
	}
	var buf bytes.Buffer
	printTable(&buf, paths, med)
	t.Logf("rounds=%d calls1=%d calls16=%d CPUs=%d (shared by client, upstreams and gateways)\n%s", *hRounds, *hCalls1, *hCalls16, runtime.NumCPU(), buf.String())
}

func measurePath(client *http.Client, p path) (sample, error) {
	c0 := cpuSeconds()
	a0 := p.accepts.Load()
	lat, err := run(client, p, 1, *hCalls1)
	if err != nil {
		return sample{}, err
	}
	t0 := time.Now()
	if _, err := run(client, p, 16, *hCalls16); err != nil {
		return sample{}, err
	}
	el := time.Since(t0)
	cpu := cpuSeconds() - c0
	slices.Sort(lat)
	return sample{
		p50:     lat[len(lat)/2],
		rps:     float64(*hCalls16) / el.Seconds(),
		cpu10k:  cpu / float64(*hCalls1+*hCalls16) * 1e4,
		newConn: p.accepts.Load() - a0,
	}, nil
}

func median(ss []sample) sample {
	pick := func(f func(sample) float64) float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return sample{
		p50:     time.Duration(pick(func(s sample) float64 { return float64(s.p50) })),
		rps:     pick(func(s sample) float64 { return s.rps }),
		cpu10k:  pick(func(s sample) float64 { return s.cpu10k }),
		newConn: int64(pick(func(s sample) float64 { return float64(s.newConn) })),
	}
}

func printTable(w io.Writer, paths []path, m []sample) {
	const direct, bare = 0, 1
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tc=16 req/s\t×direct\t×bare\tp50 c=1 µs\tadded p50 µs\tadded ×bare\tCPU-s/10k (process)\tadded CPU-s/10k\tadded CPU ×bare\tupstream conns opened\t")
	addedP50 := func(i int) float64 { return us(m[i].p50) - us(m[direct].p50) }
	addedCPU := func(i int) float64 { return m[i].cpu10k - m[direct].cpu10k }
	for i, p := range paths {
		ratio := func(a, b float64) string {
			if i == direct || b <= 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", a/b)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.2f\t%.0f\t%+.0f\t%s\t%.2f\t%+.2f\t%s\t%d\t\n",
			p.name, m[i].rps, m[i].rps/m[direct].rps, m[i].rps/m[bare].rps,
			us(m[i].p50), addedP50(i), ratio(addedP50(i), addedP50(bare)),
			m[i].cpu10k, addedCPU(i), ratio(addedCPU(i), addedCPU(bare)), m[i].newConn)
	}
	_ = tw.Flush()
}

// cpuSeconds is this process's user+system CPU time: every variant runs in
// it, so a variant's cost is the delta over its measurement, and what a
// gateway adds is its delta minus direct's (the client and the upstream
// cost the same in every path).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func loadTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 64
	return tr
}

// run makes n calls over c workers and returns their latencies.
func run(client *http.Client, p path, c, n int) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				t0 := time.Now()
				if err := call(client, p); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return nil, *e
	}
	return lat, nil
}

func call(client *http.Client, p path) error {
	req, err := http.NewRequest(http.MethodPost, p.url, bytes.NewReader(callBody))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	if p.key != "" {
		req.Header.Set("X-MCPGate-API-Key", p.key)
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"ping"`)) {
		return fmt.Errorf("tools/call: %d %.200s", res.StatusCode, b)
	}
	return nil
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startEcho serves the Go SDK echo tool, stateless with JSON responses, on
// its own loopback listener.
func startEcho(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	srv := mcp.NewServer(&mcp.Implementation{Name: "echo", Version: "1"}, nil)
	type in struct {
		Text string `json:"text"`
	}
	mcp.AddTool(srv, &mcp.Tool{Name: "echo", Description: "echoes text"}, func(_ context.Context, _ *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: a.Text}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(countingListener{ln, &n}) }()
	t.Cleanup(func() { _ = hs.Close() })
	return "http://" + ln.Addr().String() + "/mcp", &n
}

func startDirect(t testing.TB) path {
	u, n := startEcho(t)
	return path{name: "direct", url: u, accepts: n}
}

func startBare(t testing.TB) path {
	up, n := startEcho(t)
	target, err := url.Parse(up)
	if err != nil {
		t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.URL.Path = target.Path
			r.Out.Host = target.Host
		},
		Transport: loadTransport(),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return path{name: "bare ReverseProxy", url: "http://" + ln.Addr().String() + "/mcp", accepts: n}
}

// fileLogger logs at Info to a file, as the binaries log to stderr.
func fileLogger(t testing.TB, dir, name string) *slog.Logger {
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return slog.New(slog.NewTextHandler(f, nil))
}

// runStore runs st's cache until the test ends and waits for its sync.
func runStore(t testing.TB, st *store.Store, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := st.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("store stopped", slog.Any("err", err))
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	if err := st.WaitSynced(sctx); err != nil {
		t.Fatalf("store sync: %v", err)
	}
}

// serve runs srv until the test ends.
func serve(t testing.TB, srv *httpserver.Server) {
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
}

// provision creates the echo route, a member granted it and a key.
func provision(t testing.TB, controlURL, adminKey, upstream string) string {
	t.Helper()
	ctx := context.Background()
	hc := &http.Client{}
	auth := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+adminKey)
			return next(ctx, req)
		}
	}))
	servers := configv1connect.NewServerServiceClient(hc, controlURL, auth)
	principals := configv1connect.NewPrincipalServiceClient(hc, controlURL, auth)
	keys := configv1connect.NewKeyServiceClient(hc, controlURL, auth)
	if _, err := servers.PutServer(ctx, &configv1.PutServerRequest{Server: &configv1.McpServer{
		Name: harnessRoute, Url: upstream, Transport: configv1.Transport_TRANSPORT_HTTP, AuthType: configv1.AuthType_AUTH_TYPE_NONE,
	}}); err != nil {
		t.Fatalf("put server: %v", err)
	}
	if _, err := principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: "bench", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: configv1.Role_ROLE_MEMBER, Servers: []string{harnessRoute},
	}}); err != nil {
		t.Fatalf("put principal: %v", err)
	}
	res, err := keys.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: "bench", Name: "bench"})
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	return res.GetKey()
}

// controlPlane starts the store over cli and a control plane on its own
// loopback listener; it returns the control URL, the data-plane token and
// a key for the echo route at upstream.
func controlPlane(t testing.TB, cli *clientv3.Client, log *slog.Logger, upstream string, opsOn bool, auditPath string) (string, string) {
	u, _, tk := controlPlaneTLS(t, cli, log, upstream, opsOn, auditPath, nil)
	return u, tk
}

// controlPlaneTLS is controlPlane with, when pki is set, a second listener
// for the same control plane over TLS (client certificates verified when
// given, as `mcpgate control --tls-cert --client-ca`).
func controlPlaneTLS(t testing.TB, cli *clientv3.Client, log *slog.Logger, upstream string, opsOn bool, auditPath string, pki *tlsconfig.Files) (string, string, string) {
	t.Helper()
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(cli, kr, log)
	runStore(t, st, log)
	adminKey, err := configapi.EnsureAdmin(context.Background(), st, "")
	if err != nil {
		t.Fatal(err)
	}
	token := configapi.NewKey()
	cfg := controlplane.Config{DataPlaneTokens: []string{token}, Keyring: kr}
	if opsOn { // as `mcpgate control`: metrics interceptor, admin audit
		m := metrics.NewControlPlane(nil)
		al, err := audit.Open(auditPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = al.Close() })
		cfg.HandlerOptions = []connect.HandlerOption{connect.WithInterceptors(m.Interceptor())}
		cfg.AdminHandlerOptions = []connect.HandlerOption{connect.WithInterceptors(audit.AdminInterceptor(al, nil))}
	}
	h := controlplane.NewHandler(st, cfg, log)
	srv, err := httpserver.Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv)
	controlURL := srv.URL()
	var tlsURL string
	if pki != nil {
		tc, err := tlsconfig.ServerClientCertOptional(pki.ServerCert, pki.ServerKey, pki.CA)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := httpserver.ListenTLS("127.0.0.1:0", h, tc)
		if err != nil {
			t.Fatal(err)
		}
		serve(t, ts)
		tlsURL = "https://" + ts.Addr()
	}
	return controlURL, tlsURL, token + "\x00" + provision(t, controlURL, adminKey, upstream)
}

// startDev is `mcpgate dev`'s shape in one process: etcd embedded with an
// in-memory client, the control plane and the data plane (proxyrun.Handler)
// on their own listeners, logging at Info.
func startDev(t testing.TB, logDir string) path {
	up, n := startEcho(t)
	log := fileLogger(t, logDir, "dev")
	cli, stop, err := devetcd.Start(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	controlURL, tk := controlPlane(t, cli, log, up, false, "")
	token, key, _ := strings.Cut(tk, "\x00")
	pub, err := httpserver.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := proxyrun.Handler(proxyrun.Config{PublicURL: pub.URL(), ControlPlaneURLs: []string{controlURL}, DataPlaneToken: token, Limits: cacheLimits}, log)
	if err != nil {
		t.Fatal(err)
	}
	pub.SetHandler(proxy)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = proxyrun.Serve(ctx, pub, proxy) }()
	t.Cleanup(func() { cancel(); <-done })
	return path{name: "mcpgate dev", url: pub.URL() + "/" + harnessRoute + "/mcp", key: key, accepts: n}
}

// cacheLimits turn the data plane's decision cache on with the defaults of
// `mcpgate proxy` and `mcpgate dev` (a zero proxyrun.Config has it off).
var cacheLimits = proxyrun.Limits{DecisionCacheSize: dataplane.DefaultDecisionCacheSize, DecisionCacheMaxAge: dataplane.DefaultDecisionCacheMaxAge}

// startSplit is the production shape: etcd serving over a socket, a control
// plane with metrics and audit, and a data plane run by proxyrun.Run (as
// `mcpgate proxy`: metrics, audit log to a file), each on its own listener;
// noCache turns the data plane's decision cache off (every request one
// Authorize hop), as a baseline for it.
func startSplit(t testing.TB, logDir string, noCache bool) path {
	up, n := startEcho(t)
	cli := etcdtest.New(t)
	controlURL, tk := controlPlane(t, cli, fileLogger(t, logDir, "control"), up, true, filepath.Join(logDir, "control-audit.log"))
	token, key, _ := strings.Cut(tk, "\x00")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // proxyrun.Run binds it again
	cfg := proxyrun.Config{
		Listen: addr, PublicURL: "http://" + addr, ControlPlaneURLs: []string{controlURL}, DataPlaneToken: token,
		Ops:    proxyrun.Ops{Flags: ops.Flags{AuditLog: filepath.Join(logDir, "proxy-audit.log")}},
		Limits: cacheLimits,
	}
	name := "mcpgate split"
	if noCache {
		cfg.Limits = proxyrun.Limits{}
		name = "mcpgate split, no cache"
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := proxyrun.Run(ctx, cfg, fileLogger(t, logDir, "proxy")); err != nil {
			t.Errorf("proxy: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	p := path{name: name, url: "http://" + addr + "/" + harnessRoute + "/mcp", key: key, accepts: n}
	client := &http.Client{Transport: loadTransport()}
	for i := 0; ; i++ { // wait for the listener
		if err := call(client, p); err == nil {
			break
		} else if i > 200 {
			t.Fatalf("split proxy not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// BenchmarkAuthorizeHop measures the data plane's Authorize call over
// loopback to a control plane on its production listener, with HTTP/1.1
// (a pool of connections) and HTTP/2 (h2c, one connection), one call at a
// time and 16 in flight, alternating batches of both protocols in every
// iteration; it reports wall and process CPU (both planes) per call and
// the h2/http1 ratios.
func BenchmarkAuthorizeHop(b *testing.B) {
	up, _ := startEcho(b)
	log := slog.New(slog.DiscardHandler)
	pki, err := tlsconfig.WritePKI(b.TempDir(), []string{"127.0.0.1"}, "dataplane")
	if err != nil {
		b.Fatal(err)
	}
	plainURL, tlsURL, tk := controlPlaneTLS(b, etcdtest.New(b), log, up, true, filepath.Join(b.TempDir(), "audit.log"), pki)
	token, key, _ := strings.Cut(tk, "\x00")
	req := &authorizev1.AuthorizeRequest{
		Route: harnessRoute, Credentials: &authorizev1.Credentials{ApiKey: key}, HttpMethod: http.MethodPost,
		JsonrpcMethod: "tools/call", ToolName: "echo", ClientAddress: "127.0.0.1", PublicBaseUrl: "http://127.0.0.1:1",
	}
	auth := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, r connect.AnyRequest) (connect.AnyResponse, error) {
			r.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, r)
		}
	}))
	protos := []string{proxyrun.ProtocolHTTP1, proxyrun.ProtocolHTTP2}
	clients := map[string]authorizev1connect.AuthorizeServiceClient{}
	for _, tlsOn := range []bool{false, true} {
		for _, proto := range protos {
			hc, err := proxyrun.NewControlPlaneClient(proto)
			if err != nil {
				b.Fatal(err)
			}
			u := plainURL
			if tlsOn { // as proxyrun with --control-plane-ca/-cert/-key (mTLS)
				tc, err := tlsconfig.Client(pki.CA, pki.ClientCerts[0], pki.ClientKeys[0])
				if err != nil {
					b.Fatal(err)
				}
				hc.Transport.(*http.Transport).TLSClientConfig = tc
				u = tlsURL
			}
			// As the data plane builds its client (dataplane/controlplane.go).
			cl := authorizev1connect.NewAuthorizeServiceClient(hc, u, auth, connect.WithAcceptCompression("gzip", nil, nil))
			res, err := cl.Authorize(context.Background(), req)
			if err != nil || res.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
				b.Fatalf("Authorize: %v %v", res, err)
			}
			clients[fmt.Sprint(tlsOn, proto)] = cl
		}
	}
	// batch makes n calls over c goroutines; it returns wall and CPU seconds.
	batch := func(cl authorizev1connect.AuthorizeServiceClient, c, n int) (float64, float64) {
		c0, t0 := cpuSeconds(), time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range c {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if _, err := cl.Authorize(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return time.Since(t0).Seconds(), cpuSeconds() - c0
	}
	const perBatch = 400
	for _, tlsOn := range []bool{false, true} {
		for _, c := range []int{1, 16} {
			name := fmt.Sprintf("plain/c=%d", c)
			if tlsOn {
				name = fmt.Sprintf("mtls/c=%d", c)
			}
			b.Run(name, func(b *testing.B) {
				var wall, cpu [2]float64
				var calls int
				for b.Loop() { // alternate, so both protocols see the same machine load
					for i, proto := range protos {
						w, u := batch(clients[fmt.Sprint(tlsOn, proto)], c, perBatch)
						wall[i] += w
						cpu[i] += u
					}
					calls += perBatch
				}
				per := func(s float64) float64 { return s / float64(calls) * 1e6 }
				b.ReportMetric(per(wall[0]), "http1-wall-µs/call")
				b.ReportMetric(per(wall[1]), "h2-wall-µs/call")
				b.ReportMetric(per(cpu[0]), "http1-cpu-µs/call")
				b.ReportMetric(per(cpu[1]), "h2-cpu-µs/call")
				b.ReportMetric(wall[1]/wall[0], "wall-h2/http1")
				b.ReportMetric(cpu[1]/cpu[0], "cpu-h2/http1")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}
