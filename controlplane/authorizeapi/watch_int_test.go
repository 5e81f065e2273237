package authorizeapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorizeapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

func serveWith(t testing.TB, st *store.Store, opts ...authorizeapi.Option) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(authorizeapi.NewHandler(authorizeapi.New(st, slog.New(slog.DiscardHandler), opts...), []string{dataPlaneToken}))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

// watcher reads a WatchInvalidations stream into a channel.
type watcher struct {
	msgs chan *authorizev1.WatchInvalidationsResponse
	err  chan error
}

func watch(t *testing.T, ts *httptest.Server, token string) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := client(ts, token).WatchInvalidations(ctx, &authorizev1.WatchInvalidationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{msgs: make(chan *authorizev1.WatchInvalidationsResponse, 1024), err: make(chan error, 1)}
	go func() {
		defer s.Close()
		for s.Receive() {
			w.msgs <- proto.CloneOf(s.Msg())
		}
		w.err <- s.Err()
	}()
	return w
}

func (w *watcher) next(t *testing.T) *authorizev1.WatchInvalidationsResponse {
	t.Helper()
	select {
	case m := <-w.msgs:
		return m
	case err := <-w.err:
		t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second): // hang guard only
		t.Fatal("no message")
	}
	return nil
}

// until reads messages until one reaches rev and returns every message
// read (the last reaching rev).
func (w *watcher) until(t *testing.T, rev int64) []*authorizev1.WatchInvalidationsResponse {
	t.Helper()
	var out []*authorizev1.WatchInvalidationsResponse
	for {
		m := w.next(t)
		out = append(out, m)
		if m.GetRevision() >= rev {
			return out
		}
	}
}

// invalidations returns the messages that are not heartbeats, merged.
func invalidations(ms []*authorizev1.WatchInvalidationsResponse) *authorizev1.WatchInvalidationsResponse {
	out := &authorizev1.WatchInvalidationsResponse{}
	for _, m := range ms {
		if m.GetHeartbeat() {
			continue
		}
		out.All = out.All || m.GetAll()
		out.Principals = append(out.Principals, m.GetPrincipals()...)
		out.KeyIds = append(out.KeyIds, m.GetKeyIds()...)
		out.AccessTokenIds = append(out.AccessTokenIds, m.GetAccessTokenIds()...)
		out.Routes = append(out.Routes, m.GetRoutes()...)
		out.Grants = append(out.Grants, m.GetGrants()...)
		out.Revision = m.GetRevision()
	}
	slices.Sort(out.Principals)
	return out
}

