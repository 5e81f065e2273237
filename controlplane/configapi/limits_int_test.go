package configapi_test

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// TestRateLimitValidation: every invalid definition is refused with
// invalid_argument and its fixed text, nothing is stored, and members may
// not call the service.
func TestRateLimitValidation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ok := func(mod func(l *configv1.RateLimit)) *configv1.RateLimit {
		l := &configv1.RateLimit{Id: "writes", Principals: []string{"alice"}, Servers: []string{"github"}, Tools: []string{"create_*"}, PerMinute: 30}
		mod(l)
		return l
	}
	long := make([]string, 257)
	for i := range long {
		long[i] = "a"
	}
	for _, tc := range []struct {
		name string
		l    *configv1.RateLimit
		msg  string
	}{
		{"nil", nil, "rate_limit: required"},
		{"no id", ok(func(l *configv1.RateLimit) { l.Id = "" }), "id: required"},
		{"bad id", ok(func(l *configv1.RateLimit) { l.Id = "a b" }), "id: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"bad principal", ok(func(l *configv1.RateLimit) { l.Principals = []string{"alice", "x/y"} }), "principals[1]: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"star principal", ok(func(l *configv1.RateLimit) { l.Principals = []string{"*"} }), "principals[0]: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"bad group", ok(func(l *configv1.RateLimit) { l.Groups = []string{""} }), "groups[0]: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"bad server", ok(func(l *configv1.RateLimit) { l.Servers = []string{"*", "a b"} }), `servers[1]: must be a server name or "*"`},
		{"too many servers", ok(func(l *configv1.RateLimit) { l.Servers = long }), "servers: at most 256 entries"},
		{"empty glob", ok(func(l *configv1.RateLimit) { l.Tools = []string{""} }), "tools[0]: must be a glob of 1 to 128 printable ASCII characters"},
		{"glob with space", ok(func(l *configv1.RateLimit) { l.Tools = []string{"a", "b c"} }), "tools[1]: must be a glob of 1 to 128 printable ASCII characters"},
		{"long glob", ok(func(l *configv1.RateLimit) { l.Tools = []string{strings.Repeat("a", 129)} }), "tools[0]: must be a glob of 1 to 128 printable ASCII characters"},
		{"negative", ok(func(l *configv1.RateLimit) { l.PerSecond = -1 }), "per_second: must not be negative"},
		{"huge", ok(func(l *configv1.RateLimit) { l.PerDay = 1_000_000_000_001 }), "per_day: at most 1000000000000"},
		{"no bound", ok(func(l *configv1.RateLimit) { l.PerMinute = 0 }), "per_second, per_minute, per_day: at least one must be set"},
		{"long description", ok(func(l *configv1.RateLimit) { l.Description = strings.Repeat("d", 257) }), "description: longer than 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.admin().limits.PutRateLimit(ctx, &configv1.PutRateLimitRequest{RateLimit: tc.l})
			wantCode(t, err, connect.CodeInvalidArgument, tc.msg)
		})
	}
	for _, id := range []string{"", "a/b"} {
		_, err := e.admin().limits.GetRateLimit(ctx, &configv1.GetRateLimitRequest{Id: id})
		wantCode(t, err, connect.CodeInvalidArgument, "")
		_, err = e.admin().limits.DeleteRateLimit(ctx, &configv1.DeleteRateLimitRequest{Id: id})
		wantCode(t, err, connect.CodeInvalidArgument, "")
	}
	_, err := e.admin().limits.GetRateLimitUsage(ctx, &configv1.GetRateLimitUsageRequest{Principal: "a b"})
	wantCode(t, err, connect.CodeInvalidArgument, "principal: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
	_, err = e.admin().limits.GetRateLimitUsage(ctx, &configv1.GetRateLimitUsageRequest{Principal: "nobody"})
	wantCode(t, err, connect.CodeNotFound, "principal not found")
	if got := len(e.st.RateLimits()); got != 0 {
		t.Fatalf("%d limits stored after invalid requests, want 0", got)
	}
	e.putPrincipal("member", configv1.Role_ROLE_MEMBER)
	key, _ := e.createKey("member")
	_, err = e.as(key).limits.ListRateLimits(ctx, &configv1.ListRateLimitsRequest{})
	wantCode(t, err, connect.CodePermissionDenied, "")
	_, err = e.as(key).limits.GetRateLimitUsage(ctx, &configv1.GetRateLimitUsageRequest{Principal: "member"})
	wantCode(t, err, connect.CodePermissionDenied, "")
}

