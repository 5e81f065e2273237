package configapi_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/limits"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

func validPolicy(id string) *configv1.Policy {
	return &configv1.Policy{
		Id: id, Groups: []string{"release"}, Servers: []string{"github"}, Tools: []string{"merge_*"},
		Effect: configv1.PolicyEffect_POLICY_EFFECT_ALLOW,
	}
}

// TestPolicyValidation: every invalid list is refused whole with
// InvalidArgument and a fixed text naming the rule's index, and nothing
// is stored.
func TestPolicyValidation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	with := func(f func(p *configv1.Policy)) []*configv1.Policy {
		p := validPolicy("ok")
		f(p)
		return []*configv1.Policy{validPolicy("first"), p}
	}
	for _, tc := range []struct {
		name string
		ps   []*configv1.Policy
		msg  string
	}{
		{"empty rule", []*configv1.Policy{{}}, "policies[0].id: must match [a-z0-9][a-z0-9._-]{0,63}"},
		{"no id", with(func(p *configv1.Policy) { p.Id = "" }), "policies[1].id: must match [a-z0-9][a-z0-9._-]{0,63}"},
		{"bad id", with(func(p *configv1.Policy) { p.Id = "Has Space" }), "policies[1].id: must match [a-z0-9][a-z0-9._-]{0,63}"},
		{"duplicate id", with(func(p *configv1.Policy) { p.Id = "first" }), "policies[1].id: duplicate id"},
		{"no effect", with(func(p *configv1.Policy) { p.Effect = 0 }), "policies[1].effect: must be allow or deny"},
		{"unknown effect", with(func(p *configv1.Policy) { p.Effect = 7 }), "policies[1].effect: must be allow or deny"},
		{"nobody", with(func(p *configv1.Policy) { p.Groups = nil }), "policies[1]: names no principal or group"},
		{"no server", with(func(p *configv1.Policy) { p.Servers = nil }), "policies[1].servers: required"},
		{"nothing", with(func(p *configv1.Policy) { p.Tools = nil }), "policies[1]: names no tool, resource or prompt"},
		{"empty glob", with(func(p *configv1.Policy) { p.Tools = []string{"a", ""} }), "policies[1].tools[1]: empty glob"},
		{"class glob", with(func(p *configv1.Policy) { p.Resources = []string{"file:///[ab]"} }), `policies[1].resources[0]: glob uses a reserved character ([, ] or \)`},
		{"escape glob", with(func(p *configv1.Policy) { p.Prompts = []string{`a\*`} }), `policies[1].prompts[0]: glob uses a reserved character ([, ] or \)`},
		{"control glob", with(func(p *configv1.Policy) { p.Principals = []string{"a\nb"} }), "policies[1].principals[0]: glob holds invalid UTF-8 or control characters"},
		{"long glob", with(func(p *configv1.Policy) { p.Groups = []string{strings.Repeat("g", 257)} }), "policies[1].groups[0]: glob longer than 256 bytes"},
		{"long description", with(func(p *configv1.Policy) { p.Description = strings.Repeat("d", 257) }), "policies[1].description: longer than 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.admin().policies.PutPolicies(ctx, &configv1.PutPoliciesRequest{Policies: tc.ps})
			wantCode(t, err, connect.CodeInvalidArgument, tc.msg)
		})
	}
	if ps := e.st.Policies(); ps.GetRevision() != 0 || len(ps.GetPolicies()) != 0 {
		t.Fatalf("stored after invalid requests: %v %q", ps, e.rawValue(store.KindPolicy, store.PolicySetName))
	}
	_, err := e.admin().policies.DeletePolicy(ctx, &configv1.DeletePolicyRequest{Id: "Bad Id"})
	wantCode(t, err, connect.CodeInvalidArgument, "id: must match [a-z0-9][a-z0-9._-]{0,63}")
	_, err = e.admin().policies.PutPolicies(ctx, &configv1.PutPoliciesRequest{ExpectedRevision: -1})
	wantCode(t, err, connect.CodeInvalidArgument, "expected_revision: must not be negative")
	// Members may not call the policy or explain services.
	e.putPrincipal("member", configv1.Role_ROLE_MEMBER)
	key, _ := e.createKey("member")
	_, err = e.as(key).policies.ListPolicies(ctx, &configv1.ListPoliciesRequest{})
	wantCode(t, err, connect.CodePermissionDenied, "")
	_, err = e.as(key).explain.Explain(ctx, &configv1.ExplainRequest{Principal: "member", Server: "github", Tool: "x"})
	wantCode(t, err, connect.CodePermissionDenied, "")
	_, err = e.as("").policies.ListPolicies(ctx, &configv1.ListPoliciesRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "")
}

