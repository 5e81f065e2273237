package oauth_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// leaseTTL returns the lease id and remaining TTL of a stored record.
func (e *env) leaseTTL(kind, name string) (clientv3.LeaseID, time.Duration) {
	e.t.Helper()
	cli := e.etcd.Client(e.t)
	resp, err := cli.Get(context.Background(), store.Prefix+kind+"/"+name)
	if err != nil || len(resp.Kvs) != 1 {
		e.t.Fatalf("get %s/%s: %v", kind, name, err)
	}
	id := clientv3.LeaseID(resp.Kvs[0].Lease)
	if id == clientv3.NoLease {
		e.t.Fatalf("%s/%s has no lease", kind, name)
	}
	ttl, err := cli.TimeToLive(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return id, time.Duration(ttl.TTL) * time.Second
}

// Idle registrations expire: a new one is on a 1-hour lease until a
// signed-in person approves the client, then on a 30-day lease that use
// renews (at most daily).
func TestClientLease(t *testing.T) {
	e := newEnv(t, nil)
	id := e.publicClient("Lease Client")
	l0, ttl := e.leaseTTL(oauth.KindClient, id)
	if ttl < oauth.DefaultUnconfirmedClientTTL-time.Minute || ttl > oauth.DefaultUnconfirmedClientTTL {
		t.Fatalf("registration lease %v", ttl)
	}
	// Anonymous use does not extend it.
	call(t, http.MethodGet, e.authorizeURL(e.authQuery(id)), nil, "")
	if l, _ := e.leaseTTL(oauth.KindClient, id); l != l0 {
		t.Fatalf("unconfirmed lease renewed by /authorize")
	}
	// The first approval does.
	e.code(newSignedIn(e, aliceKey), e.authQuery(id), "alice")
	l1, ttl := e.leaseTTL(oauth.KindClient, id)
	if l1 == l0 || ttl < oauth.DefaultClientIdleTTL-time.Minute || ttl > oauth.DefaultClientIdleTTL {
		t.Fatalf("confirmed lease %v", ttl)
	}
	if ttl, err := e.etcd.Client(t).TimeToLive(t.Context(), l0); err != nil || ttl.TTL != -1 {
		t.Fatalf("unconfirmed lease not revoked: %+v %v", ttl, err)
	}
	// Used within a day: the lease stays.
	call(t, http.MethodGet, e.authorizeURL(e.authQuery(id)), nil, "")
	if l, _ := e.leaseTTL(oauth.KindClient, id); l != l1 {
		t.Fatalf("lease renewed within a day")
	}
	// Used a day later: a fresh 30-day lease.
	e.clock.Advance(25 * time.Hour)
	defer e.clock.Advance(-25 * time.Hour)
	r := call(t, http.MethodGet, e.authorizeURL(e.authQuery(id)), nil, "")
	if r.status != http.StatusFound {
		t.Fatalf("%d %s", r.status, r.body)
	}
	l2, ttl := e.leaseTTL(oauth.KindClient, id)
	if l2 == l1 || ttl < oauth.DefaultClientIdleTTL-time.Minute {
		t.Fatalf("lease %v ttl %v after use", l2, ttl)
	}
	// Codes, states, sessions and tokens are on leases too.
	b := newBrowser(t)
	e.signIn(b, aliceKey)
	for _, kind := range []string{oauth.KindSession, oauth.KindRequest} {
		m, _ := e.st.List(t.Context(), kind)
		for name := range m {
			if _, ttl := e.leaseTTL(kind, name); ttl <= 0 || ttl > oauth.DefaultSessionTTL {
				t.Errorf("%s lease %v", kind, ttl)
			}
		}
	}
}

// A session ends when the key it signed in with is revoked or expires.
func TestSession_KeyRevoked(t *testing.T) {
	e := newEnv(t, nil)
	b := newBrowser(t)
	e.signIn(b, aliceKey)
	if r := b.get(e.pub + "/connections"); r.status != http.StatusOK {
		t.Fatalf("%d", r.status)
	}
	cached, ok := e.st.KeyByHash(store.HashKey(aliceKey))
	if !ok {
		t.Fatal("no key")
	}
	k := proto.CloneOf(cached)
	k.Key.Revoked = true
	k.Key.RevokeTime = timestamppb.Now()
	rev, err := e.st.PutKey(t.Context(), k, k.GetKey().GetRevision())
	if err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	r := b.get(e.pub + "/connections")
	if r.status != http.StatusFound || r.location(t).Path != "/signin" {
		t.Fatalf("after revocation: %d %s", r.status, r.header.Get("Location"))
	}
	// Signing in again with the revoked key fails.
	r = b.post(e.pub+"/signin", map[string][]string{"key": {aliceKey}})
	if r.status != http.StatusForbidden {
		t.Errorf("revoked key sign-in: %d", r.status)
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t, nil)
	h := http.Header{"Origin": {"http://localhost:6274"}, "Access-Control-Request-Method": {"POST"},
		"Access-Control-Request-Headers": {"content-type"}}
	for _, p := range []string{"/register", "/token", "/revoke", "/.well-known/oauth-authorization-server"} {
		r := call(t, http.MethodOptions, e.pub+p, h, "")
		if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(strings.ToLower(r.header.Get("Access-Control-Allow-Headers")), "content-type") {
			t.Errorf("%s preflight: %d %v", p, r.status, r.header)
		}
	}
	r := call(t, http.MethodGet, e.pub+"/.well-known/oauth-authorization-server", http.Header{"Origin": {"http://localhost:6274"}}, "")
	if r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("metadata ACAO %q", r.header.Get("Access-Control-Allow-Origin"))
	}
	// Cookie-bearing pages are not opened to other origins.
	for _, p := range []string{"/authorize", "/consent", "/signin", "/connections"} {
		r := call(t, http.MethodOptions, e.pub+p, h, "")
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s has CORS", p)
		}
	}
}

// newSignedIn returns a browser signed in with key.
func newSignedIn(e *env, key string) *browser {
	b := newBrowser(e.t)
	e.signIn(b, key)
	return b
}
