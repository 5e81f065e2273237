package grants_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// exchangeEnv is env's replicas with a token_exchange server "docs" whose
// token endpoint mints "minted-<n>" for the subject token "idp-alice".
func exchangeEnv(t *testing.T, replicas int) (*env, []*grants.TokenExchange, *atomic.Int64, *store.Server) {
	return exchangeEnvTB(t, replicas)
}

func exchangeEnvTB(t testing.TB, replicas int) (*env, []*grants.TokenExchange, *atomic.Int64, *store.Server) {
	t.Helper()
	e := newEnv(t, replicas, grants.Config{})
	var n atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if r.PostForm.Get("subject_token") != "idp-alice" || r.PostForm.Get("audience") != "docs-api" {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_grant"})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "minted-" + strconv.FormatInt(n.Add(1), 10), "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(ts.Close)
	_, err := e.stores[0].PutServer(t.Context(), &configv1.McpServer{Name: "docs", Url: "http://docs.invalid/mcp", AuthType: configv1.AuthType_AUTH_TYPE_OAUTH2,
		Oauth2Flow: configv1.OAuth2Flow_O_AUTH2_FLOW_TOKEN_EXCHANGE, ClientId: "gw", TokenUrl: ts.URL, TokenExchangeAudience: "docs-api"},
		&storev1.ServerSecrets{ClientSecret: "gw-secret"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := e.stores[0].PutPrincipal(t.Context(), &configv1.Principal{Name: "alice", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.sync(t, rev)
	p, _ := e.stores[0].Principal("alice")
	rev, err = e.stores[0].SaveIdPToken(t.Context(), "alice", p.GetUid(), "corp", &storev1.IdPToken{SubjectToken: "idp-alice", Expiry: timestamppb.New(time.Now().Add(time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	e.sync(t, rev)
	var xs []*grants.TokenExchange
	for _, st := range e.stores {
		xs = append(xs, grants.NewTokenExchange(st, grants.Config{}, slog.New(slog.DiscardHandler)))
	}
	srv, _ := e.stores[0].Server("docs")
	return e, xs, &n, srv
}

// TestTokenExchange_ExactlyOnceAcrossReplicas: 30 concurrent requests on
// three replicas make one exchange and all get its token; the token is
// sealed in etcd (no token bytes in any record) and reused afterwards.
func TestTokenExchange_ExactlyOnceAcrossReplicas(t *testing.T) {
	e, xs, n, srv := exchangeEnv(t, 3)
	const calls = 30
	toks := make([]string, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range calls {
		wg.Go(func() {
			<-start
			toks[i], errs[i] = xs[i%len(xs)].Token(t.Context(), "alice", srv)
		})
	}
	close(start)
	wg.Wait()
	for i := range calls {
		if errs[i] != nil || toks[i] != "minted-1" {
			t.Fatalf("call %d: %q %v", i, toks[i], errs[i])
		}
	}
	if got := n.Load(); got != 1 {
		t.Fatalf("%d exchanges, want 1", got)
	}
	resp, err := e.cli.Get(t.Context(), "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		for _, s := range []string{"minted-1", "idp-alice", "gw-secret"} {
			if bytes.Contains(kv.Value, []byte(s)) {
				t.Errorf("%s in raw etcd record %s", s, kv.Key)
			}
		}
	}
}

// TestTokenExchange_Outcomes: no IdP token → ErrNoGrant; a refused subject
// token → ErrGrantUnusable; an unreachable endpoint → ErrUpstreamUnavailable.
func TestTokenExchange_Outcomes(t *testing.T) {
	e, xs, _, srv := exchangeEnv(t, 1)
	if _, err := xs[0].Token(t.Context(), "nobody", srv); !errors.Is(err, grants.ErrNoGrant) {
		t.Errorf("unknown principal: %v", err)
	}
	rev, err := e.stores[0].PutPrincipal(t.Context(), &configv1.Principal{Name: "bob", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.sync(t, rev)
	if _, err := xs[0].Token(t.Context(), "bob", srv); !errors.Is(err, grants.ErrNoGrant) {
		t.Errorf("no IdP token: %v", err)
	}
	bob, _ := e.stores[0].Principal("bob")
	if _, err := e.stores[0].SaveIdPToken(t.Context(), "bob", bob.GetUid(), "corp", &storev1.IdPToken{SubjectToken: "idp-bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := xs[0].Token(t.Context(), "bob", srv); !errors.Is(err, grants.ErrGrantUnusable) {
		t.Errorf("refused subject token: %v", err)
	}
	down := *srv
	down.Def = &configv1.McpServer{Name: "docs", Url: srv.Def.GetUrl(), TokenUrl: "http://127.0.0.1:1/token", Revision: srv.Def.GetRevision() + 1}
	if _, err := xs[0].Token(t.Context(), "bob", &down); !errors.Is(err, grants.ErrUpstreamUnavailable) {
		t.Errorf("unreachable endpoint: %v", err)
	}
}

// BenchmarkTokenExchange_Cached is the per-request cost of a token_exchange
// route once the person's upstream token is cached (memory hit).
func BenchmarkTokenExchange_Cached(b *testing.B) {
	_, xs, n, srv := exchangeEnvTB(b, 1)
	if _, err := xs[0].Token(b.Context(), "alice", srv); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := xs[0].Token(b.Context(), "alice", srv); err != nil {
			b.Fatal(err)
		}
	}
	if n.Load() != 1 {
		b.Fatalf("%d exchanges", n.Load())
	}
}
