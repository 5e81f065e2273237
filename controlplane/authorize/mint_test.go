package authorize_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/controlplane/grants"
)

// tokenEndpoint is an OAuth 2.0 token endpoint for client_credentials that
// counts the tokens it mints.
type tokenEndpoint struct {
	requests  atomic.Int64
	minted    atomic.Int64
	failing   atomic.Bool
	expiresIn atomic.Int64
	gate      chan struct{} // when set, each request waits for it to close
	t         *testing.T
}

func (e *tokenEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.requests.Add(1)
	if e.gate != nil {
		<-e.gate
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if r.Method != http.MethodPost || r.PostForm.Get("grant_type") != "client_credentials" ||
		r.PostForm.Get("scope") != "api" || id != "gw-client" || secret != "gw-secret" {
		e.t.Errorf("token request: method %s form %v client %q", r.Method, r.PostForm, id)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
		return
	}
	if e.failing.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	n := e.minted.Add(1)
	body := map[string]any{"access_token": fmt.Sprintf("minted-%d", n), "token_type": "Bearer"}
	if s := e.expiresIn.Load(); s > 0 {
		body["expires_in"] = s
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// fakeClock is a settable clock.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func ccState(tokenURL string) *state {
	s := matrixState()
	srv := s.servers["cc"]
	srv.Def.ClientId, srv.Def.TokenUrl = "gw-client", tokenURL
	srv.Secrets.ClientSecret = "gw-secret"
	return s
}

func bearerOf(t *testing.T, a *authorizer) string {
	t.Helper()
	resp, err := a.Authorize(t.Context(), &authorizev1.AuthorizeRequest{
		Route: "cc", Credentials: &authorizev1.Credentials{ApiKey: keyAlice}, PublicBaseUrl: base, JsonrpcMethod: "tools/list",
	})
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	if resp.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
		t.Fatalf("decision %v", resp.GetDecision())
	}
	return resp.GetAllow().GetUpstreamHeaders()[0].GetValue()
}

func TestClientCredentials(t *testing.T) {
	ep := &tokenEndpoint{t: t, gate: make(chan struct{})}
	ep.expiresIn.Store(120)
	ts := httptest.NewServer(ep)
	defer ts.Close()
	clk := &fakeClock{}
	clk.ns.Store(now.UnixNano())
	s := ccState(ts.URL + "/token")
	a := newAuthorizer(s, withClock(clk.now))

	// 20 concurrent decisions while the endpoint holds the first request: one mint.
	const n = 20
	var started, done sync.WaitGroup
	got := make([]string, n)
	for i := range n {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			resp, err := a.Authorize(t.Context(), &authorizev1.AuthorizeRequest{
				Route: "cc", Credentials: &authorizev1.Credentials{ApiKey: keyAlice}, PublicBaseUrl: base,
			})
			if err != nil {
				t.Errorf("authorize: %v", err)
				return
			}
			got[i] = resp.GetAllow().GetUpstreamHeaders()[0].GetValue()
		}()
	}
	started.Wait()
	close(ep.gate)
	done.Wait()
	if r, m := ep.requests.Load(), ep.minted.Load(); r != 1 || m != 1 {
		t.Fatalf("%d concurrent decisions made %d token requests minting %d tokens, want 1", n, r, m)
	}
	for i, v := range got {
		if v != "Bearer minted-1" {
			t.Errorf("decision %d: header %q", i, v)
		}
	}

	steps := []struct {
		name   string
		act    func()
		header string
		minted int64
	}{
		{"cached", func() { clk.advance(59 * time.Second) }, "Bearer minted-1", 1},
		{"60s-before-expiry", func() { clk.advance(time.Second) }, "Bearer minted-2", 2},
		{"cached-again", func() { clk.advance(30 * time.Second) }, "Bearer minted-2", 2},
		{"definition-changed", func() { s.servers["cc"].Def.Revision++ }, "Bearer minted-3", 3},
		{"short-lived-token", func() { ep.expiresIn.Store(10); s.servers["cc"].Def.Revision++ }, "Bearer minted-4", 4},
		{"short-lived-cached-half", func() { clk.advance(4 * time.Second) }, "Bearer minted-4", 4},
		{"short-lived-renewed", func() { clk.advance(time.Second) }, "Bearer minted-5", 5},
		{"no-expires-in", func() { ep.expiresIn.Store(0); s.servers["cc"].Def.Revision++ }, "Bearer minted-6", 6},
		{"no-expires-in-cached", func() { clk.advance(grants.DefaultNoExpiryTTL - time.Second) }, "Bearer minted-6", 6},
		{"no-expires-in-renewed", func() { clk.advance(time.Second) }, "Bearer minted-7", 7},
	}
	for _, st := range steps {
		st.act()
		if h := bearerOf(t, a); h != st.header {
			t.Errorf("%s: header %q, want %q", st.name, h, st.header)
		}
		if r, m := ep.requests.Load(), ep.minted.Load(); r != st.minted || m != st.minted {
			t.Errorf("%s: %d requests minted %d, want %d", st.name, r, m, st.minted)
		}
	}

	// A failing token endpoint: could not decide, nothing cached.
	ep.failing.Store(true)
	s.servers["cc"].Def.Revision++
	_, err := a.Authorize(t.Context(), &authorizev1.AuthorizeRequest{
		Route: "cc", Credentials: &authorizev1.Credentials{ApiKey: keyAlice}, PublicBaseUrl: base,
	})
	if !errors.Is(err, grants.ErrUpstreamUnavailable) {
		t.Fatalf("failing endpoint: err %v, want ErrUpstreamUnavailable", err)
	}
	ep.failing.Store(false)
	if h := bearerOf(t, a); h != "Bearer minted-8" {
		t.Errorf("after recovery: %q", h)
	}
}

func TestClientCredentialsUnreachable(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	a := newAuthorizer(ccState(url+"/token"), withClock(clock))
	_, err := a.Authorize(t.Context(), &authorizev1.AuthorizeRequest{
		Route: "cc", Credentials: &authorizev1.Credentials{ApiKey: keyAlice}, PublicBaseUrl: base,
	})
	if !errors.Is(err, grants.ErrUpstreamUnavailable) {
		t.Fatalf("err %v, want ErrUpstreamUnavailable", err)
	}
}
