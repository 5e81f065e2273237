// Package stacktest runs the whole gateway on loopback for end-to-end tests
// and benchmarks: an embedded etcd, the store, the control plane, a data
// plane in front of it and test upstreams whose every request header is
// recorded. Everything stops on tb.Cleanup.
package stacktest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/controlplane"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/dataplane/proxyrun"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
	"github.com/mcpgate/mcpgate/internal/oauthdemo"
)

// Route names the stack creates.
const (
	// EchoRoute is internal/demo's echo/countdown server, no upstream auth.
	EchoRoute = "echo"
	// GateRoute is the stack's own upstream (see Upstream) with the tool
	// "secret" disallowed.
	GateRoute = "gate"
	// NotesRoute is the OAuth-protected notes demo (oauth2 +
	// authorization_code against the demo provider).
	NotesRoute = "notes"
)

// Option configures Start.
type Option func(*options)

type options struct {
	log              *slog.Logger
	authorizeTimeout time.Duration
	routes           func(*http.ServeMux)
	dpConfig         func(*dataplane.Config)
	cpConfig         func(*controlplane.Config)
}

// WithControlPlaneConfig lets mod adjust the control plane's configuration
// before it starts (DataPlaneTokens and Keyring are set), e.g. a short
// OAuth.AccessTokenTTL.
func WithControlPlaneConfig(mod func(*controlplane.Config)) Option {
	return func(o *options) { o.cpConfig = mod }
}

// WithDataPlaneConfig lets mod adjust the data plane's configuration
// before it starts (PublicURL, ControlPlaneURLs and the token are set).
func WithDataPlaneConfig(mod func(*dataplane.Config)) Option {
	return func(o *options) { o.dpConfig = mod }
}

// WithLogger logs every component to log (default: discarded, or stderr
// when STACKTEST_LOG is set).
func WithLogger(log *slog.Logger) Option { return func(o *options) { o.log = log } }

// WithAuthorizeTimeout sets the data plane's Authorize timeout.
func WithAuthorizeTimeout(d time.Duration) Option {
	return func(o *options) { o.authorizeTimeout = d }
}

// WithUpstreamRoutes adds handlers to the mux of the stack's own upstream
// (the one serving Upstream at /mcp), e.g. to stand up extra test servers.
func WithUpstreamRoutes(add func(*http.ServeMux)) Option {
	return func(o *options) { o.routes = add }
}

// Stack is a running gateway.
type Stack struct {
	tb  testing.TB
	log *slog.Logger

	Store          *store.Store
	Keyring        *vault.Keyring
	AdminKey       string
	DataPlaneToken string

	// PublicURL is the data plane's URL (its configured public URL).
	PublicURL string
	// ControlURL is the control plane's base URL.
	ControlURL string
	Proxy      *dataplane.Proxy

	// Upstream is the stack's own MCP server behind GateRoute; Echo is
	// internal/demo's behind EchoRoute; Notes is the notes demo behind
	// NotesRoute. Each records the headers of every request it gets.
	Upstream    *Upstream
	UpstreamURL string
	Echo        *Recorder
	EchoURL     string
	Notes       *Recorder
	NotesURL    string
	Provider    *oauthdemo.Provider
	ProviderURL string
	// ProviderClientID and ProviderClientSecret are the gateway's
	// registration at the demo provider.
	ProviderClientID, ProviderClientSecret string

	Servers     configv1connect.ServerServiceClient
	Principals  configv1connect.PrincipalServiceClient
	Groups      configv1connect.GroupServiceClient
	Keys        configv1connect.KeyServiceClient
	Connections vaultv1connect.ConnectionServiceClient
	ToolPins    configv1connect.ToolPinServiceClient
	// Authorize is an AuthorizeService client presenting the data-plane
	// token.
	Authorize authorizev1connect.AuthorizeServiceClient

	cp *controlServer
}

