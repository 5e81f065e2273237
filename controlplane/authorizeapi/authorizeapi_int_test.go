package authorizeapi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorizeapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

const (
	dataPlaneToken = "dp-secret-token"
	apiKey         = "mcpg_test_key_0000000000000"
	base           = "https://gw.example.com"
)

// newStore returns a running store over cli.
func newStore(t testing.TB, srv *etcdtest.Server, kr *vault.Keyring) *store.Store {
	t.Helper()
	st := store.New(srv.Client(t), kr, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := st.WaitSynced(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st
}

// seed writes an authorization_code server, a principal, its key and an
// active grant, and waits until the cache shows them.
func seed(t testing.TB, st *store.Store) {
	t.Helper()
	ctx := t.Context()
	_, err := st.PutServer(ctx, &configv1.McpServer{
		Name: "Gmail", Url: "https://upstream.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_OAUTH2,
		Oauth2Flow: configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE, Scopes: []string{"mail.read"},
		Description: "mail",
	}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := st.PutPrincipal(ctx, &configv1.Principal{Name: "alice", Servers: []string{"*"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The key and grant written below are bound to the principal's uid as
	// the cache knows it: let it know alice first.
	if err := st.WaitRevision(ctx, prev); err != nil {
		t.Fatal(err)
	}
	sum := store.HashKey(apiKey)
	if _, err := st.PutKey(ctx, &storev1.KeyRecord{
		Key: &configv1.ApiKey{Id: store.KeyID(sum), Principal: "alice", DisplayPrefix: apiKey[:8]}, Sha256: sum[:],
	}, 0); err != nil {
		t.Fatal(err)
	}
	rev, err := st.PutGrant(ctx, &vaultv1.Connection{Principal: "alice", Server: "Gmail", State: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE},
		&storev1.UpstreamToken{AccessToken: "upstream-token", Expiry: timestamppb.New(time.Now().Add(time.Hour))}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
}

type bearer string

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}

func serve(t testing.TB, st *store.Store) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(authorizeapi.NewHandler(authorizeapi.New(st, slog.New(slog.DiscardHandler)), []string{"", "other-token", dataPlaneToken}))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func client(ts *httptest.Server, token string) authorizev1connect.AuthorizeServiceClient {
	hc := &http.Client{Transport: bearer(token)}
	if token == "" {
		hc = http.DefaultClient
	}
	return authorizev1connect.NewAuthorizeServiceClient(hc, ts.URL)
}

func authorizeReq() *authorizev1.AuthorizeRequest {
	return &authorizev1.AuthorizeRequest{Route: "Gmail", Credentials: &authorizev1.Credentials{ApiKey: apiKey},
		HttpMethod: "POST", JsonrpcMethod: "tools/list", PublicBaseUrl: base}
}

func TestService(t *testing.T) {
	srv := etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, srv, kr)
	seed(t, st)
	ts := serve(t, st)
	ctx := t.Context()

	t.Run("unauthenticated", func(t *testing.T) {
		for _, tok := range []string{"", "wrong", dataPlaneToken + "x", "dp-secret-toke"} {
			c := client(ts, tok)
			calls := map[string]func() error{
				"Authorize": func() error { _, err := c.Authorize(ctx, authorizeReq()); return err },
				"DescribeRoute": func() error {
					_, err := c.DescribeRoute(ctx, &authorizev1.DescribeRouteRequest{Route: "Gmail"})
					return err
				},
				"GetSessionKeys": func() error {
					_, err := c.GetSessionKeys(ctx, &authorizev1.GetSessionKeysRequest{})
					return err
				},
				"ReportUpstreamUnauthorized": func() error {
					_, err := c.ReportUpstreamUnauthorized(ctx, &authorizev1.ReportUpstreamUnauthorizedRequest{Route: "Gmail", Principal: "alice"})
					return err
				},
			}
			for name, call := range calls {
				if err := call(); connect.CodeOf(err) != connect.CodeUnauthenticated {
					t.Errorf("%s with token %q: %v, want unauthenticated", name, tok, err)
				}
			}
		}
		// Nothing was written by the refused calls.
		if len(st.SessionKeys()) != 0 {
			t.Error("refused GetSessionKeys created a key")
		}
		if g, _ := st.Grant("alice", "Gmail"); g.Conn.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE {
			t.Error("refused report changed the grant")
		}
	})

	c := client(ts, dataPlaneToken)
	t.Run("describe", func(t *testing.T) {
		r, err := c.DescribeRoute(ctx, &authorizev1.DescribeRouteRequest{Route: "Gmail"})
		if err != nil || !r.GetFound() || r.GetDescription() != "mail" || len(r.GetScopes()) != 1 || r.GetScopes()[0] != "mail.read" {
			t.Errorf("DescribeRoute(Gmail) = %v, %v", r, err)
		}
		r, err = c.DescribeRoute(ctx, &authorizev1.DescribeRouteRequest{Route: "nope"})
		if err != nil || r.GetFound() {
			t.Errorf("DescribeRoute(nope) = %v, %v", r, err)
		}
	})

	t.Run("invalid-request", func(t *testing.T) {
		req := authorizeReq()
		req.PublicBaseUrl = "https://gw.example.com/path"
		_, err := c.Authorize(ctx, req)
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("bad public url: %v, want invalid_argument", err)
		}
	})

	t.Run("session-keys", func(t *testing.T) {
		first, err := c.GetSessionKeys(ctx, &authorizev1.GetSessionKeysRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(first.GetKeys()) != 1 || len(first.GetKeys()[0].GetKey()) != 32 {
			t.Fatalf("key ring %v", first)
		}
		for range 3 {
			again, err := c.GetSessionKeys(ctx, &authorizev1.GetSessionKeysRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(again.GetKeys()) != 1 || again.GetKeys()[0].GetId() != first.GetKeys()[0].GetId() ||
				!bytes.Equal(again.GetKeys()[0].GetKey(), first.GetKeys()[0].GetKey()) {
				t.Fatalf("key ring changed: %v then %v", first, again)
			}
		}
	})

	t.Run("report-unauthorized", func(t *testing.T) {
		r, err := c.Authorize(ctx, authorizeReq())
		if err != nil {
			t.Fatal(err)
		}
		if r.GetDecision() != authorizev1.Decision_DECISION_ALLOW || !r.GetAllow().GetVaultGrant() ||
			r.GetAllow().GetUpstreamHeaders()[0].GetValue() != "Bearer upstream-token" || r.GetPrincipal() != "alice" {
			t.Fatalf("before report: %v", r)
		}
		for range 2 { // idempotent
			if _, err := c.ReportUpstreamUnauthorized(ctx, &authorizev1.ReportUpstreamUnauthorizedRequest{Route: "Gmail", Principal: "alice"}); err != nil {
				t.Fatal(err)
			}
		}
		r, err = c.Authorize(ctx, authorizeReq())
		if err != nil {
			t.Fatal(err)
		}
		if r.GetDecision() != authorizev1.Decision_DECISION_CHALLENGE || r.GetReason() != "upstream grant unusable" ||
			r.GetChallenge().GetError() != "" {
			t.Errorf("after report: %v", r)
		}
		if g, _ := st.Grant("alice", "Gmail"); g.Conn.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH ||
			g.Token.GetAccessToken() != "upstream-token" {
			t.Errorf("stored grant %v", g.Conn)
		}
		// Reports for grants that do not exist are no-ops; empty names are refused.
		if _, err := c.ReportUpstreamUnauthorized(ctx, &authorizev1.ReportUpstreamUnauthorizedRequest{Route: "Other", Principal: "alice"}); err != nil {
			t.Error(err)
		}
		if _, err := c.ReportUpstreamUnauthorized(ctx, &authorizev1.ReportUpstreamUnauthorizedRequest{Route: "Gmail"}); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("empty principal: %v", err)
		}
	})

	t.Run("could-not-decide", func(t *testing.T) {
		rev, err := st.PutServer(ctx, &configv1.McpServer{
			Name: "cc", Url: "https://upstream.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_OAUTH2,
			Oauth2Flow: configv1.OAuth2Flow_O_AUTH2_FLOW_CLIENT_CREDENTIALS, ClientId: "c", TokenUrl: ts.URL + "/no-token-endpoint",
		}, &storev1.ServerSecrets{ClientSecret: "s"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.WaitRevision(ctx, rev); err != nil {
			t.Fatal(err)
		}
		req := authorizeReq()
		req.Route = "cc"
		_, err = c.Authorize(ctx, req)
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeUnavailable || ce.Message() != "upstream token endpoint unavailable" {
			t.Errorf("token endpoint down: %v, want unavailable", err)
		}
	})
}

// TestSessionKeysReplicas: replicas racing to create the first key all
// return the same ring.
func TestSessionKeysReplicas(t *testing.T) {
	srv := etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	const replicas = 4
	var clients []authorizev1connect.AuthorizeServiceClient
	for range replicas {
		clients = append(clients, client(serve(t, newStore(t, srv, kr)), dataPlaneToken))
	}
	var wg sync.WaitGroup
	rings := make([]*authorizev1.GetSessionKeysResponse, replicas)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.GetSessionKeys(t.Context(), &authorizev1.GetSessionKeysRequest{})
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
			rings[i] = r
		}()
	}
	wg.Wait()
	for i, r := range rings {
		if len(r.GetKeys()) != 1 || !bytes.Equal(r.GetKeys()[0].GetKey(), rings[0].GetKeys()[0].GetKey()) {
			t.Errorf("replica %d ring %v differs from %v", i, r, rings[0])
		}
	}
}

// TestPeerCertificate: a request over mTLS with a verified chain needs no
// token; the same request without TLS is refused.
func TestPeerCertificate(t *testing.T) {
	srv := etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, srv, kr)
	seed(t, st)
	_, h := authorizeapi.NewHandler(authorizeapi.New(st, slog.New(slog.DiscardHandler)), nil)
	for _, c := range []struct {
		name  string
		tls   *tls.ConnectionState
		token string
		want  int
	}{
		{"verified-chain", &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}, "", http.StatusOK},
		{"tls-without-client-cert", &tls.ConnectionState{}, "", http.StatusUnauthorized},
		{"plain", nil, "", http.StatusUnauthorized},
		{"no-tokens-configured", nil, "anything", http.StatusUnauthorized},
	} {
		r := httptest.NewRequest(http.MethodPost, authorizev1connect.AuthorizeServiceDescribeRouteProcedure, bytes.NewBufferString(`{"route":"Gmail"}`))
		r.Header.Set("Content-Type", "application/json")
		if c.token != "" {
			r.Header.Set("Authorization", "Bearer "+c.token)
		}
		r.TLS = c.tls
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("%s: status %d, want %d (%s)", c.name, w.Code, c.want, w.Body)
		}
	}
}

// BenchmarkAuthorize measures decisions through the Connect handler over
// loopback HTTP (binary protobuf), with a real store cache.
func BenchmarkAuthorize(b *testing.B) {
	srv := etcdtest.Start(b)
	kr, err := vault.Generate()
	if err != nil {
		b.Fatal(err)
	}
	st := newStore(b, srv, kr)
	seed(b, st)
	ts := serve(b, st)
	c := client(ts, dataPlaneToken)
	req := authorizeReq()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r, err := c.Authorize(context.Background(), req)
			if err != nil || r.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
				b.Fatal(r, err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}