// TestRateLimitCRUDAndCAS: create, read back on another replica, replace
// by revision (a stale one is aborted), unchanged puts report no change,
// delete by revision.
func TestRateLimitCRUDAndCAS(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	l := &configv1.RateLimit{Id: "writes", Groups: []string{"devs"}, Servers: []string{"github"}, Tools: []string{"create_*"}, PerMinute: 30, PerDay: 500}
	res, err := e.admin().limits.PutRateLimit(ctx, &configv1.PutRateLimitRequest{RateLimit: l})
	if err != nil || !res.GetChanged() || res.GetRateLimit().GetRevision() == 0 {
		t.Fatalf("create: %v %v", res, err)
	}
	rev := res.GetRateLimit().GetRevision()
	_, err = e.admin().limits.PutRateLimit(ctx, &configv1.PutRateLimitRequest{RateLimit: l})
	wantCode(t, err, connect.CodeAborted, "rate limit already exists; pass its revision to replace it")

	other := e.newReplica()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := other.as(e.adminKey).limits.GetRateLimit(ctx, &configv1.GetRateLimitRequest{Id: "writes"})
		if err == nil {
			want := proto.CloneOf(l)
			want.Revision = rev
			if !proto.Equal(got.GetRateLimit(), want) {
				t.Fatalf("other replica: %v, want %v", got.GetRateLimit(), want)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other replica never saw the limit: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	same, err := e.admin().limits.PutRateLimit(ctx, &configv1.PutRateLimitRequest{RateLimit: l, ExpectedRevision: rev})
	if err != nil || same.GetChanged() || same.GetRateLimit().GetRevision() != rev {
		t.Fatalf("unchanged put: %v %v", same, err)
	}
	l2 := proto.CloneOf(l)
	l2.PerMinute = 10
	res2, err := e.admin().limits.PutRateLimit(ctx, &configv1.PutRateLimitRequest{RateLimit: l2, ExpectedRevision: rev})
	if err != nil || !res2.GetChanged() {
		t.Fatalf("replace: %v %v", res2, err)
	}
	_, err = e.admin().limits.PutRateLimit(ctx, &configv1.PutRateLimitRequest{RateLimit: l, ExpectedRevision: rev})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	list, err := e.admin().limits.ListRateLimits(ctx, &configv1.ListRateLimitsRequest{})
	if err != nil || len(list.GetRateLimits()) != 1 || list.GetRateLimits()[0].GetPerMinute() != 10 {
		t.Fatalf("list: %v %v", list, err)
	}
	_, err = e.admin().limits.DeleteRateLimit(ctx, &configv1.DeleteRateLimitRequest{Id: "writes", ExpectedRevision: rev})
	wantCode(t, err, connect.CodeAborted, "")
	if _, err := e.admin().limits.DeleteRateLimit(ctx, &configv1.DeleteRateLimitRequest{Id: "writes", ExpectedRevision: res2.GetRateLimit().GetRevision()}); err != nil {
		t.Fatal(err)
	}
	_, err = e.admin().limits.GetRateLimit(ctx, &configv1.GetRateLimitRequest{Id: "writes"})
	wantCode(t, err, connect.CodeNotFound, "rate limit not found")
	_, err = e.admin().limits.DeleteRateLimit(ctx, &configv1.DeleteRateLimitRequest{Id: "writes"})
	wantCode(t, err, connect.CodeNotFound, "rate limit not found")
	if !strings.Contains(e.logs.String(), `"kind":"rate_limit"`) {
		t.Errorf("no audit line for the rate limit writes:\n%s", e.logs.String())
	}
}