// Start runs a stack and registers its teardown with tb.Cleanup.
func Start(tb testing.TB, opts ...Option) *Stack {
	tb.Helper()
	o := options{log: slog.New(slog.DiscardHandler)}
	if os.Getenv("STACKTEST_LOG") != "" {
		o.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Stack{tb: tb, log: o.log, DataPlaneToken: configapi.NewKey()}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tb.Cleanup(func() { cancel(); wg.Wait() })

	cli := etcdtest.New(tb)
	kr, err := vault.Generate()
	if err != nil {
		tb.Fatalf("vault keyring: %v", err)
	}
	s.Keyring = kr
	s.Store = store.New(cli, kr, o.log)
	wg.Go(func() {
		if err := s.Store.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			o.log.Error("store stopped", slog.Any("err", err))
		}
	})
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	if err := s.Store.WaitSynced(sctx); err != nil {
		tb.Fatalf("store sync: %v", err)
	}
	if s.AdminKey, err = configapi.EnsureAdmin(sctx, s.Store, ""); err != nil || s.AdminKey == "" {
		tb.Fatalf("admin key: %q %v", s.AdminKey, err)
	}

	// Control plane.
	cpCfg := controlplane.Config{DataPlaneTokens: []string{s.DataPlaneToken}, Keyring: kr}
	if o.cpConfig != nil {
		o.cpConfig(&cpCfg)
	}
	cpHandler := controlplane.NewHandler(s.Store, cpCfg, o.log)
	s.cp = &controlServer{h: cpHandler, held: make(chan struct{}, 1024)}
	s.cp.start(tb, "127.0.0.1:0")
	tb.Cleanup(s.cp.stop)
	s.ControlURL = "http://" + s.cp.addr

	// Data plane on its own listener; its public URL is that listener.
	dp := httptest.NewUnstartedServer(nil)
	s.PublicURL = "http://" + dp.Listener.Addr().String()
	dpCfg := dataplane.Config{
		PublicURL:        s.PublicURL,
		ControlPlaneURLs: []string{s.ControlURL},
		DataPlaneToken:   s.DataPlaneToken,
		AuthorizeTimeout: o.authorizeTimeout,
		// As in production (proxyrun); the upstream client is the data
		// plane's default.
		ControlPlaneClient: proxyrun.ControlPlaneClient(),
	}
	if o.dpConfig != nil {
		o.dpConfig(&dpCfg)
	}
	s.Proxy, err = dataplane.New(dpCfg, o.log)
	if err != nil {
		tb.Fatalf("data plane: %v", err)
	}
	dp.Config.Handler = s.Proxy
	dp.Start()
	tb.Cleanup(dp.Close)
	wg.Go(func() { _ = s.Proxy.Run(ctx) })

	// Upstreams, each behind a header recorder.
	s.Upstream = NewUpstream()
	mux := http.NewServeMux()
	mux.Handle("/mcp", s.Upstream.Handler(o.log))
	if o.routes != nil {
		o.routes(mux)
	}
	up := httptest.NewServer(s.Upstream.Recorder.Wrap(mux))
	tb.Cleanup(up.Close)
	s.UpstreamURL = up.URL + "/mcp"

	s.Echo = &Recorder{}
	echo := httptest.NewServer(s.Echo.Wrap(demo.Handler(o.log)))
	tb.Cleanup(echo.Close)
	s.EchoURL = echo.URL + "/mcp"

	s.startNotes()

	// Admin clients.
	hc := &http.Client{}
	admin := connect.WithInterceptors(bearer(s.AdminKey))
	s.Servers = configv1connect.NewServerServiceClient(hc, s.ControlURL, admin)
	s.Principals = configv1connect.NewPrincipalServiceClient(hc, s.ControlURL, admin)
	s.Groups = configv1connect.NewGroupServiceClient(hc, s.ControlURL, admin)
	s.Keys = configv1connect.NewKeyServiceClient(hc, s.ControlURL, admin)
	s.Connections = vaultv1connect.NewConnectionServiceClient(hc, s.ControlURL, admin)
	s.ToolPins = configv1connect.NewToolPinServiceClient(hc, s.ControlURL, admin)
	s.Authorize = authorizev1connect.NewAuthorizeServiceClient(hc, s.ControlURL, connect.WithInterceptors(bearer(s.DataPlaneToken)))

	s.PutServer(&configv1.McpServer{Name: EchoRoute, Url: s.EchoURL, Transport: configv1.Transport_TRANSPORT_HTTP, AuthType: configv1.AuthType_AUTH_TYPE_NONE})
	s.PutServer(&configv1.McpServer{Name: GateRoute, Url: s.UpstreamURL, Transport: configv1.Transport_TRANSPORT_HTTP,
		AuthType: configv1.AuthType_AUTH_TYPE_NONE, DisallowedTools: []string{"secret"}})
	notes, sec := s.Provider.McpServer(NotesRoute, s.NotesURL)
	notes.ClientSecret = sec.GetClientSecret()
	s.PutServer(notes)
	return s
}

