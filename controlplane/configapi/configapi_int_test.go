package configapi_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	clientv3 "go.etcd.io/etcd/client/v3"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/controlplane/vaultapi"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// replica is one control plane: a store with its cache over the shared etcd
// and the admin services served over HTTP.
type replica struct {
	st  *store.Store
	url string
}

type env struct {
	t        testing.TB
	etcd     *etcdtest.Server
	cli      *clientv3.Client // raw etcd access for assertions
	keyring  *vault.Keyring
	logs     *syncBuffer
	adminKey string
	*replica
}

func newEnv(t testing.TB) *env {
	t.Helper()
	srv := etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, etcd: srv, cli: srv.Client(t), keyring: kr, logs: &syncBuffer{}}
	e.replica = e.newReplica()
	key, err := configapi.EnsureAdmin(t.Context(), e.st, "")
	if err != nil {
		t.Fatalf("EnsureAdmin: %v", err)
	}
	if key == "" {
		t.Fatal("EnsureAdmin on an empty store returned no key")
	}
	e.adminKey = key
	return e
}

// newReplica starts another control plane over the same etcd.
func (e *env) newReplica() *replica {
	t := e.t
	log := slog.New(slog.NewJSONHandler(e.logs, nil))
	st := store.New(e.etcd.Client(t), e.keyring, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer wcancel()
	if err := st.WaitSynced(wctx); err != nil {
		t.Fatalf("cache sync: %v", err)
	}
	svc := configapi.New(st, log)
	opts := connect.WithInterceptors(configapi.NewAdminAuth(st))
	mux := http.NewServeMux()
	mux.Handle(configv1connect.NewServerServiceHandler(svc, opts))
	mux.Handle(configv1connect.NewPrincipalServiceHandler(svc, opts))
	mux.Handle(configv1connect.NewGroupServiceHandler(svc, opts))
	mux.Handle(configv1connect.NewVirtualServerServiceHandler(svc, opts))
	mux.Handle(configv1connect.NewKeyServiceHandler(svc, opts))
	mux.Handle(configv1connect.NewIdentityProviderServiceHandler(svc, opts))
	mux.Handle(configv1connect.NewPolicyServiceHandler(svc, opts))
	mux.Handle(configv1connect.NewExplainServiceHandler(svc, opts))
	mux.Handle(configv1connect.NewToolPinServiceHandler(svc, opts))
	mux.Handle(configv1connect.NewRateLimitServiceHandler(svc, opts))
	mux.Handle(vaultv1connect.NewConnectionServiceHandler(vaultapi.NewConnections(svc, st, nil), opts))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &replica{st: st, url: hs.URL}
}

// bearer adds an Authorization header to every request.
type bearer struct {
	key  string
	next http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.key != "" {
		r.Header.Set("Authorization", "Bearer "+b.key)
	}
	return b.next.RoundTrip(r)
}

type clients struct {
	servers    configv1connect.ServerServiceClient
	principals configv1connect.PrincipalServiceClient
	groups     configv1connect.GroupServiceClient
	virtual    configv1connect.VirtualServerServiceClient
	keys       configv1connect.KeyServiceClient
	idps       configv1connect.IdentityProviderServiceClient
	conns      vaultv1connect.ConnectionServiceClient
	policies   configv1connect.PolicyServiceClient
	explain    configv1connect.ExplainServiceClient
	toolPins   configv1connect.ToolPinServiceClient
	limits     configv1connect.RateLimitServiceClient
}

func (r *replica) as(key string) clients {
	hc := &http.Client{Transport: bearer{key: key, next: http.DefaultTransport}}
	return clients{
		servers:    configv1connect.NewServerServiceClient(hc, r.url),
		principals: configv1connect.NewPrincipalServiceClient(hc, r.url),
		groups:     configv1connect.NewGroupServiceClient(hc, r.url),
		virtual:    configv1connect.NewVirtualServerServiceClient(hc, r.url),
		keys:       configv1connect.NewKeyServiceClient(hc, r.url),
		idps:       configv1connect.NewIdentityProviderServiceClient(hc, r.url),
		conns:      vaultv1connect.NewConnectionServiceClient(hc, r.url),
		policies:   configv1connect.NewPolicyServiceClient(hc, r.url),
		explain:    configv1connect.NewExplainServiceClient(hc, r.url),
		toolPins:   configv1connect.NewToolPinServiceClient(hc, r.url),
		limits:     configv1connect.NewRateLimitServiceClient(hc, r.url),
	}
}

func (e *env) admin() clients { return e.as(e.adminKey) }

// rawValue reads a key straight from etcd.
func (e *env) rawValue(kind, name string) []byte {
	e.t.Helper()
	resp, err := e.cli.Get(e.t.Context(), store.Prefix+kind+"/"+name)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		e.t.Fatalf("raw %s/%s: %d values", kind, name, len(resp.Kvs))
	}
	return resp.Kvs[0].Value
}

// wantCode fails unless err is a Connect error with code and message.
func wantCode(t *testing.T, err error, code connect.Code, msg string) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want %v %q", err, code, msg)
	}
	if ce.Code() != code || (msg != "" && ce.Message() != msg) {
		t.Fatalf("err = %v %q, want %v %q", ce.Code(), ce.Message(), code, msg)
	}
}

func (e *env) putPrincipal(name string, role configv1.Role) *configv1.Principal {
	e.t.Helper()
	res, err := e.admin().principals.PutPrincipal(e.t.Context(), &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: name, Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: role, Servers: []string{"*"},
	}})
	if err != nil {
		e.t.Fatalf("put principal %s: %v", name, err)
	}
	return res.GetPrincipal()
}

func (e *env) createKey(principal string) (string, *configv1.ApiKey) {
	e.t.Helper()
	res, err := e.admin().keys.CreateKey(e.t.Context(), &configv1.CreateKeyRequest{Principal: principal, Name: "test"})
	if err != nil {
		e.t.Fatalf("create key for %s: %v", principal, err)
	}
	return res.GetKey(), res.GetApiKey()
}

func httpServer(name string) *configv1.McpServer {
	return &configv1.McpServer{Name: name, Url: "https://upstream.example.com/mcp"}
}
