package clustertest

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// etcdRevision reads the cluster's current revision: every write to etcd
// raises it by one.
func etcdRevision(t *testing.T, c *Cluster) int64 {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Etcd.ClientURLs, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/mcpgate/v1/\x00revision", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestRateLimitGlobal is the accuracy test of issue 11 on the production
// topology (three etcd members, two control planes, two data planes, each
// data plane spreading its Authorize calls over both control planes): a
// limit of 100 calls per minute, 300 tools/call spread over four sessions
// (two per data plane) from eight concurrent loops within one minute. The
// calls that reached the upstream (its own count) are between 90 and 110,
// every other one is a 429 with Retry-After and the JSON-RPC error naming
// the limit, etcd saw at most one write per 5 calls, and `mcpgate limits
// status` on the other control plane shows the minute used up.
func TestRateLimitGlobal(t *testing.T) {
	f := setup(t)
	if _, err := f.c.Admin(0).RateLimits.PutRateLimit(f.ctx, &configv1.PutRateLimitRequest{RateLimit: &configv1.RateLimit{
		Id: "echo-per-minute", Principals: []string{"alice"}, Servers: []string{"echo"}, Tools: []string{"echo"}, PerMinute: 100,
	}}); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.c.Admin(1).RateLimits.GetRateLimit(f.ctx, &configv1.GetRateLimitRequest{Id: "echo-per-minute"}); err == nil {
			break
		}
		select {
		case <-f.ctx.Done():
			t.Fatal("control plane 1 never saw the limit")
		case <-time.After(10 * time.Millisecond):
		}
	}
	sessions := f.clients(t, f.key, 2) // data plane 0, 0, 1, 1
	// The windows are UTC minutes: start with at least 30 s of this one
	// left, so that every call falls in it (a precondition, not an
	// assertion on time).
	if left := time.Until(time.Now().Truncate(time.Minute).Add(time.Minute)); left < 30*time.Second {
		time.Sleep(left + 50*time.Millisecond)
	}
	minute := time.Now().Truncate(time.Minute)

	before, upBefore := etcdRevision(t, f.c), f.up.Requests()
	const calls = 300
	var ok, limited atomic.Int64
	var mu sync.Mutex
	var other []string
	next := atomic.Int64{}
	refusal := regexp.MustCompile(`\A\{"jsonrpc":"2\.0","id":(\d+),"error":\{"code":-32029,"message":"rate limit echo-per-minute exceeded; retry in (\d+) s","data":\{"limit_id":"echo-per-minute","window":"minute","retry_after_seconds":(\d+)\}\}\}\z`)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= calls {
					return
				}
				s := sessions[i%int64(len(sessions))]
				base := f.proxyURL[(i%int64(len(sessions)))/2]
				id := strconv.FormatInt(1000+i, 10) // the upstream refuses an id in flight twice
				status, retry, body, err := PostSession(f.ctx, base, "echo", f.key, s.ID(),
					`{"jsonrpc":"2.0","id":`+id+`,"method":"tools/call","params":{"name":"echo","arguments":{"text":"raw"}}}`)
				m := refusal.FindStringSubmatch(body)
				switch {
				case err == nil && status == http.StatusOK:
					ok.Add(1)
				case err == nil && status == http.StatusTooManyRequests && m != nil && m[1] == id && m[2] == m[3] && retry == m[2]:
					limited.Add(1)
				default:
					mu.Lock()
					other = append(other, strings.Join([]string{http.StatusText(status), retry, body}, " | "))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	writes := etcdRevision(t, f.c) - before
	reached := f.up.Requests() - upBefore
	if end := time.Now().Truncate(time.Minute); !end.Equal(minute) {
		t.Fatalf("the calls straddled a minute boundary (%s → %s): the precondition failed", minute, end)
	}
	t.Logf("%d calls: %d admitted (%d reached the upstream), %d refused with 429; %d etcd writes", calls, ok.Load(), reached, limited.Load(), writes)
	if len(other) > 0 {
		t.Fatalf("%d calls neither 200 nor the 429 naming the limit, e.g. %s", len(other), other[0])
	}
	if ok.Load() < 90 || ok.Load() > 110 || reached != ok.Load() {
		t.Fatalf("admitted %d (upstream saw %d), want 90..110", ok.Load(), reached)
	}
	if writes > calls/5 {
		t.Fatalf("etcd saw %d writes for %d calls, want at most %d", writes, calls, calls/5)
	}

	out, code := f.c.CLI(f.ctx, 1, "limits", "status", "--principal", "alice")
	m := regexp.MustCompile(`\ALIMIT\s+SERVER\s+WINDOW\s+MAX\s+USED\s+REMAINING\s+RESETS_IN\necho-per-minute\s+echo\s+minute\s+100\s+(\d+)\s+(\d+)\s+\d+s\z`).FindStringSubmatch(out)
	if code != 0 || m == nil || m[1] != "100" || m[2] != "0" {
		t.Fatalf("limits status (exit %d):\n%s", code, out)
	}
}
