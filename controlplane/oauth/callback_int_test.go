package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// startFlow signs a browser in as key, approves the base query for a new
// client and returns the redirect to the upstream.
func (e *env) startFlow(b *browser, key string) (clientID string, up *url.URL) {
	e.t.Helper()
	// Forget any grant of this person so that the upstream step runs.
	principal := map[string]string{aliceKey: "alice", bobKey: "bob"}[key]
	_, _ = e.st.DeleteGrant(e.t.Context(), principal, "Gmail", 0)
	e.sync()
	clientID = e.publicClient("Flow Client")
	e.signIn(b, key)
	r := e.approve(b, e.consentPage(b, e.authQuery(clientID)), "approve")
	if r.status != http.StatusFound {
		e.t.Fatalf("approve: %d %s", r.status, r.body)
	}
	up = r.location(e.t)
	if !strings.HasPrefix(up.String(), e.upURL+"/authorize?") {
		e.t.Fatalf("not sent upstream: %s", up)
	}
	return clientID, up
}

// Checklist G 66-72.
func TestUpstreamFlow(t *testing.T) {
	e := newEnv(t, nil)

	t.Run("66 upstream redirect", func(t *testing.T) {
		b := newBrowser(t)
		c := e.publicClient("Flow Client")
		e.signIn(b, aliceKey)
		page := e.consentPage(b, e.authQuery(c))
		if n := e.count(oauth.KindState); n != 0 {
			t.Fatalf("%d upstream states stored before consent", n)
		}
		r := e.approve(b, page, "approve")
		if r.status != http.StatusFound || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%d %v", r.status, r.header)
		}
		up := r.location(t)
		q := up.Query()
		if up.Scheme+"://"+up.Host+up.Path != e.upURL+"/authorize" {
			t.Errorf("upstream URL %s", up)
		}
		if q.Get("client_id") != "gw-client" || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" ||
			len(q.Get("code_challenge")) != 43 || len(q.Get("state")) < 40 || q.Get("redirect_uri") != e.pub+"/oauth/callback" ||
			q.Get("scope") != "notes.read" {
			t.Errorf("upstream query %v", q)
		}
		if strings.Contains(up.RawQuery, "client_secret") || strings.Contains(up.RawQuery, "gw-secret") {
			t.Errorf("secret in the upstream URL")
		}
		if n := e.count(oauth.KindState); n != 1 {
			t.Errorf("%d upstream states after consent", n)
		}
		// The stored state is keyed by a hash, never the state itself.
		states, _ := e.st.List(t.Context(), oauth.KindState)
		for k, v := range states {
			if strings.Contains(k, q.Get("state")) || strings.Contains(string(v), q.Get("state")) {
				t.Errorf("state stored in clear")
			}
		}
	})

	t.Run("67 unknown state", func(t *testing.T) {
		b := newBrowser(t)
		_, up := e.startFlow(b, aliceKey)
		cb := e.upstreamApprove(b, up, "alice")
		before := e.up.Stats().AuthorizationCodeGrants
		q := cb.Query()
		q.Set("state", "unknown-state")
		r := b.get(e.pub + "/oauth/callback?" + q.Encode())
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
			t.Fatalf("%d %s", r.status, r.header.Get("Location"))
		}
		wantPageHeaders(t, r)
		if e.up.Stats().AuthorizationCodeGrants != before {
			t.Errorf("the code was exchanged")
		}
	})

	t.Run("68 replayed state", func(t *testing.T) {
		b := newBrowser(t)
		_, up := e.startFlow(b, aliceKey)
		cb := e.upstreamApprove(b, up, "alice")
		if r := b.get(cb.String()); r.status != http.StatusFound || r.location(t).Query().Get("code") == "" {
			t.Fatalf("first callback: %d %s", r.status, r.body)
		}
		before := e.up.Stats()
		r := b.get(cb.String())
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
			t.Fatalf("%d %s", r.status, r.header.Get("Location"))
		}
		if e.up.Stats() != before {
			t.Errorf("the upstream was called again")
		}
	})

	t.Run("69 other browser", func(t *testing.T) {
		a := newBrowser(t)
		_, up := e.startFlow(a, aliceKey)
		cb := e.upstreamApprove(a, up, "alice")
		before := e.up.Stats().AuthorizationCodeGrants
		for name, other := range map[string]*browser{"bob's session": newBrowser(t), "no session": newBrowser(t)} {
			if name == "bob's session" {
				e.signIn(other, bobKey)
			}
			r := other.get(cb.String())
			if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
				t.Fatalf("%s: %d %s", name, r.status, r.header.Get("Location"))
			}
		}
		// Another session of alice herself is refused too.
		alice2 := newBrowser(t)
		e.signIn(alice2, aliceKey)
		if r := alice2.get(cb.String()); r.status != http.StatusBadRequest {
			t.Fatalf("other alice session: %d", r.status)
		}
		if e.up.Stats().AuthorizationCodeGrants != before {
			t.Errorf("the code was exchanged")
		}
		// The state survives and the right browser finishes.
		if r := a.get(cb.String()); r.status != http.StatusFound || r.location(t).Query().Get("code") == "" {
			t.Fatalf("right browser: %d %s", r.status, r.body)
		}
	})

	t.Run("70 no state", func(t *testing.T) {
		b := newBrowser(t)
		e.signIn(b, aliceKey)
		r := b.get(e.pub + "/oauth/callback?code=x")
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
			t.Fatalf("%d", r.status)
		}
		wantPageHeaders(t, r)
	})

	t.Run("70 upstream error", func(t *testing.T) {
		b := newBrowser(t)
		_, up := e.startFlow(b, aliceKey)
		r := b.get(e.pub + "/oauth/callback?" + url.Values{"error": {"access_denied"}, "state": {up.Query().Get("state")}, "iss": {e.upURL}}.Encode())
		wantRedirectError(t, e, r, "access_denied")
		// Denying on the upstream's own page gives the same.
		b2 := newBrowser(t)
		_, up2 := e.startFlow(b2, bobKey)
		page := b2.get(up2.String())
		deny := b2.post(e.upURL+"/authorize", url.Values{"request": {formValue(t, page.body, "request")}, "action": {"deny"}})
		r = b2.get(deny.location(t).String())
		wantRedirectError(t, e, r, "access_denied")
		if _, ok := e.st.Grant("bob", "Gmail"); ok {
			t.Errorf("a grant was stored for bob")
		}
	})

	t.Run("71 iss mismatch", func(t *testing.T) {
		b := newBrowser(t)
		_, up := e.startFlow(b, bobKey)
		cb := e.upstreamApprove(b, up, "bob")
		if cb.Query().Get("iss") != e.upURL {
			t.Fatalf("the demo provider sends iss %q", cb.Query().Get("iss"))
		}
		before := e.up.Stats().AuthorizationCodeGrants
		q := cb.Query()
		q.Set("iss", "https://accounts.evil.example")
		r := b.get(e.pub + "/oauth/callback?" + q.Encode())
		if r.status != http.StatusBadRequest || r.header.Get("Location") != "" {
			t.Fatalf("%d %s", r.status, r.header.Get("Location"))
		}
		if e.up.Stats().AuthorizationCodeGrants != before {
			t.Errorf("the code was exchanged")
		}
	})

	t.Run("72 grant stored server-side only", func(t *testing.T) {
		b := newBrowser(t)
		c, up := e.startFlow(b, bobKey)
		cb := e.upstreamApprove(b, up, "bob")
		r := b.get(cb.String())
		if r.status != http.StatusFound {
			t.Fatalf("%d %s", r.status, r.body)
		}
		loc := r.location(t)
		tr := e.exchange(c, loc.Query().Get("code"), nil)
		if tr.status != http.StatusOK {
			t.Fatalf("%d %s", tr.status, tr.body)
		}
		// The cache holds bob's grant, obtained as the upstream user bob.
		e.sync()
		g, ok := e.st.Grant("bob", "Gmail")
		if !ok || g.Conn.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE || g.Token.GetRefreshToken() == "" {
			t.Fatalf("grant %v", g)
		}
		upTok := g.Token.GetAccessToken()
		if user, _, ok := e.up.Verify(upTok); !ok || user != "bob" {
			t.Fatalf("upstream token belongs to %q (%v)", user, ok)
		}
		for name, text := range map[string]string{"redirect": loc.String(), "token response": tr.body, "callback page": r.body, "logs": e.logs.String()} {
			if strings.Contains(text, upTok) || strings.Contains(text, g.Token.GetRefreshToken()) {
				t.Errorf("upstream token in the %s", name)
			}
		}
		// Raw etcd holds neither the upstream tokens nor any gateway token.
		raw, err := e.etcd.Client(t).Get(context.Background(), store.Prefix, clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		secrets := []string{upTok, g.Token.GetRefreshToken(), tr.json(t)["access_token"].(string), tr.json(t)["refresh_token"].(string), loc.Query().Get("code"), "gw-secret"}
		for _, kv := range raw.Kvs {
			for _, s := range secrets {
				if strings.Contains(string(kv.Key), s) || strings.Contains(string(kv.Value), s) {
					t.Errorf("raw etcd %s holds a secret", kv.Key)
				}
			}
		}
	})
}