// TestWatchInvalidations: the stream opens with a heartbeat at the
// replica's revision, names exactly what each change touches (creations
// touch nothing), flushes everything on a group change, and heartbeats
// carry the revision as it advances. Data planes without the credential
// are refused.
func TestWatchInvalidations(t *testing.T) {
	srv := etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, srv, kr)
	seed(t, st)
	ts := serveWith(t, st, authorizeapi.WithHeartbeatInterval(10*time.Millisecond))
	ctx := t.Context()

	bad := watch(t, ts, "wrong")
	select {
	case err := <-bad.err:
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("stream with a wrong token: %v", err)
		}
	case m := <-bad.msgs:
		t.Fatalf("stream with a wrong token got %v", m)
	}

	w := watch(t, ts, dataPlaneToken)
	first := w.next(t)
	if !first.GetHeartbeat() || first.GetRevision() != st.CacheStatus().Revision || first.GetRevision() == 0 {
		t.Fatalf("first message %v, want a heartbeat at %d", first, st.CacheStatus().Revision)
	}

	expect := func(name string, rev int64, want *authorizev1.WatchInvalidationsResponse) {
		t.Helper()
		got := invalidations(w.until(t, rev))
		want.Revision = got.GetRevision()
		slices.Sort(want.Principals)
		if !proto.Equal(got, want) {
			t.Errorf("%s: invalidated %v, want %v", name, got, want)
		}
		if got.GetRevision() != 0 && got.GetRevision() < rev {
			t.Errorf("%s: invalidation at %d, before the write at %d", name, got.GetRevision(), rev)
		}
	}

	// A new key: nothing can have been cached on it.
	newKey := "mcpg_second_key_000000000000"
	sum := store.HashKey(newKey)
	id := store.KeyID(sum)
	rec := &storev1.KeyRecord{Key: &configv1.ApiKey{Id: id, Principal: "alice", DisplayPrefix: newKey[:8]}, Sha256: sum[:]}
	rev, err := st.PutKey(ctx, rec, 0)
	if err != nil {
		t.Fatal(err)
	}
	expect("key created", rev, &authorizev1.WatchInvalidationsResponse{})

	rec.Key.Revoked = true
	if rev, err = st.PutKey(ctx, rec, rev); err != nil {
		t.Fatal(err)
	}
	expect("key revoked", rev, &authorizev1.WatchInvalidationsResponse{KeyIds: []string{id}, Principals: []string{"alice"}})

	rev, err = st.PutGrant(ctx, &vaultv1.Connection{Principal: "alice", Server: "Gmail", State: vaultv1.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH},
		&storev1.UpstreamToken{AccessToken: "x"}, -1)
	if err != nil {
		t.Fatal(err)
	}
	expect("grant changed", rev, &authorizev1.WatchInvalidationsResponse{Grants: []*authorizev1.InvalidatedGrant{{Principal: "alice", Route: "Gmail"}}})

	tokSum := store.HashKey("gateway-access-token")
	if rev, err = st.PutAccessToken(ctx, tokSum, &storev1.AccessTokenRecord{Principal: "alice", Route: "Gmail", ExpireTime: timestamppb.New(time.Now().Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	expect("token issued", rev, &authorizev1.WatchInvalidationsResponse{})
	if rev, err = st.AccessTokens().Delete(ctx, store.KeyID(tokSum), 0); err != nil {
		t.Fatal(err)
	}
	expect("token revoked", rev, &authorizev1.WatchInvalidationsResponse{AccessTokenIds: []string{store.KeyID(tokSum)}})

	srvDef, _ := st.Server("Gmail")
	def := proto.CloneOf(srvDef.Def)
	def.Description = "changed"
	if rev, err = st.PutServer(ctx, def, srvDef.Secrets, def.GetRevision()); err != nil {
		t.Fatal(err)
	}
	expect("server changed", rev, &authorizev1.WatchInvalidationsResponse{Routes: []string{"Gmail"}})

	p, _ := st.Principal("alice")
	p = proto.CloneOf(p)
	p.Servers = nil
	if rev, err = st.PutPrincipal(ctx, p, p.GetRevision()); err != nil {
		t.Fatal(err)
	}
	expect("principal changed", rev, &authorizev1.WatchInvalidationsResponse{Principals: []string{"alice"}})

	if rev, err = st.PutGroup(ctx, &configv1.Group{Name: "eng", Servers: []string{"Gmail"}}, 0); err != nil {
		t.Fatal(err)
	}
	expect("group created", rev, &authorizev1.WatchInvalidationsResponse{All: true})

	// Quiet: heartbeats at the same revision.
	for range 3 {
		if m := w.next(t); !m.GetHeartbeat() || m.GetRevision() != st.CacheStatus().Revision {
			t.Errorf("quiet stream sent %v", m)
		}
	}
}

// TestAuthorizeCacheMaxAge: every answer carries the revision it was
// decided on; an ALLOW may be reused for the configured maximum, less when
// the API key, the access token or the upstream grant expires sooner
// (the grant less a margin); never when reuse is off; refusals never.
func TestAuthorizeCacheMaxAge(t *testing.T) {
	srv := etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, srv, kr)
	seed(t, st)
	ctx := t.Context()
	now := time.Now()
	clock := func() time.Time { return now }
	c := client(serveWith(t, st, authorizeapi.WithClock(clock), authorizeapi.WithDecisionCacheMaxAge(10*time.Second)), dataPlaneToken)
	off := client(serveWith(t, st, authorizeapi.WithClock(clock), authorizeapi.WithDecisionCacheMaxAge(0)), dataPlaneToken)

	check := func(name string, cl interface {
		Authorize(context.Context, *authorizev1.AuthorizeRequest) (*authorizev1.AuthorizeResponse, error)
	}, req *authorizev1.AuthorizeRequest, decision authorizev1.Decision, maxAge time.Duration) *authorizev1.AuthorizeResponse {
		t.Helper()
		res, err := cl.Authorize(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.GetDecision() != decision || res.GetCacheMaxAgeMs() != maxAge.Milliseconds() {
			t.Errorf("%s: %s max age %d ms, want %s %d ms", name, res.GetDecision(), res.GetCacheMaxAgeMs(), decision, maxAge.Milliseconds())
		}
		if res.GetDecisionRevision() == 0 || res.GetDecisionRevision() > st.CacheStatus().Revision {
			t.Errorf("%s: decision revision %d (store at %d)", name, res.GetDecisionRevision(), st.CacheStatus().Revision)
		}
		return res
	}
	allow, challenge := authorizev1.Decision_DECISION_ALLOW, authorizev1.Decision_DECISION_CHALLENGE
	check("vault grant valid for an hour", c, authorizeReq(), allow, 10*time.Second)
	check("reuse off", off, authorizeReq(), allow, 0)
	unknown := authorizeReq()
	unknown.Credentials.ApiKey = "mcpg_unknown_000000000000000"
	check("unknown key", c, unknown, challenge, 0)

	grant := func(expiry time.Time) {
		t.Helper()
		rev, err := st.PutGrant(ctx, &vaultv1.Connection{Principal: "alice", Server: "Gmail", State: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE},
			&storev1.UpstreamToken{AccessToken: "upstream-token", Expiry: timestamppb.New(expiry)}, -1)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.WaitRevision(ctx, rev); err != nil {
			t.Fatal(err)
		}
	}
	grant(now.Add(65 * time.Second))
	check("vault grant expiring in 65 s", c, authorizeReq(), allow, 5*time.Second)

	// A server without upstream auth, a key expiring in 3 s.
	if _, err := st.PutServer(ctx, &configv1.McpServer{Name: "Open", Url: "https://open.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_NONE}, nil, 0); err != nil {
		t.Fatal(err)
	}
	open := authorizeReq()
	open.Route = "Open"
	shortKey := "mcpg_short_key_0000000000000"
	sum := store.HashKey(shortKey)
	rev, err := st.PutKey(ctx, &storev1.KeyRecord{Key: &configv1.ApiKey{Id: store.KeyID(sum), Principal: "alice", DisplayPrefix: shortKey[:8],
		ExpireTime: timestamppb.New(now.Add(3 * time.Second))}, Sha256: sum[:]}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	check("no upstream auth", c, open, allow, 10*time.Second)
	open.Credentials.ApiKey = shortKey
	check("key expiring in 3 s", c, open, allow, 3*time.Second)

	// A gateway access token expiring in 2 s, from the long-lived key.
	tok := "gateway-access-token"
	tsum := store.HashKey(tok)
	if rev, err = st.PutAccessToken(ctx, tsum, &storev1.AccessTokenRecord{Principal: "alice", Route: "Open", Audience: base + "/Open/mcp",
		KeyId: store.KeyID(store.HashKey(apiKey)), PrincipalUid: mustPrincipal(t, st).GetUid(), ExpireTime: timestamppb.New(now.Add(2 * time.Second))}); err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	open.Credentials = &authorizev1.Credentials{BearerToken: tok}
	res := check("access token expiring in 2 s", c, open, allow, 2*time.Second)
	if res.GetAccessTokenId() != store.KeyID(tsum) {
		t.Errorf("access token id %q, want %q", res.GetAccessTokenId(), store.KeyID(tsum))
	}
}

func mustPrincipal(t *testing.T, st *store.Store) *configv1.Principal {
	t.Helper()
	p, ok := st.Principal("alice")
	if !ok {
		t.Fatal("no alice")
	}
	return p
}
