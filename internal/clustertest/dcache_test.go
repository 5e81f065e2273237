package clustertest

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// metricValue reads one sample of n's metrics (0 when absent).
func (f *fixture) metricValue(t *testing.T, n *Node, sample string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`)
	m := re.FindStringSubmatch(scrape(f.ctx, t, n))
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const cacheHits = `mcpgate_dataplane_decision_cache_lookups_total{result="hit"}`

// warm posts initialize with key to every data plane until its decision
// cache answers one from memory.
func (f *fixture) warm(t *testing.T, key string) {
	t.Helper()
	for i, u := range f.proxyURL {
		p := f.c.Proxies[i]
		before := f.metricValue(t, p, cacheHits)
		for f.metricValue(t, p, cacheHits) == before {
			status, _, _, err := Post(f.ctx, u, "echo", key, InitializeBody)
			if err != nil || status != http.StatusOK {
				t.Fatalf("%s: warm: %d %v", p.Name, status, err)
			}
			if f.ctx.Err() != nil {
				t.Fatal(f.ctx.Err())
			}
		}
	}
}

// refusedEverywhere polls every data plane until it answers key with want,
// and returns how long each took after start.
func (f *fixture) refusedEverywhere(t *testing.T, key string, want int, start time.Time) string {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var out []string
	for i, u := range f.proxyURL {
		wg.Go(func() {
			_, err := f.waitStatus(u, key, want)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				t.Error(err)
				return
			}
			out = append(out, fmt.Sprintf("%s %s", f.c.Proxies[i].Name, ms(d)))
		})
	}
	wg.Wait()
	return strings.Join(out, ", ")
}

// TestDecisionCacheRevocation: with warm decision caches on both data
// planes and a reuse limit of ten minutes (on both planes, longer than the
// test may run), revoking a key, deleting a principal, withdrawing a
// principal's grant of a server and deleting the server are each refused
// on both data planes: the refusal can only come through the invalidation
// stream, whose counters say so. The elapsed times are logged.
func TestDecisionCacheRevocation(t *testing.T) {
	f := setupWith(t, Options{
		ControlArgs: []string{"--decision-cache-max-age", "10m"},
		ProxyArgs:   []string{"--decision-cache-max-age", "10m"},
	})
	admin := f.c.Admin(0)
	// Entries dropped by invalidations naming a principal, key or route
	// (a key change names the key and its principal: whichever comes first
	// drops the entry).
	invalidated := func() []float64 {
		var out []float64
		for _, p := range f.c.Proxies {
			v := 0.0
			for _, kind := range []string{"principal", "key", "route"} {
				v += f.metricValue(t, p, fmt.Sprintf(`mcpgate_dataplane_decision_cache_invalidations_total{kind=%q}`, kind))
			}
			out = append(out, v)
		}
		return out
	}
	grew := func(what string, before []float64) {
		t.Helper()
		for i, v := range invalidated() {
			if v <= before[i] {
				t.Errorf("%s: %s dropped no cached decision on an invalidation (%v → %v)", what, f.c.Proxies[i].Name, before[i], v)
			}
		}
	}
	var report []string

	// A key revoked on the other replica.
	f.warm(t, f.key)
	before := invalidated()
	start := time.Now()
	if _, err := f.c.Admin(1).Keys.RevokeKey(f.ctx, &configv1.RevokeKeyRequest{Id: f.id}); err != nil {
		t.Fatal(err)
	}
	report = append(report, "key revoked: 401 on "+f.refusedEverywhere(t, f.key, http.StatusUnauthorized, start))
	grew("key revoked", before)

	// A principal deleted.
	bobKey, _, err := admin.Principal(f.ctx, "bob", "echo")
	if err != nil {
		t.Fatal(err)
	}
	f.warm(t, bobKey)
	before = invalidated()
	start = time.Now()
	if _, err := admin.Principals.DeletePrincipal(f.ctx, &configv1.DeletePrincipalRequest{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	report = append(report, "principal deleted: 401 on "+f.refusedEverywhere(t, bobKey, http.StatusUnauthorized, start))
	grew("principal deleted", before)

	// A principal's grant of the server withdrawn.
	carol := &configv1.Principal{Name: "carol", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: configv1.Role_ROLE_MEMBER, Servers: []string{"echo"}}
	put, err := admin.Principals.PutPrincipal(f.ctx, &configv1.PutPrincipalRequest{Principal: carol})
	if err != nil {
		t.Fatal(err)
	}
	ck, err := admin.Keys.CreateKey(f.ctx, &configv1.CreateKeyRequest{Principal: "carol", Name: "clustertest"})
	if err != nil {
		t.Fatal(err)
	}
	carolKey := ck.GetKey()
	f.warm(t, carolKey)
	before = invalidated()
	start = time.Now()
	carol.Servers = []string{"other"}
	if _, err := admin.Principals.PutPrincipal(f.ctx, &configv1.PutPrincipalRequest{Principal: carol, ExpectedRevision: put.GetPrincipal().GetRevision()}); err != nil {
		t.Fatal(err)
	}
	report = append(report, "grant withdrawn: 404 on "+f.refusedEverywhere(t, carolKey, http.StatusNotFound, start))
	grew("grant withdrawn", before)

	// The server deleted.
	daveKey, _, err := admin.Principal(f.ctx, "dave", "echo")
	if err != nil {
		t.Fatal(err)
	}
	f.warm(t, daveKey)
	before = invalidated()
	start = time.Now()
	if _, err := admin.Servers.DeleteServer(f.ctx, &configv1.DeleteServerRequest{Name: "echo"}); err != nil {
		t.Fatal(err)
	}
	report = append(report, "server deleted: 404 on "+f.refusedEverywhere(t, daveKey, http.StatusNotFound, start))
	grew("server deleted", before)

	t.Logf("with warm caches and a 10 min reuse limit, refused via invalidation after: %s", strings.Join(report, "; "))
}

// TestDecisionCacheStreamDown: with warm decision caches (a reuse limit of
// ten minutes), killing every control plane ends the invalidation streams
// (polled on each data plane's stream gauge); from then on no cached
// decision is used: every request gets 503 with Retry-After and nothing
// reaches the upstream.
func TestDecisionCacheStreamDown(t *testing.T) {
	f := setupWith(t, Options{
		ControlArgs: []string{"--decision-cache-max-age", "10m"},
		ProxyArgs:   []string{"--decision-cache-max-age", "10m"},
	})
	f.warm(t, f.key)
	for _, n := range f.c.Controls {
		n.Kill()
	}
	const current = `mcpgate_dataplane_decision_cache_stream_current`
	for _, p := range f.c.Proxies {
		for f.metricValue(t, p, current) != 0 {
			if f.ctx.Err() != nil {
				t.Fatalf("%s: stream still current", p.Name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	before := f.up.Requests()
	for i, u := range f.proxyURL {
		for range 3 {
			status, retry, _, err := Post(f.ctx, u, "echo", f.key, InitializeBody)
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusServiceUnavailable || retry == "" {
				t.Errorf("%s: %d Retry-After %q, want 503 with Retry-After", f.c.Proxies[i].Name, status, retry)
			}
		}
	}
	if n := f.up.Requests() - before; n != 0 {
		t.Errorf("%d requests forwarded with every control plane down", n)
	}
}