// startNotes runs the demo OAuth provider and the notes MCP server, the
// latter behind s.Notes; the provider accepts only the gateway's callback.
func (s *Stack) startNotes() {
	prov := httptest.NewUnstartedServer(nil)
	s.ProviderURL = "http://" + prov.Listener.Addr().String()
	s.ProviderClientID, s.ProviderClientSecret = "mcpgate-test", configapi.NewKey()
	s.Provider = oauthdemo.New(oauthdemo.Config{
		ClientID:     s.ProviderClientID,
		ClientSecret: s.ProviderClientSecret,
		RedirectURIs: []string{s.PublicURL + "/oauth/callback"},
		Scopes:       []string{"notes.read", "notes.write"},
	}, s.log)
	s.Provider.SetIssuer(s.ProviderURL)
	prov.Config.Handler = s.Provider.Handler()
	prov.Start()
	s.tb.Cleanup(prov.Close)

	notes := httptest.NewUnstartedServer(nil)
	s.NotesURL = "http://" + notes.Listener.Addr().String() + "/mcp"
	s.Notes = &Recorder{}
	notes.Config.Handler = s.Notes.Wrap(oauthdemo.NotesServer(s.Provider, s.NotesURL, s.log))
	notes.Start()
	s.tb.Cleanup(notes.Close)
}

// RouteURL is the gateway URL of route.
func (s *Stack) RouteURL(route string) string { return s.PublicURL + "/" + route + "/mcp" }

// PRMURL is the protected resource metadata URL of route.
func (s *Stack) PRMURL(route string) string {
	return s.PublicURL + "/.well-known/oauth-protected-resource/" + route + "/mcp"
}

// PutServer creates or replaces def (secrets included).
func (s *Stack) PutServer(def *configv1.McpServer) *configv1.McpServer {
	s.tb.Helper()
	ctx := context.Background()
	var rev int64
	if got, err := s.Servers.GetServer(ctx, &configv1.GetServerRequest{Name: def.GetName()}); err == nil {
		rev = got.GetServer().GetRevision()
	}
	res, err := s.Servers.PutServer(ctx, &configv1.PutServerRequest{Server: def, ExpectedRevision: rev})
	if err != nil {
		s.tb.Fatalf("put server %s: %v", def.GetName(), err)
	}
	return res.GetServer()
}

// AddUser creates a member principal granted servers and returns a new key
// for it.
func (s *Stack) AddUser(name string, servers ...string) string {
	s.tb.Helper()
	ctx := context.Background()
	_, err := s.Principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: name, Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: configv1.Role_ROLE_MEMBER, Servers: servers,
	}})
	if err != nil {
		s.tb.Fatalf("put principal %s: %v", name, err)
	}
	return s.NewKey(name)
}

// NewKey creates another key for principal.
func (s *Stack) NewKey(principal string) string {
	s.tb.Helper()
	res, err := s.Keys.CreateKey(context.Background(), &configv1.CreateKeyRequest{Principal: principal, Name: principal + "-" + time.Now().Format("150405.000000000")})
	if err != nil {
		s.tb.Fatalf("create key for %s: %v", principal, err)
	}
	return res.GetKey()
}

