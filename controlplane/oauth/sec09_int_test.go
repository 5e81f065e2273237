package oauth_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mcpgate/mcpgate/controlplane/oauth"
)

// etcdUsage is what anonymous requests must not change.
type etcdUsage struct {
	rev, keys, leases, dbSize int64
}

// dbSlack is how much etcd's database file may grow while nothing is
// written: the backend commits earlier writes in the background (every
// 100 ms), a page or two. One 60 KB state alone would exceed it.
const dbSlack = 16 << 10

// same reports whether u shows nothing stored since before: the same
// revision, keys and leases, and the database within dbSlack.
func (u etcdUsage) same(before etcdUsage) bool {
	return u.rev == before.rev && u.keys == before.keys && u.leases == before.leases &&
		u.dbSize >= before.dbSize && u.dbSize-before.dbSize <= dbSlack
}

func (e *env) usage() etcdUsage {
	e.t.Helper()
	cli := e.etcd.Client(e.t)
	st, err := cli.Status(e.t.Context(), e.etcd.Endpoint)
	if err != nil {
		e.t.Fatal(err)
	}
	n, err := cli.Get(e.t.Context(), "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		e.t.Fatal(err)
	}
	ls, err := cli.Leases(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return etcdUsage{rev: n.Header.Revision, keys: n.Count, leases: int64(len(ls.Leases)), dbSize: st.DbSize}
}

// wantPage checks a fixed error page.
func wantPage(t *testing.T, r response, status int, msg string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %.300s", r.status, status, r.body)
	}
	if !strings.Contains(r.body, `<p class="error">`+html.EscapeString(msg)+`</p>`) {
		t.Fatalf("page lacks %q:\n%.500s", msg, r.body)
	}
	wantPageHeaders(t, r)
}

