package authorizeapi_test

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorizeapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

func putRateLimit(t testing.TB, st *store.Store, l *configv1.RateLimit) {
	t.Helper()
	rev, err := st.PutRateLimit(context.Background(), l, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
}

// TestAuthorizeRateLimited: every ALLOW a limit applies to is marked
// uncacheable; the call over the limit is DECISION_RATE_LIMITED naming the
// limit, its window and the seconds to the window's end, with the
// principal and key but no Allow (nothing upstream); calls the limit does
// not apply to are neither counted nor marked.
func TestAuthorizeRateLimited(t *testing.T) {
	srv := etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, srv, kr)
	seed(t, st)
	putRateLimit(t, st, &configv1.RateLimit{Id: "sends", Principals: []string{"alice"}, Servers: []string{"Gmail"}, Tools: []string{"send_*"}, PerMinute: 3})
	now := time.Date(2026, 11, 30, 9, 15, 20, 0, time.UTC)
	svc := authorizeapi.New(st, slog.New(slog.DiscardHandler), authorizeapi.WithClock(func() time.Time { return now }))
	ctx := t.Context()
	call := func(tool string) *authorizev1.AuthorizeRequest {
		r := authorizeReq()
		r.JsonrpcMethod, r.ToolName = "tools/call", tool
		return r
	}
	for i := range 3 {
		res, err := svc.Authorize(ctx, call("send_mail"))
		if err != nil || res.GetDecision() != authorizev1.Decision_DECISION_ALLOW || !res.GetUncacheable() {
			t.Fatalf("call %d: %v %v, want an uncacheable ALLOW", i, res, err)
		}
	}
	res, err := svc.Authorize(ctx, call("send_draft"))
	if err != nil {
		t.Fatal(err)
	}
	want := &authorizev1.AuthorizeResponse{
		Decision:    authorizev1.Decision_DECISION_RATE_LIMITED,
		RateLimited: &authorizev1.RateLimited{LimitId: "sends", RetryAfterSeconds: 40, Window: "minute"},
		Principal:   "alice",
		KeyPrefix:   apiKey[:8],
		KeyId:       store.KeyID(store.HashKey(apiKey)),
		Reason:      authorizeapi.ReasonRateLimited,
	}
	if !proto.Equal(want, res) {
		t.Fatalf("4th call: got %s\nwant %s", protojson.Format(res), protojson.Format(want))
	}
	for _, r := range []*authorizev1.AuthorizeRequest{call("read_mail"), authorizeReq()} {
		res, err := svc.Authorize(ctx, r)
		if err != nil || res.GetDecision() != authorizev1.Decision_DECISION_ALLOW || res.GetUncacheable() {
			t.Fatalf("%s %s: %v %v, want a cacheable ALLOW", r.GetJsonrpcMethod(), r.GetToolName(), res, err)
		}
	}
	// Denied and challenged calls are not counted: a wrong key is a
	// CHALLENGE whatever the limits.
	bad := call("send_mail")
	bad.Credentials = &authorizev1.Credentials{ApiKey: "mcpg_unknown_0000000000000000"}
	if res, err := svc.Authorize(ctx, bad); err != nil || res.GetDecision() != authorizev1.Decision_DECISION_CHALLENGE || res.GetUncacheable() {
		t.Fatalf("unknown key: %v %v", res, err)
	}
	// The next minute admits again.
	now = now.Add(40 * time.Second)
	if res, err := svc.Authorize(ctx, call("send_mail")); err != nil || res.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
		t.Fatalf("next minute: %v %v", res, err)
	}
}

// BenchmarkAuthorizeRateLimit measures Authorize (store cache, vault grant
// read, no network) on a store without rate limits and on one where a
// limit applies to the call (a day quota whose chunk is large enough that
// etcd is written once). On a shared machine the load changes from one
// moment to the next, so the two alternate in blocks of 64 calls, each
// block timed, and the medians of the blocks are compared: one op is one
// call of each. It reports each one's median ns per decision and their
// ratio.
func BenchmarkAuthorizeRateLimit(b *testing.B) {
	service := func(limited bool) *authorizeapi.Service {
		kr, err := vault.Generate()
		if err != nil {
			b.Fatal(err)
		}
		st := newStore(b, etcdtest.Start(b), kr)
		seed(b, st)
		if limited {
			putRateLimit(b, st, &configv1.RateLimit{Id: "others", Principals: []string{"bob"}, PerSecond: 10})
			putRateLimit(b, st, &configv1.RateLimit{Id: "sends", Principals: []string{"alice"}, Tools: []string{"send_*"}, PerDay: 1_000_000_000_000})
		}
		return authorizeapi.New(st, slog.New(slog.DiscardHandler))
	}
	plain, limited := service(false), service(true)
	req := authorizeReq()
	req.JsonrpcMethod, req.ToolName = "tools/call", "send_mail"
	const block = 64
	run := func(svc *authorizeapi.Service, uncacheable bool) time.Duration {
		start := time.Now()
		for range block {
			res, err := svc.Authorize(context.Background(), req)
			if err != nil || res.GetDecision() != authorizev1.Decision_DECISION_ALLOW || res.GetUncacheable() != uncacheable {
				b.Fatal(res, err)
			}
		}
		return time.Since(start)
	}
	var tPlain, tLimited []time.Duration
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if n%block == 0 {
			if (n/block)%2 == 0 {
				tPlain = append(tPlain, run(plain, false))
				tLimited = append(tLimited, run(limited, true))
			} else {
				tLimited = append(tLimited, run(limited, true))
				tPlain = append(tPlain, run(plain, false))
			}
		}
		n++
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2]) / block
	}
	mp, ml := median(tPlain), median(tLimited)
	b.ReportMetric(mp, "ns/no-limit")
	b.ReportMetric(ml, "ns/limit")
	b.ReportMetric(ml/mp, "limit/no-limit")
}
