package grants_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/oauth2"

	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
	"github.com/mcpgate/mcpgate/internal/oauthdemo"
)

const (
	clientID     = "mcpgate"
	clientSecret = "gw-client-secret-XYZ"
	redirectURI  = "http://127.0.0.1:1/oauth/callback"
)

// env is a demo provider and n control-plane replicas (a store and a Grants
// each) over one etcd.
type env struct {
	prov   *oauthdemo.Provider
	conf   *oauth2.Config
	cli    *clientv3.Client
	stores []*store.Store
	grants []*grants.Grants
}

func newEnv(t testing.TB, replicas int, cfg grants.Config) *env {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	prov := oauthdemo.New(oauthdemo.Config{ClientID: clientID, ClientSecret: clientSecret, RedirectURIs: []string{redirectURI}, Scopes: []string{"notes.read", "notes.write"}}, log)
	ps := httptest.NewServer(prov.Handler())
	t.Cleanup(ps.Close)
	prov.SetIssuer(ps.URL)

	k, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ksJSON, err := k.JSON()
	if err != nil {
		t.Fatal(err)
	}
	etcd := etcdtest.Start(t)
	e := &env{prov: prov, cli: etcd.Client(t), conf: &oauth2.Config{
		ClientID: clientID, ClientSecret: clientSecret, RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{AuthURL: ps.URL + "/authorize", TokenURL: ps.URL + "/token"},
	}}
	for range replicas {
		kr, err := vault.Parse(ksJSON) // every replica loads the same keyset
		if err != nil {
			t.Fatal(err)
		}
		st := store.New(etcd.Client(t), kr, log)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = st.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		if err := st.WaitSynced(t.Context()); err != nil {
			t.Fatal(err)
		}
		e.stores = append(e.stores, st)
		e.grants = append(e.grants, grants.New(st, cfg, log))
	}
	def, sec := prov.McpServer("notes", "http://notes.invalid/mcp")
	rev, err := e.stores[0].PutServer(t.Context(), def, sec, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.sync(t, rev)
	return e
}

// sync waits until every replica's cache reflects rev.
func (e *env) sync(t testing.TB, rev int64) {
	t.Helper()
	for _, st := range e.stores {
		if err := st.WaitRevision(t.Context(), rev); err != nil {
			t.Fatal(err)
		}
	}
}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// signIn runs the provider's authorization code flow as user, like the
// gateway's callback would, and returns the token.
func (e *env) signIn(t testing.TB, user string) *oauth2.Token {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := oauth2.GenerateVerifier()
	resp, err := hc.Get(e.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := requestField.FindSubmatch(body)
	if m == nil {
		t.Fatalf("consent page: %d %s", resp.StatusCode, body)
	}
	resp, err = hc.PostForm(e.conf.Endpoint.AuthURL, url.Values{"request": {string(m[1])}, "user": {user}, "action": {"approve"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.conf.Exchange(t.Context(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// connect signs user in and stores the grant as principal, with the access
// token's expiry moved to expiry; it returns the token as issued.
func (e *env) connect(t testing.TB, principal, user string, expiry time.Time) *oauth2.Token {
	t.Helper()
	tok := e.signIn(t, user)
	stored := *tok
	stored.Expiry = expiry
	if err := e.grants[0].Store(t.Context(), principal, "notes", &stored, []string{"notes.read", "notes.write"}, clientID); err != nil {
		t.Fatal(err)
	}
	gr, err := e.stores[0].GetGrant(t.Context(), principal, "notes")
	if err != nil {
		t.Fatal(err)
	}
	if gr.Conn.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE || !gr.Conn.GetHasRefreshToken() || gr.Conn.GetCreateTime() == nil || gr.Token.GetClientId() != clientID {
		t.Fatalf("stored grant %v", gr.Conn)
	}
	e.sync(t, gr.Revision)
	return tok
}

func TestToken_RefreshExactlyOnceAcrossReplicas(t *testing.T) {
	e := newEnv(t, 3, grants.Config{})
	old := e.connect(t, "alice", "alice", time.Now().Add(-time.Minute))

	const calls = 50
	toks := make([]string, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range calls {
		wg.Go(func() {
			<-start
			toks[i], errs[i] = e.grants[i%len(e.grants)].Token(t.Context(), "alice", "notes")
		})
	}
	close(start)
	wg.Wait()
	for i := range calls {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if toks[i] != toks[0] {
			t.Fatalf("call %d got another token than call 0", i)
		}
	}
	if toks[0] == old.AccessToken {
		t.Fatal("the expired token was handed out")
	}
	if st := e.prov.Stats(); st.RefreshGrants != 1 || st.FailedTokenRequests != 0 {
		t.Fatalf("provider saw %+v, want exactly one refresh", st)
	}
	if user, _, ok := e.prov.Verify(toks[0]); !ok || user != "alice" {
		t.Fatalf("refreshed token: %q %v", user, ok)
	}
	gr, err := e.stores[2].GetGrant(t.Context(), "alice", "notes")
	if err != nil {
		t.Fatal(err)
	}
	if gr.Token.GetAccessToken() != toks[0] || gr.Token.GetRefreshToken() == old.RefreshToken || gr.Token.GetRefreshToken() == "" ||
		gr.Conn.GetAccessTokenExpireTime() == nil || !gr.Conn.GetAccessTokenExpireTime().AsTime().After(time.Now()) {
		t.Fatalf("stored grant after refresh: %v", gr.Conn)
	}
	// Fresh now: no further refresh from any replica.
	for _, g := range e.grants {
		if tok, err := g.Token(t.Context(), "alice", "notes"); err != nil || tok != toks[0] {
			t.Fatalf("second round: %v", err)
		}
	}
	if st := e.prov.Stats(); st.RefreshGrants != 1 {
		t.Fatalf("provider saw %+v after the second round", st)
	}
}

func TestToken_Outcomes(t *testing.T) {
	tests := []struct {
		name     string
		fail     int  // FailTokenEndpoint status
		rotate   bool // provider rotates refresh tokens
		expired  bool
		wantErr  error
		wantNew  bool // a new access token
		wantKept bool // the old refresh token is still stored
		state    vaultv1.ConnectionState
	}{
		{name: "fresh", rotate: true, state: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, wantKept: true},
		{name: "rotated", rotate: true, expired: true, wantNew: true, state: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE},
		{name: "refresh token omitted", expired: true, wantNew: true, wantKept: true, state: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE},
		{name: "upstream 400", fail: http.StatusBadRequest, expired: true, wantErr: grants.ErrGrantUnusable, wantKept: true, state: vaultv1.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH},
		{name: "upstream 401", fail: http.StatusUnauthorized, expired: true, wantErr: grants.ErrGrantUnusable, wantKept: true, state: vaultv1.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH},
		{name: "upstream 503", fail: http.StatusServiceUnavailable, expired: true, wantErr: grants.ErrUpstreamUnavailable, wantKept: true, state: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE},
		{name: "upstream 500", fail: http.StatusInternalServerError, expired: true, wantErr: grants.ErrUpstreamUnavailable, wantKept: true, state: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 1, grants.Config{})
			expiry := time.Now().Add(time.Hour)
			if tc.expired {
				expiry = time.Now().Add(-time.Minute)
			}
			old := e.connect(t, "bob", "bob", expiry)
			before, err := e.stores[0].GetGrant(t.Context(), "bob", "notes")
			if err != nil {
				t.Fatal(err)
			}
			e.prov.SetRefreshRotation(tc.rotate)
			e.prov.FailTokenEndpoint(tc.fail)

			tok, err := e.grants[0].Token(t.Context(), "bob", "notes")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && (tok == old.AccessToken) == tc.wantNew {
				t.Fatalf("new token = %v, want %v", tok != old.AccessToken, tc.wantNew)
			}
			gr, err := e.stores[0].GetGrant(t.Context(), "bob", "notes")
			if err != nil {
				t.Fatal(err)
			}
			if gr.Conn.GetState() != tc.state {
				t.Fatalf("state %v, want %v", gr.Conn.GetState(), tc.state)
			}
			if kept := gr.Token.GetRefreshToken() == old.RefreshToken; kept != tc.wantKept {
				t.Fatalf("old refresh token kept = %v, want %v", kept, tc.wantKept)
			}
			if !gr.Conn.GetHasRefreshToken() {
				t.Fatal("has_refresh_token cleared")
			}
			if errors.Is(tc.wantErr, grants.ErrUpstreamUnavailable) && gr.Revision != before.Revision {
				t.Fatal("grant rewritten after an upstream failure")
			}
			if tc.wantErr == nil {
				if user, _, ok := e.prov.Verify(tok); !ok || user != "bob" {
					t.Fatal("token not valid at the provider")
				}
			}
			if tc.state == vaultv1.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH {
				// Marked unusable: no more upstream calls, even once the upstream is fine.
				e.prov.FailTokenEndpoint(0)
				e.sync(t, gr.Revision)
				n := e.prov.Stats()
				if _, err := e.grants[0].Token(t.Context(), "bob", "notes"); !errors.Is(err, grants.ErrGrantUnusable) {
					t.Fatalf("after NEEDS_REAUTH: %v", err)
				}
				if e.prov.Stats() != n {
					t.Fatal("a NEEDS_REAUTH grant reached the token endpoint")
				}
			}
		})
	}
}

func TestToken_NoGrant(t *testing.T) {
	e := newEnv(t, 1, grants.Config{})
	if _, err := e.grants[0].Token(t.Context(), "nobody", "notes"); !errors.Is(err, grants.ErrNoGrant) {
		t.Fatalf("err = %v", err)
	}
}

func TestToken_UpstreamUnreachable(t *testing.T) {
	e := newEnv(t, 1, grants.Config{})
	e.connect(t, "bob", "bob", time.Now().Add(-time.Minute))
	srv, _ := e.stores[0].Server("notes")
	def := srv.Def
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	def.TokenUrl = dead.URL + "/token"
	rev, err := e.stores[0].PutServer(t.Context(), def, srv.Secrets, def.GetRevision())
	if err != nil {
		t.Fatal(err)
	}
	e.sync(t, rev)
	if _, err := e.grants[0].Token(t.Context(), "bob", "notes"); !errors.Is(err, grants.ErrUpstreamUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestVault_NoTokenBytesInEtcd(t *testing.T) {
	e := newEnv(t, 1, grants.Config{})
	old := e.connect(t, "alice", "alice", time.Now().Add(-time.Minute))
	tok, err := e.grants[0].Token(t.Context(), "alice", "notes")
	if err != nil {
		t.Fatal(err)
	}
	gr, err := e.stores[0].GetGrant(t.Context(), "alice", "notes")
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"old access token": old.AccessToken, "old refresh token": old.RefreshToken,
		"new access token": tok, "new refresh token": gr.Token.GetRefreshToken(),
		"client secret": clientSecret,
	}
	resp, err := e.cli.Get(t.Context(), "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) < 2 {
		t.Fatalf("only %d keys in etcd", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		for what, s := range secrets {
			if s == "" {
				t.Fatalf("%s is empty", what)
			}
			if bytes.Contains(kv.Value, []byte(s)) || bytes.Contains(kv.Key, []byte(s)) {
				t.Errorf("%s found in raw etcd record %s", what, kv.Key)
			}
		}
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t, 2, grants.Config{})
	tok := e.connect(t, "alice", "alice", time.Now().Add(time.Hour))
	revoked, err := e.grants[1].Revoke(t.Context(), "alice", "notes")
	if err != nil || !revoked {
		t.Fatalf("Revoke = %v, %v", revoked, err)
	}
	if st := e.prov.Stats(); st.Revocations != 1 {
		t.Fatalf("provider stats %+v", st)
	}
	if _, _, ok := e.prov.Verify(tok.AccessToken); ok {
		t.Fatal("access token still valid upstream after revoking its refresh token")
	}
	if _, err := e.stores[0].GetGrant(t.Context(), "alice", "notes"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("grant still stored: %v", err)
	}
	if _, err := e.grants[1].Token(t.Context(), "alice", "notes"); !errors.Is(err, grants.ErrNoGrant) {
		t.Fatalf("Token after revoke: %v", err)
	}
	if _, err := e.grants[0].Revoke(t.Context(), "alice", "notes"); !errors.Is(err, grants.ErrNoGrant) || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second Revoke: %v", err)
	}

	// An upstream that refuses the revocation: reported, grant deleted anyway.
	e.connect(t, "bob", "bob", time.Now().Add(time.Hour))
	srv, _ := e.stores[0].Server("notes")
	srv.Def.RevocationUrl = srv.Def.GetTokenUrl() + "/nope"
	rev, err := e.stores[0].PutServer(t.Context(), srv.Def, srv.Secrets, srv.Def.GetRevision())
	if err != nil {
		t.Fatal(err)
	}
	e.sync(t, rev)
	revoked, err = e.grants[0].Revoke(t.Context(), "bob", "notes")
	if err != nil || revoked {
		t.Fatalf("Revoke with failing upstream = %v, %v", revoked, err)
	}
	if _, err := e.stores[0].GetGrant(t.Context(), "bob", "notes"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("grant still stored: %v", err)
	}
}

// BenchmarkToken_Cached is the common path: a fresh grant from the cache.
func BenchmarkToken_Cached(b *testing.B) {
	e := newEnv(b, 1, grants.Config{})
	e.connect(b, "alice", "alice", time.Now().Add(time.Hour))
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.grants[0].Token(b.Context(), "alice", "notes"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkToken_Refresh refreshes on every call (the margin exceeds the
// provider's token lifetime): etcd lock, linearizable re-read, token
// request, compare-and-swap write, cache catch-up.
func BenchmarkToken_Refresh(b *testing.B) {
	e := newEnv(b, 1, grants.Config{Margin: 24 * time.Hour})
	e.connect(b, "alice", "alice", time.Now().Add(-time.Minute))
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.grants[0].Token(b.Context(), "alice", "notes"); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := e.prov.Stats().RefreshGrants; got != b.N {
		b.Fatalf("%d refreshes for %d calls", got, b.N)
	}
}
