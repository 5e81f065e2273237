package stacktest_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// TestGroupGrantsEndToEnd: through the data plane, a principal granted a
// server only through a group reaches it (200); removing the membership
// (admin-set or IdP-asserted) or deleting the group answers the very next
// request 404, exactly like a route that does not exist (issue 8 item 16).
func TestGroupGrantsEndToEnd(t *testing.T) {
	s := stacktest.Start(t)
	ctx := t.Context()
	user := configv1.PrincipalKind_PRINCIPAL_KIND_USER
	grp, err := s.Groups.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "team", Servers: []string{stacktest.EchoRoute}}})
	if err != nil {
		t.Fatal(err)
	}
	pat, err := s.Principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{Name: "pat", Kind: user, Groups: []string{"team"}}})
	if err != nil {
		t.Fatal(err)
	}
	key := s.NewKey("pat")
	h := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}, "X-Mcpgate-Api-Key": {key}}
	type answer struct {
		status             int
		ctype, cache, body string
	}
	call := func(route string) answer {
		t.Helper()
		resp, b := do(t, http.MethodPost, s.RouteURL(route), h, initializeBody)
		return answer{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"), strings.ReplaceAll(b, "/"+route+"/", "/ROUTE/")}
	}
	unknown := call("nosuch")
	if unknown.status != http.StatusNotFound {
		t.Fatalf("unknown route: %+v, want 404", unknown)
	}
	wantReach := func(step string) {
		t.Helper()
		if got := call(stacktest.EchoRoute); got.status != http.StatusOK || !strings.Contains(got.body, `"protocolVersion"`) {
			t.Fatalf("%s: echo answered %+v, want 200 with an initialize result", step, got)
		}
	}
	wantNotFound := func(step string) {
		t.Helper()
		if got := call(stacktest.EchoRoute); got != unknown {
			t.Fatalf("%s: echo answered\n %+v\nunknown route answers\n %+v", step, got, unknown)
		}
	}
	wantReach("admin-set membership")
	if got := call(stacktest.GateRoute); got != unknown {
		t.Fatalf("a server no group grants: %+v, want the unknown route's answer", got)
	}

	// The admin removes the membership: the next request is refused.
	if _, err := s.Principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{
		Principal: &configv1.Principal{Name: "pat", Kind: user}, ExpectedRevision: pat.GetPrincipal().GetRevision(),
	}); err != nil {
		t.Fatal(err)
	}
	wantNotFound("membership removed")

	// The identity provider asserts the group at sign-in, then stops.
	assert := func(groups ...string) {
		t.Helper()
		if err := s.Store.SetAssertedGroups(ctx, "pat", "demo-idp", groups, time.Now()); err != nil {
			t.Fatal(err)
		}
		waitCache(t, s, func(p *configv1.Principal) bool { return len(p.GetAssertedGroups()) == len(groups) })
	}
	assert("team")
	wantReach("asserted membership")
	assert()
	wantNotFound("assertion withdrawn")

	// Deleting the group ends every membership's grant at once.
	assert("team")
	wantReach("asserted again")
	if _, err := s.Groups.DeleteGroup(ctx, &configv1.DeleteGroupRequest{Name: "team", ExpectedRevision: grp.GetGroup().GetRevision()}); err != nil {
		t.Fatal(err)
	}
	wantNotFound("group deleted")
}

// waitCache waits (bounded) until the control plane's cache holds a
// principal pat for which cond holds: a store write made outside the admin
// API is not awaited by it.
func waitCache(t *testing.T, s *stacktest.Stack, cond func(*configv1.Principal) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for {
		if p, ok := s.Store.Principal("pat"); ok && cond(p) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("cache never showed the write")
		case <-time.After(5 * time.Millisecond):
		}
	}
}