// TestPolicyReplaceAndDelete: the ordered list is replaced whole,
// compare-and-swap on its revision (0: none stored), an equal list is
// unchanged, and DeletePolicy removes one rule keeping the order.
func TestPolicyReplaceAndDelete(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	a := e.admin().policies
	list, err := a.ListPolicies(ctx, &configv1.ListPoliciesRequest{})
	if err != nil || list.GetRevision() != 0 || len(list.GetPolicies()) != 0 {
		t.Fatalf("empty list: %v %v", list, err)
	}
	three := []*configv1.Policy{validPolicy("a"), validPolicy("b"), validPolicy("c")}
	three[1].Effect = configv1.PolicyEffect_POLICY_EFFECT_DENY
	three[1].Principals, three[1].Groups = []string{"*"}, nil
	put, err := a.PutPolicies(ctx, &configv1.PutPoliciesRequest{Policies: three})
	if err != nil || !put.GetChanged() || put.GetRevision() == 0 {
		t.Fatalf("create: %v %v", put, err)
	}
	rev := put.GetRevision()
	// Stale or absent revisions are refused.
	_, err = a.PutPolicies(ctx, &configv1.PutPoliciesRequest{Policies: three})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	_, err = a.PutPolicies(ctx, &configv1.PutPoliciesRequest{Policies: three, ExpectedRevision: rev + 5})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	// The same list: unchanged.
	same, err := a.PutPolicies(ctx, &configv1.PutPoliciesRequest{Policies: three, ExpectedRevision: rev})
	if err != nil || same.GetChanged() || same.GetRevision() != rev {
		t.Fatalf("same list: %v %v", same, err)
	}
	list, err = a.ListPolicies(ctx, &configv1.ListPoliciesRequest{})
	if err != nil || list.GetRevision() != rev || len(list.GetPolicies()) != 3 {
		t.Fatalf("list: %v %v", list, err)
	}
	for i, p := range list.GetPolicies() {
		if !proto.Equal(p, three[i]) {
			t.Fatalf("policies[%d] = %v, want %v", i, p, three[i])
		}
	}
	// Delete keeps the others' order; a stale expected revision and an
	// unknown id are refused.
	_, err = a.DeletePolicy(ctx, &configv1.DeletePolicyRequest{Id: "b", ExpectedRevision: rev + 5})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	del, err := a.DeletePolicy(ctx, &configv1.DeletePolicyRequest{Id: "b", ExpectedRevision: rev})
	if err != nil || del.GetRevision() <= rev {
		t.Fatalf("delete: %v %v", del, err)
	}
	_, err = a.DeletePolicy(ctx, &configv1.DeletePolicyRequest{Id: "b"})
	wantCode(t, err, connect.CodeNotFound, "policy not found")
	got := e.st.Policies()
	if got.GetRevision() != del.GetRevision() || len(got.GetPolicies()) != 2 || got.GetPolicies()[0].GetId() != "a" || got.GetPolicies()[1].GetId() != "c" {
		t.Fatalf("after delete: %v", got)
	}
	// The list is one etcd object.
	if len(e.rawValue(store.KindPolicy, store.PolicySetName)) == 0 {
		t.Fatal("no policy list in etcd")
	}
	// Replacing with an empty list clears it.
	if _, err := a.PutPolicies(ctx, &configv1.PutPoliciesRequest{ExpectedRevision: del.GetRevision()}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.st.Policies().GetPolicies()); n != 0 {
		t.Fatalf("%d rules after clearing", n)
	}
}