// Issue 8 item 9: anonymous /authorize requests stored the client's state
// verbatim in etcd (699 requests with a 61 KB state filled a 64 MiB quota).
// Now nothing is stored before sign-in, every parameter is capped, and
// /authorize, /signin and /register are rate limited per client address.
func TestSec09AuthorizeStoresNothingBeforeSignIn(t *testing.T) {
	e := newEnv(t, nil)
	c := e.publicClient("Sec09 Client")
	e.sync()

	t.Run("60 KB state: 400, etcd unchanged", func(t *testing.T) {
		before := e.usage()
		// As many as filled a 64 MiB quota before.
		for i := range 699 {
			q := e.authQuery(c)
			q.Set("state", strings.Repeat("s", 60<<10))
			h := http.Header{"X-Test-Addr": {fmt.Sprintf("10.9.%d.%d", i/256, i%256)}}
			r := call(t, http.MethodGet, e.authorizeURL(q), h, "")
			wantPage(t, r, http.StatusBadRequest, "The authorization request is too large.")
			if r.header.Get("Location") != "" {
				t.Fatalf("redirected to %s", r.header.Get("Location"))
			}
		}
		if after := e.usage(); !after.same(before) {
			t.Fatalf("etcd changed: %+v → %+v", before, after)
		}
	})

	t.Run("each parameter is capped", func(t *testing.T) {
		for p, n := range map[string]int{"state": 1025, "scope": 1001, "redirect_uri": 2001, "client_id": 2001, "resource": 2001, "code_challenge": 129, "nonce": 513} {
			q := e.authQuery(c)
			q.Set(p, strings.Repeat("a", n))
			r := call(t, http.MethodGet, e.authorizeURL(q), http.Header{"X-Test-Addr": {"203.0.113.50"}}, "")
			name := p
			if p == "nonce" {
				name = "parameter"
			}
			wantPage(t, r, http.StatusBadRequest, "The authorization request's "+name+" is too long.")
		}
		// At the caps the request goes on to sign-in.
		q := e.authQuery(c)
		q.Set("state", strings.Repeat("s", 1024))
		q.Set("nonce", strings.Repeat("n", 512))
		r := call(t, http.MethodGet, e.authorizeURL(q), http.Header{"X-Test-Addr": {"203.0.113.51"}}, "")
		if r.status != http.StatusFound || r.location(t).Path != "/signin" {
			t.Fatalf("%d %s", r.status, r.header.Get("Location"))
		}
	})

	t.Run("valid anonymous requests store nothing", func(t *testing.T) {
		before := e.usage()
		for i := range 40 {
			h := http.Header{"X-Test-Addr": {fmt.Sprintf("198.51.101.%d", i)}}
			r := call(t, http.MethodGet, e.authorizeURL(e.authQuery(c)), h, "")
			if r.status != http.StatusFound || r.location(t).Path != "/signin" {
				t.Fatalf("%d %s", r.status, r.header.Get("Location"))
			}
			// The sign-in page and a failed sign-in store nothing either.
			req := r.location(t).Query().Get("request")
			if p := call(t, http.MethodGet, r.location(t).String(), h, ""); p.status != http.StatusOK || formValue(t, p.body, "request") != req {
				t.Fatalf("sign-in page %d", p.status)
			}
			fh := formHeader()
			fh.Set("X-Test-Addr", h.Get("X-Test-Addr"))
			if p := call(t, http.MethodPost, e.pub+"/signin", fh, url.Values{"key": {"mcpg_wrong"}, "request": {req}}.Encode()); p.status != http.StatusForbidden {
				t.Fatalf("wrong key: %d", p.status)
			}
		}
		if after := e.usage(); !after.same(before) {
			t.Fatalf("etcd changed: %+v → %+v", before, after)
		}
	})

	t.Run("normal flow, request single-use", func(t *testing.T) {
		b := newBrowser(t)
		r := b.get(e.authorizeURL(e.authQuery(c)))
		signin := b.get(r.location(t).String())
		r = b.post(e.pub+"/signin", url.Values{"key": {aliceKey}, "request": {formValue(t, signin.body, "request")}})
		if r.status != http.StatusSeeOther {
			t.Fatalf("sign-in %d %s", r.status, r.body)
		}
		page := b.get(r.location(t).String())
		if page.status != http.StatusOK {
			t.Fatalf("consent %d %s", page.status, page.body)
		}
		r = e.approve(b, page, "approve")
		cb := e.upstreamApprove(b, r.location(t), "alice")
		r = b.get(cb.String())
		loc := r.location(t)
		if loc.Query().Get("state") != "S1" || loc.Query().Get("code") == "" {
			t.Fatalf("redirect %s", loc)
		}
		if tr := e.exchange(c, loc.Query().Get("code"), nil); tr.status != http.StatusOK {
			t.Fatalf("token %d %s", tr.status, tr.body)
		}
		// The consent form cannot be answered twice.
		wantPage(t, e.approve(b, page, "approve"), http.StatusBadRequest, "This authorization request has expired or was already used. Start again from your application.")
		// A forged or altered request is refused.
		req := formValue(t, page.body, "request")
		for _, bad := range []string{req[:len(req)-2] + "AA", "nope", strings.Repeat("A", 20<<10)} {
			r := b.post(e.pub+"/consent", url.Values{"request": {bad}, "csrf": {formValue(t, page.body, "csrf")}, "action": {"approve"}})
			wantPage(t, r, http.StatusBadRequest, "This authorization request has expired or was already used. Start again from your application.")
		}
		// An expired one too (bob has not consented yet).
		bb := newBrowser(t)
		e.signIn(bb, bobKey)
		r = e.consentPage(bb, e.authQuery(c))
		e.clock.Advance(oauth.DefaultRequestTTL + time.Second)
		defer e.clock.Advance(-oauth.DefaultRequestTTL - time.Second)
		wantPage(t, e.approve(bb, r, "approve"), http.StatusBadRequest, "This authorization request has expired or was already used. Start again from your application.")
	})

	t.Run("rate limits", func(t *testing.T) {
		// A stopped clock: buckets refill only when the test says so.
		fz := &frozenClock{at: time.Now()}
		e := newEnv(t, func(cfg *oauth.Config) { cfg.Now = fz.Now })
		c := e.publicClient("Sec09 Limits")
		h := http.Header{"X-Test-Addr": {"192.0.2.77"}}
		for i := range oauth.DefaultAuthorizePerMin {
			if r := call(t, http.MethodGet, e.authorizeURL(e.authQuery(c)), h, ""); r.status != http.StatusFound {
				t.Fatalf("request %d: %d", i, r.status)
			}
		}
		r := call(t, http.MethodGet, e.authorizeURL(e.authQuery(c)), h, "")
		wantPage(t, r, http.StatusTooManyRequests, "Too many requests came from your address. Wait a moment and try again.")
		if got := r.header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After %q", got)
		}
		// Another address is not limited; one IPv6 /64 is one address.
		if r := call(t, http.MethodGet, e.authorizeURL(e.authQuery(c)), http.Header{"X-Test-Addr": {"192.0.2.78"}}, ""); r.status != http.StatusFound {
			t.Fatalf("other address: %d", r.status)
		}
		for i := range oauth.DefaultAuthorizePerMin {
			h := http.Header{"X-Test-Addr": {fmt.Sprintf("2001:db8:1:2::%x", i+1)}}
			if r := call(t, http.MethodGet, e.authorizeURL(e.authQuery(c)), h, ""); r.status != http.StatusFound {
				t.Fatalf("IPv6 request %d: %d", i, r.status)
			}
		}
		if r := call(t, http.MethodGet, e.authorizeURL(e.authQuery(c)), http.Header{"X-Test-Addr": {"2001:db8:1:2:ffff::1"}}, ""); r.status != http.StatusTooManyRequests {
			t.Fatalf("same /64: %d", r.status)
		}
		// The bucket refills.
		fz.Advance(time.Minute)
		if r := call(t, http.MethodGet, e.authorizeURL(e.authQuery(c)), h, ""); r.status != http.StatusFound {
			t.Fatalf("after a minute: %d", r.status)
		}

		// Sign-in: GET and POST share a bucket.
		fh := formHeader()
		fh.Set("X-Test-Addr", "192.0.2.79")
		for i := range oauth.DefaultSigninPerMin {
			if r := call(t, http.MethodPost, e.pub+"/signin", fh, url.Values{"key": {"mcpg_wrong"}}.Encode()); r.status != http.StatusForbidden {
				t.Fatalf("sign-in %d: %d", i, r.status)
			}
		}
		r = call(t, http.MethodPost, e.pub+"/signin", fh, url.Values{"key": {aliceKey}}.Encode())
		wantPage(t, r, http.StatusTooManyRequests, "Too many requests came from your address. Wait a moment and try again.")
		if r.header.Get("Retry-After") != "2" || r.header.Get("Set-Cookie") != "" {
			t.Errorf("Retry-After %q, Set-Cookie %q", r.header.Get("Retry-After"), r.header.Get("Set-Cookie"))
		}
		r = call(t, http.MethodGet, e.pub+"/signin", http.Header{"X-Test-Addr": {"192.0.2.79"}}, "")
		wantPage(t, r, http.StatusTooManyRequests, "Too many requests came from your address. Wait a moment and try again.")

		// Endpoints that look presented secrets up in etcd share a bucket.
		fh.Set("X-Test-Addr", "192.0.2.80")
		for i := range oauth.DefaultLookupPerMin {
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {fmt.Sprintf("mcpgr_random%d", i)}, "client_id": {c}}
			if r := call(t, http.MethodPost, e.pub+"/token", fh, form.Encode()); r.status != http.StatusBadRequest {
				t.Fatalf("token %d: %d %s", i, r.status, r.body)
			}
		}
		r = call(t, http.MethodPost, e.pub+"/token", fh, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"mcpgr_x"}, "client_id": {c}}.Encode())
		wantJSONError(t, r, http.StatusTooManyRequests, "slow_down")
		if r.header.Get("Retry-After") != "1" {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
		r = call(t, http.MethodGet, e.pub+"/oauth/callback?state=x&code=y", http.Header{"X-Test-Addr": {"192.0.2.80"}}, "")
		wantPage(t, r, http.StatusTooManyRequests, "Too many requests came from your address. Wait a moment and try again.")
	})

	t.Run("leases end with their records", func(t *testing.T) {
		// Used-request markers live as long as the request would have.
		m, _ := e.st.List(t.Context(), oauth.KindRequest)
		if len(m) == 0 {
			t.Fatal("no used-request marker")
		}
		for name := range m {
			if _, ttl := e.leaseTTL(oauth.KindRequest, name); ttl <= 0 || ttl > oauth.DefaultRequestTTL+time.Second {
				t.Errorf("marker lease %v", ttl)
			}
		}
		// A registration lives an hour until a signed-in person approves
		// the client; anonymous use does not extend it.
		id := e.publicClient("Sec09 Renewed")
		l0, ttl := e.leaseTTL(oauth.KindClient, id)
		if ttl > oauth.DefaultUnconfirmedClientTTL {
			t.Fatalf("new registration lease %v", ttl)
		}
		e.clock.Advance(25 * time.Hour)
		defer e.clock.Advance(-25 * time.Hour)
		if r := call(t, http.MethodGet, e.authorizeURL(e.authQuery(id)), http.Header{"X-Test-Addr": {"198.51.103.1"}}, ""); r.status != http.StatusFound {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if l, _ := e.leaseTTL(oauth.KindClient, id); l != l0 {
			t.Fatal("anonymous /authorize extended an unconfirmed registration")
		}
		// Approval extends it, and the replaced lease is revoked, not left
		// to run out.
		e.code(newSignedIn(e, aliceKey), e.authQuery(id), "alice")
		l1, ttl := e.leaseTTL(oauth.KindClient, id)
		if l1 == l0 || ttl < oauth.DefaultClientIdleTTL-time.Minute {
			t.Fatalf("confirmed lease %v", ttl)
		}
		if ttl, err := e.etcd.Client(t).TimeToLive(t.Context(), l0); err != nil || ttl.TTL != -1 {
			t.Fatalf("old lease still there: %+v %v", ttl, err)
		}
	})

	t.Run("registration body capped", func(t *testing.T) {
		// The largest accepted registration stores at most the body plus
		// a few hundred bytes.
		uris := []string{}
		for i := range 20 {
			uris = append(uris, fmt.Sprintf("http://127.0.0.1/%0*d", (oauth.MaxRegisterBytes-400)/20-20, i))
		}
		body := `{"redirect_uris":["` + strings.Join(uris, `","`) + `"],"client_name":"` + strings.Repeat("n", 200) + `"}`
		if len(body) > oauth.MaxRegisterBytes {
			t.Fatalf("body %d", len(body))
		}
		before := e.usage()
		r := call(t, http.MethodPost, e.pub+"/register", http.Header{"Content-Type": {"application/json"}, "X-Test-Addr": {"198.51.102.2"}}, body)
		if r.status != http.StatusCreated {
			t.Fatalf("%d %s", r.status, r.body)
		}
		id := r.json(t)["client_id"].(string)
		m, _ := e.st.List(t.Context(), oauth.KindClient)
		if n := len(m[id]); n < len(body)-1000 || n > oauth.MaxRegisterBytes+256 {
			t.Fatalf("record of %d bytes for a %d-byte body", n, len(body))
		}
		t.Logf("largest registration: %d-byte body, %d-byte record", len(body), len(m[id]))
		if after := e.usage(); after.keys != before.keys+1 {
			t.Fatalf("keys %d → %d", before.keys, after.keys)
		}

		before = e.usage()
		big := `{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none","client_uri":"https://x.example/` + strings.Repeat("a", oauth.MaxRegisterBytes) + `"}`
		r = call(t, http.MethodPost, e.pub+"/register", http.Header{"Content-Type": {"application/json"}, "X-Test-Addr": {"198.51.102.1"}}, big)
		wantJSONError(t, r, http.StatusRequestEntityTooLarge, "invalid_client_metadata")
		if after := e.usage(); !after.same(before) {
			t.Fatalf("etcd changed: %+v → %+v", before, after)
		}
	})

	t.Run("registrations bounded per replica", func(t *testing.T) {
		fz := &frozenClock{at: time.Now()}
		e := newEnv(t, func(c *oauth.Config) { c.RegisterPerHour, c.Now = 5, fz.Now })
		body := `{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"none"}`
		for i := range 5 {
			h := http.Header{"Content-Type": {"application/json"}, "X-Test-Addr": {fmt.Sprintf("198.51.104.%d", i)}}
			if r := call(t, http.MethodPost, e.pub+"/register", h, body); r.status != http.StatusCreated {
				t.Fatalf("registration %d: %d %s", i, r.status, r.body)
			}
		}
		before := e.usage()
		r := call(t, http.MethodPost, e.pub+"/register", http.Header{"Content-Type": {"application/json"}, "X-Test-Addr": {"198.51.104.99"}}, body)
		wantJSONError(t, r, http.StatusTooManyRequests, "slow_down")
		if got := r.header.Get("Retry-After"); got != "720" {
			t.Errorf("Retry-After %q", got)
		}
		if after := e.usage(); !after.same(before) {
			t.Fatalf("etcd changed: %+v → %+v", before, after)
		}
	})
}

// frozenClock moves only when advanced.
type frozenClock struct {
	mu sync.Mutex
	at time.Time
}

func (c *frozenClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *frozenClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
}