// RevokeConnection revokes principal's upstream grant on server.
func (s *Stack) RevokeConnection(principal, server string) {
	s.tb.Helper()
	if _, err := s.Connections.RevokeConnection(context.Background(), &vaultv1.RevokeConnectionRequest{Principal: principal, Server: server}); err != nil {
		s.tb.Fatalf("revoke connection %s/%s: %v", principal, server, err)
	}
}

// AuthorizeRequest is a tools/call decision request for route with key, as
// a data plane would send it.
func (s *Stack) AuthorizeRequest(route, key, tool string) *authorizev1.AuthorizeRequest {
	return &authorizev1.AuthorizeRequest{
		Route: route, Credentials: &authorizev1.Credentials{ApiKey: key}, HttpMethod: http.MethodPost,
		JsonrpcMethod: "tools/call", ToolName: tool, ClientAddress: "127.0.0.1", PublicBaseUrl: s.PublicURL,
	}
}

// PauseControlPlane makes the control plane hold every request without
// answering until the returned release function is called (idempotent).
func (s *Stack) PauseControlPlane() (release func()) {
	ch := make(chan struct{})
	s.cp.pause.Store(&ch)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.cp.pause.Store(nil)
			close(ch)
		})
	}
}

// WaitControlPlaneHeld waits until n requests are being held by
// PauseControlPlane (counting from the first pause of the stack).
func (s *Stack) WaitControlPlaneHeld(n int) {
	for range n {
		<-s.cp.held
	}
}

// StopControlPlane closes the control plane's listener and connections.
func (s *Stack) StopControlPlane() { s.cp.stop() }

// StartControlPlane serves the control plane again on its old address.
func (s *Stack) StartControlPlane() { s.cp.start(s.tb, s.cp.addr) }

// AdmissionHeaders lists every header in h that carries a gateway
// admission credential (an API key header, or an Authorization holding
// anything but an upstream token from the demo provider), as "name: value".
func AdmissionHeaders(h http.Header, secrets ...string) []string {
	var out []string
	for k, vs := range h {
		switch http.CanonicalHeaderKey(k) {
		case "X-Mcpgate-Api-Key", "X-Litellm-Api-Key", "X-Mcpgate-Client-Authorization":
			for _, v := range vs {
				out = append(out, k+": "+v)
			}
			continue
		}
		for _, v := range vs {
			for _, sec := range secrets {
				if sec != "" && strings.Contains(strings.ToLower(v), strings.ToLower(sec)) {
					out = append(out, k+": "+v)
				}
			}
		}
	}
	return out
}

func bearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

// controlServer serves the control plane on a fixed address it can stop and
// start again.
type controlServer struct {
	h     http.Handler
	pause atomic.Pointer[chan struct{}]
	held  chan struct{} // one send per request the pause holds
	mu    sync.Mutex
	addr  string
	srv   *http.Server
	done  chan struct{}
}

func (c *controlServer) start(tb testing.TB, addr string) {
	tb.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv != nil {
		tb.Fatal("control plane already running")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatalf("control plane listen %s: %v", addr, err)
	}
	c.addr = ln.Addr().String()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := c.pause.Load(); p != nil {
			select {
			case c.held <- struct{}{}:
			default:
			}
			select {
			case <-*p:
			case <-r.Context().Done():
				return
			}
		}
		c.h.ServeHTTP(w, r)
	})
	// HTTP/1.1 and h2c, as ops/httpserver serves a control plane.
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	c.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, Protocols: &protos}
	c.done = make(chan struct{})
	srv, done := c.srv, c.done
	go func() { defer close(done); _ = srv.Serve(ln) }()
}

func (c *controlServer) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srv == nil {
		return
	}
	_ = c.srv.Close()
	<-c.done
	c.srv = nil
}