// The connections page: list, connect without an MCP client, disconnect;
// with the vault's refresher and with the store-only fallback.
func TestConnections(t *testing.T) {
	t.Run("refresher", func(t *testing.T) { testConnections(t, nil, 1) })
	t.Run("store only", func(t *testing.T) { testConnections(t, func(c *oauth.Config) { c.Grants = nil }, 0) })
}

func testConnections(t *testing.T, mod func(*oauth.Config), upstreamRevocations int) {
	e := newEnv(t, mod)
	b := newBrowser(t)
	t.Run("sign-in required", func(t *testing.T) {
		r := b.get(e.pub + "/connections")
		if r.status != http.StatusFound || r.location(t).Path != "/signin" || r.location(t).Query().Get("next") != "connections" {
			t.Fatalf("%d %s", r.status, r.header.Get("Location"))
		}
		page := b.get(r.location(t).String())
		if r := b.post(e.pub+"/signin", url.Values{"key": {aliceKey}, "next": {formValue(t, page.body, "next")}}); r.location(t).Path != "/connections" {
			t.Fatalf("after sign-in: %s", r.location(t))
		}
	})
	var csrf string
	t.Run("empty", func(t *testing.T) {
		r := b.get(e.pub + "/connections")
		if r.status != http.StatusOK || !strings.Contains(r.body, "No connections yet") || !strings.Contains(r.body, "Gmail") {
			t.Fatalf("%d %s", r.status, r.body)
		}
		wantPageHeaders(t, r)
		if strings.Contains(r.body, ">GitHub<") {
			t.Errorf("GitHub (no personal sign-in) offered for connecting")
		}
		csrf = formValue(t, r.body, "csrf")
	})
	t.Run("connect", func(t *testing.T) {
		if r := b.post(e.pub+"/connections/connect", url.Values{"server": {"Gmail"}}); r.status != http.StatusForbidden {
			t.Fatalf("without CSRF: %d", r.status)
		}
		r := b.post(e.pub+"/connections/connect", url.Values{"server": {"Gmail"}, "csrf": {csrf}})
		if r.status != http.StatusFound {
			t.Fatalf("%d %s", r.status, r.body)
		}
		cb := e.upstreamApprove(b, r.location(t), "alice")
		r = b.get(cb.String())
		if r.status != http.StatusSeeOther || r.header.Get("Location") != e.pub+"/connections" {
			t.Fatalf("callback: %d %s", r.status, r.header.Get("Location"))
		}
		e.sync()
		g, ok := e.st.Grant("alice", "Gmail")
		if !ok {
			t.Fatal("no grant")
		}
		page := b.get(e.pub + "/connections")
		if !strings.Contains(page.body, "connected") || !strings.Contains(page.body, "notes.read notes.write") || strings.Contains(page.body, g.Token.GetAccessToken()) {
			t.Errorf("page %s", page.body)
		}
	})
	t.Run("upstream refusal", func(t *testing.T) {
		r := b.post(e.pub+"/connections/connect", url.Values{"server": {"Gmail"}, "csrf": {csrf}})
		st := r.location(t).Query().Get("state")
		r = b.get(e.pub + "/oauth/callback?" + url.Values{"error": {"access_denied"}, "state": {st}, "iss": {e.upURL}}.Encode())
		if r.status != http.StatusForbidden || !strings.Contains(r.body, "cancelled or refused") {
			t.Fatalf("%d %s", r.status, r.body)
		}
		wantPageHeaders(t, r)
	})
	t.Run("bad server", func(t *testing.T) {
		for _, s := range []string{"Nope", "GitHub"} {
			if r := b.post(e.pub+"/connections/connect", url.Values{"server": {s}, "csrf": {csrf}}); r.status != http.StatusBadRequest {
				t.Errorf("%s: %d", s, r.status)
			}
		}
	})
	t.Run("disconnect", func(t *testing.T) {
		if r := b.post(e.pub+"/connections/disconnect", url.Values{"server": {"Gmail"}, "csrf": {"wrong"}}); r.status != http.StatusForbidden {
			t.Fatalf("wrong CSRF: %d", r.status)
		}
		r := b.post(e.pub+"/connections/disconnect", url.Values{"server": {"Gmail"}, "csrf": {csrf}})
		if r.status != http.StatusSeeOther {
			t.Fatalf("%d %s", r.status, r.body)
		}
		e.sync()
		if _, ok := e.st.Grant("alice", "Gmail"); ok {
			t.Errorf("grant still stored")
		}
		if n := e.up.Stats().Revocations; n != upstreamRevocations {
			t.Errorf("upstream revocations %d, want %d", n, upstreamRevocations)
		}
		// Disconnecting again is harmless.
		if r := b.post(e.pub+"/connections/disconnect", url.Values{"server": {"Gmail"}, "csrf": {csrf}}); r.status != http.StatusSeeOther {
			t.Errorf("second disconnect: %d", r.status)
		}
		page := b.get(e.pub + "/connections?done=disconnected")
		if !strings.Contains(page.body, "Disconnected.") || !strings.Contains(page.body, "No connections yet") {
			t.Errorf("page %s", page.body)
		}
	})
}