// TestExplainService: the dry run through the admin API: decisions,
// reasons, rule ids and steps; nothing written (the store's revision does
// not move); bad requests get fixed InvalidArgument texts.
func TestExplainService(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: &configv1.McpServer{
		Name: "github", Url: "https://up.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_NONE, DisallowedTools: []string{"delete_repo"},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin().groups.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "release", Servers: []string{"github"}}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*configv1.Principal{
		{Name: "alice", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: []string{"github"}},
		{Name: "rel", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Groups: []string{"release"}},
	} {
		if _, err := e.admin().principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: p}); err != nil {
			t.Fatal(err)
		}
	}
	put, err := e.admin().policies.PutPolicies(ctx, &configv1.PutPoliciesRequest{Policies: []*configv1.Policy{validPolicy("release-merge")}})
	if err != nil {
		t.Fatal(err)
	}
	head := e.st.CacheStatus()
	ex := e.admin().explain
	for _, tc := range []struct {
		req                    *configv1.ExplainRequest
		decision, reason, rule string
		steps                  []string
	}{
		{&configv1.ExplainRequest{Principal: "rel", Server: "github", Tool: "merge_pr"}, "allow", "allowed", "",
			[]string{"grant|github|group release", "rule|release-merge|allow tool merge_* (names rel)", "auth|none|no upstream credential", "limit|none|no rate limit applies"}},
		{&configv1.ExplainRequest{Principal: "alice", Server: "github", Tool: "merge_pr"}, "deny", "not allowed by policy", "release-merge",
			[]string{"grant|github|own servers", "rule|release-merge|allow tool merge_* (does not name alice)"}},
		{&configv1.ExplainRequest{Principal: "alice", Server: "github", Tool: "delete_repo"}, "deny", "tool not allowed on this server", "server:disallowed_tools",
			[]string{"grant|github|own servers", "server_tools|disallowed_tools|lists delete_repo", "rule|-|no rule targets tool delete_repo"}},
		{&configv1.ExplainRequest{Principal: "alice", Server: "github", Method: "tools/list"}, "allow", "allowed", "",
			[]string{"grant|github|own servers", "auth|none|no upstream credential", "limit|none|no rate limit applies"}},
		{&configv1.ExplainRequest{Principal: "alice", Server: "nope", Tool: "x"}, "not_found", "unknown route", "",
			[]string{"grant|nope|no such server"}},
	} {
		res, err := ex.Explain(ctx, tc.req)
		if err != nil {
			t.Fatalf("%v: %v", tc.req, err)
		}
		var steps []string
		for _, s := range res.GetSteps() {
			steps = append(steps, s.GetKind()+"|"+s.GetSubject()+"|"+s.GetDetail())
		}
		if res.GetDecision() != tc.decision || res.GetReason() != tc.reason || res.GetRuleId() != tc.rule || strings.Join(steps, "\n") != strings.Join(tc.steps, "\n") {
			t.Errorf("%v:\n got %s %q %q\n%s\nwant %s %q %q\n%s", tc.req, res.GetDecision(), res.GetReason(), res.GetRuleId(), strings.Join(steps, "\n"),
				tc.decision, tc.reason, tc.rule, strings.Join(tc.steps, "\n"))
		}
	}
	// token_exchange: a challenge until the person's identity provider
	// token is stored, then an allow (nothing is exchanged).
	if _, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: &configv1.McpServer{
		Name: "tx", Url: "https://up.example/tx", AuthType: configv1.AuthType_AUTH_TYPE_OAUTH2,
		Oauth2Flow: configv1.OAuth2Flow_O_AUTH2_FLOW_TOKEN_EXCHANGE, TokenUrl: "https://up.example/token", ClientId: "gw", ClientSecret: "s",
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin().principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: "tina", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: []string{"tx"},
	}}); err != nil {
		t.Fatal(err)
	}
	res, err := ex.Explain(ctx, &configv1.ExplainRequest{Principal: "tina", Server: "tx", Tool: "t"})
	if err != nil || res.GetDecision() != "challenge" || res.GetReason() != "no upstream grant" ||
		res.GetSteps()[len(res.GetSteps())-1].GetDetail() != "no identity provider token: the person must sign in with the identity provider" {
		t.Fatalf("token exchange without IdP token: %v %v", res, err)
	}
	tina, _ := e.st.Principal("tina")
	if _, err := e.st.SaveIdPToken(ctx, "tina", tina.GetUid(), "okta", &storev1.IdPToken{SubjectToken: "id-token", SubjectTokenType: "urn:ietf:params:oauth:token-type:id_token", Expiry: timestamppb.New(time.Now().Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	res, err = ex.Explain(ctx, &configv1.ExplainRequest{Principal: "tina", Server: "tx", Tool: "t"})
	// The auth step, then the limit step of an allow.
	if err != nil || res.GetDecision() != "allow" || len(res.GetSteps()) < 2 ||
		res.GetSteps()[len(res.GetSteps())-2].GetDetail() != "identity provider token of okta stored, exchanged at call time" ||
		res.GetSteps()[len(res.GetSteps())-1].GetDetail() != "no rate limit applies" {
		t.Fatalf("token exchange with IdP token: %v %v", res, err)
	}
	head = e.st.CacheStatus()

	for _, tc := range []struct {
		req  *configv1.ExplainRequest
		code connect.Code
		msg  string
	}{
		{&configv1.ExplainRequest{Server: "github", Tool: "x"}, connect.CodeInvalidArgument, "principal: required"},
		{&configv1.ExplainRequest{Principal: "alice", Tool: "x"}, connect.CodeInvalidArgument, "server: required"},
		{&configv1.ExplainRequest{Principal: "alice", Server: "github"}, connect.CodeInvalidArgument, "method: required without a tool, resource or prompt"},
		{&configv1.ExplainRequest{Principal: "alice", Server: "github", Tool: "x", Prompt: "y"}, connect.CodeInvalidArgument, "tool, resource, prompt: at most one"},
		{&configv1.ExplainRequest{Principal: "alice", Server: "github", Tool: "x", Resource: "y", Method: "tools/call"}, connect.CodeInvalidArgument, "tool, resource, prompt: at most one"},
		{&configv1.ExplainRequest{Principal: "alice", Server: "github", Tool: "x", Method: "prompts/get"}, connect.CodeInvalidArgument, "method: does not match the tool, resource or prompt given"},
		{&configv1.ExplainRequest{Principal: "alice", Server: "github", Tool: "x\n"}, connect.CodeInvalidArgument, "tool, resource, prompt: longer than 1024 bytes or holds control characters"},
		{&configv1.ExplainRequest{Principal: "alice", Server: "github", Method: "tools list"}, connect.CodeInvalidArgument, "method: not a JSON-RPC method name"},
		{&configv1.ExplainRequest{Principal: "ghost", Server: "github", Tool: "x"}, connect.CodeNotFound, "principal not found"},
	} {
		_, err := ex.Explain(ctx, tc.req)
		wantCode(t, err, tc.code, tc.msg)
	}
	if got := e.st.CacheStatus(); got.Revision != head.Revision || got.Revision < put.GetRevision() {
		t.Fatalf("explain wrote: revision %d → %d", head.Revision, got.Revision)
	}
}

// TestExplainRateLimited: explain names every rate limit that applies to
// the call with its usage, counts nothing itself, and answers rate_limited
// once a window is used up (by a real count, through another limiter on
// the same etcd, as another replica's calls would).
func TestExplainRateLimited(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	if _, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: &configv1.McpServer{
		Name: "github", Url: "https://up.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_NONE,
	}}); err != nil {
		t.Fatal(err)
	}
	alice := &configv1.Principal{Name: "alice", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: []string{"github"}}
	if _, err := e.admin().principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: alice}); err != nil {
		t.Fatal(err)
	}
	rev, err := e.st.PutRateLimit(ctx, &configv1.RateLimit{Id: "merges", Principals: []string{"alice"}, Servers: []string{"github"}, Tools: []string{"merge_*"}, PerDay: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	ex := e.admin().explain
	explain := func(tool string) (string, []string) {
		t.Helper()
		res, err := ex.Explain(ctx, &configv1.ExplainRequest{Principal: "alice", Server: "github", Tool: tool})
		if err != nil {
			t.Fatal(err)
		}
		var steps []string
		for _, s := range res.GetSteps() {
			if s.GetKind() == "limit" {
				steps = append(steps, s.GetSubject()+"|"+s.GetDetail())
			}
		}
		return res.GetDecision() + "|" + res.GetReason(), steps
	}
	if d, steps := explain("search"); d != "allow|allowed" || strings.Join(steps, ";") != "none|no rate limit applies" {
		t.Fatalf("search: %s %v", d, steps)
	}
	// Explaining twice counts nothing.
	for range 2 {
		d, steps := explain("merge_pr")
		if d != "allow|allowed" || len(steps) != 1 || !strings.HasPrefix(steps[0], "merges|0 of 1 per day used, 1 left, window resets in ") {
			t.Fatalf("merge_pr before any call: %s %v", d, steps)
		}
	}
	other := limits.New(e.st, slog.New(slog.DiscardHandler))
	applied, refused, err := other.Check(ctx, time.Now(), "alice", func() ([]string, bool) { return nil, true }, "github", "merge_pr")
	if err != nil || !applied || refused != nil {
		t.Fatalf("Check: applied %v refused %v err %v", applied, refused, err)
	}
	d, steps := explain("merge_pr")
	if d != "rate_limited|rate limit merges exhausted" || len(steps) != 1 || !strings.HasPrefix(steps[0], "merges|1 of 1 per day used, 0 left, window resets in ") {
		t.Fatalf("merge_pr after the call: %s %v", d, steps)
	}
}
