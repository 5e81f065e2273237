package authorize_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

const (
	allowE = configv1.PolicyEffect_POLICY_EFFECT_ALLOW
	denyE  = configv1.PolicyEffect_POLICY_EFFECT_DENY
)

// policyState: servers gh (disallowed_tools delete_repo), wiki and other;
// groups release (gh), eng (gh, wiki); principals alice (own gh, wiki),
// bob (group release), carol (eng asserted by okta), dave (own other
// only); the rules below, in this order.
func policyState() *state {
	s := newState()
	s.servers["gh"] = &store.Server{Def: &configv1.McpServer{Name: "gh", Url: "https://up.example/gh", DisallowedTools: []string{"delete_repo"}}}
	s.servers["wiki"] = &store.Server{Def: &configv1.McpServer{Name: "wiki", Url: "https://up.example/wiki"}}
	s.servers["other"] = &store.Server{Def: &configv1.McpServer{Name: "other", Url: "https://up.example/other"}}
	s.groups["release"] = &configv1.Group{Name: "release", Servers: []string{"gh"}}
	s.groups["eng"] = &configv1.Group{Name: "eng", Servers: []string{"gh", "wiki"}}
	for _, p := range []*configv1.Principal{
		{Name: "alice", Servers: []string{"gh", "wiki"}},
		{Name: "bob", Groups: []string{"release"}},
		{Name: "carol", AssertedGroups: asserted("okta", "eng")},
		{Name: "dave", Servers: []string{"other"}},
	} {
		s.principals[p.GetName()] = p
		s.addKey(policyKey(p.GetName()), p.GetName(), false, time.Time{})
	}
	s.policies = &configv1.PolicySet{Policies: []*configv1.Policy{
		// Everyone may read GitHub, only release may merge.
		{Id: "release-merge", Principals: nil, Groups: []string{"release"}, Servers: []string{"gh"}, Tools: []string{"merge_*"}, Effect: allowE},
		// Nobody runs admin tools on g-anything.
		{Id: "no-admin", Principals: []string{"*"}, Servers: []string{"g?"}, Tools: []string{"admin_*"}, Effect: denyE},
		// Secret docs only for alice, on every server.
		{Id: "secret-docs", Principals: []string{"alice"}, Servers: []string{"*"}, Resources: []string{"file:///secret/*"}, Effect: allowE},
		// eng gets no prompts on gh; bob's release prompts are his.
		{Id: "eng-no-prompts", Groups: []string{"eng"}, Servers: []string{"gh"}, Prompts: []string{"*"}, Effect: denyE},
		{Id: "release-prompts", Principals: []string{"bob"}, Servers: []string{"gh"}, Prompts: []string{"release_?"}, Effect: allowE},
		// A rule for a server nobody here uses: no effect.
		{Id: "elsewhere", Principals: []string{"*"}, Servers: []string{"jira"}, Tools: []string{"*"}, Effect: denyE},
		// alice may merge too, but a deny of the same tool wins.
		{Id: "alice-merge", Principals: []string{"alice"}, Servers: []string{"gh"}, Tools: []string{"merge_pr", "merge_force"}, Effect: allowE},
		{Id: "no-force", Principals: []string{"a*"}, Servers: []string{"gh"}, Tools: []string{"merge_force"}, Effect: denyE},
	}}
	return s
}

func policyKey(name string) string {
	return "mcpg_Q" + name[:1] + "_" + strings.Repeat("0", 24)
}

func decidePolicy(t *testing.T, s *state, principal, route, method, name string) *authorizev1.AuthorizeResponse {
	t.Helper()
	req := &authorizev1.AuthorizeRequest{
		Route: route, PublicBaseUrl: base, HttpMethod: "POST", JsonrpcMethod: method,
		Credentials: &authorizev1.Credentials{ApiKey: policyKey(principal)},
	}
	switch method {
	case "tools/call":
		req.ToolName = name
	case "resources/read":
		req.ResourceUri = name
	case "prompts/get":
		req.PromptName = name
	}
	d, err := authorize.Decide(s, now, req)
	if err != nil {
		t.Fatalf("Decide(%s %s %s %s): %v", principal, route, method, name, err)
	}
	return d.Response
}

// TestPolicyRules: rules × principals × groups × methods through Decide:
// the decision, its reason and the rule id a DENY names; and the list
// filtering of the same principal and server (the ALLOW of tools/list,
// resources/list and prompts/list through api/wire.Visible) shows exactly
// the names whose call is allowed.
func TestPolicyRules(t *testing.T) {
	s := policyState()
	const (
		allow    = "allow"
		notFound = "not_found"
	)
	for _, tc := range []struct {
		principal, route, method, name string
		want, reason, rule             string
	}{
		// Tools: unrestricted ones follow the server grant.
		{"alice", "gh", "tools/call", "search", allow, authorize.ReasonAllowed, ""},
		{"bob", "gh", "tools/call", "search", allow, authorize.ReasonAllowed, ""},
		{"carol", "gh", "tools/call", "search", allow, authorize.ReasonAllowed, ""},
		{"dave", "gh", "tools/call", "search", notFound, authorize.ReasonNotGranted, ""},
		// merge_* is restricted to release (bob) and, for merge_pr, alice.
		{"bob", "gh", "tools/call", "merge_main", allow, authorize.ReasonAllowed, ""},
		{"alice", "gh", "tools/call", "merge_main", "deny", authorize.ReasonPolicyRestricted, "release-merge"},
		{"alice", "gh", "tools/call", "merge_pr", allow, authorize.ReasonAllowed, ""},
		{"carol", "gh", "tools/call", "merge_pr", "deny", authorize.ReasonPolicyRestricted, "release-merge"},
		// Deny wins over alice's own allow.
		{"alice", "gh", "tools/call", "merge_force", "deny", authorize.ReasonPolicyDenied, "no-force"},
		{"bob", "gh", "tools/call", "merge_force", allow, authorize.ReasonAllowed, ""},
		// A deny for everyone on g? servers, not on wiki.
		{"bob", "gh", "tools/call", "admin_reset", "deny", authorize.ReasonPolicyDenied, "no-admin"},
		{"alice", "wiki", "tools/call", "admin_reset", allow, authorize.ReasonAllowed, ""},
		// The server's own lists apply to everyone, before rules.
		{"bob", "gh", "tools/call", "delete_repo", "deny", authorize.ReasonToolForbidden, wire.RuleServerDisallowedTools},
		// Rules never grant a server.
		{"dave", "gh", "tools/call", "merge_pr", notFound, authorize.ReasonNotGranted, ""},
		{"dave", "other", "tools/call", "anything", allow, authorize.ReasonAllowed, ""},
		// Resources.
		{"alice", "gh", "resources/read", "file:///secret/plan.md", allow, authorize.ReasonAllowed, ""},
		{"alice", "wiki", "resources/read", "file:///secret/a/b", allow, authorize.ReasonAllowed, ""},
		{"carol", "wiki", "resources/read", "file:///secret/plan.md", "deny", authorize.ReasonPolicyRestricted, "secret-docs"},
		{"carol", "wiki", "resources/read", "file:///public/plan.md", allow, authorize.ReasonAllowed, ""},
		{"bob", "gh", "resources/read", "file:///secret", allow, authorize.ReasonAllowed, ""},
		// Prompts.
		{"carol", "gh", "prompts/get", "anything", "deny", authorize.ReasonPolicyDenied, "eng-no-prompts"},
		{"carol", "wiki", "prompts/get", "anything", allow, authorize.ReasonAllowed, ""},
		{"bob", "gh", "prompts/get", "release_1", allow, authorize.ReasonAllowed, ""},
		{"alice", "gh", "prompts/get", "release_1", "deny", authorize.ReasonPolicyRestricted, "release-prompts"},
		{"alice", "gh", "prompts/get", "release_12", allow, authorize.ReasonAllowed, ""},
		// Names of one kind are not matched by rules of another.
		{"alice", "gh", "tools/call", "file:///secret/x", allow, authorize.ReasonAllowed, ""},
		{"carol", "gh", "tools/call", "release_1", allow, authorize.ReasonAllowed, ""},
		// Other methods are not decided by rules.
		{"carol", "gh", "tools/list", "", allow, authorize.ReasonAllowed, ""},
		{"carol", "gh", "initialize", "", allow, authorize.ReasonAllowed, ""},
	} {
		name := strings.Join([]string{tc.principal, tc.route, tc.method, tc.name}, " ")
		r := decidePolicy(t, s, tc.principal, tc.route, tc.method, tc.name)
		got := map[authorizev1.Decision]string{
			authorizev1.Decision_DECISION_ALLOW: allow, authorizev1.Decision_DECISION_DENY: "deny", authorizev1.Decision_DECISION_NOT_FOUND: notFound,
		}[r.GetDecision()]
		if got != tc.want || r.GetReason() != tc.reason || r.GetRuleId() != tc.rule {
			t.Errorf("%s: %s %q rule %q, want %s %q rule %q", name, got, r.GetReason(), r.GetRuleId(), tc.want, tc.reason, tc.rule)
		}
	}

	// List filtering: what each principal sees on gh and wiki.
	names := map[authorizev1.PolicyKind][]string{
		authorizev1.PolicyKind_POLICY_KIND_TOOL:     {"search", "merge_main", "merge_pr", "merge_force", "admin_reset", "delete_repo"},
		authorizev1.PolicyKind_POLICY_KIND_RESOURCE: {"file:///secret/plan.md", "file:///public/plan.md"},
		authorizev1.PolicyKind_POLICY_KIND_PROMPT:   {"release_1", "draft"},
	}
	lists := map[authorizev1.PolicyKind]string{
		authorizev1.PolicyKind_POLICY_KIND_TOOL: "tools/list", authorizev1.PolicyKind_POLICY_KIND_RESOURCE: "resources/list", authorizev1.PolicyKind_POLICY_KIND_PROMPT: "prompts/list",
	}
	for _, tc := range []struct {
		principal, route string
		want             []string
	}{
		{"alice", "gh", []string{"search", "merge_pr", "file:///secret/plan.md", "file:///public/plan.md", "draft"}},
		{"bob", "gh", []string{"search", "merge_main", "merge_pr", "merge_force", "file:///public/plan.md", "release_1", "draft"}},
		{"carol", "gh", []string{"search", "file:///public/plan.md"}},
		{"carol", "wiki", []string{"search", "merge_main", "merge_pr", "merge_force", "admin_reset", "delete_repo", "file:///public/plan.md", "release_1", "draft"}},
	} {
		var got []string
		for _, k := range policyKinds {
			r := decidePolicy(t, s, tc.principal, tc.route, lists[k], "")
			for _, n := range names[k] {
				if ok, _ := visible(r.GetAllow(), k, n); ok {
					got = append(got, n)
				}
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s on %s sees %v, want %v", tc.principal, tc.route, got, tc.want)
		}
	}
}

var policyKinds = []authorizev1.PolicyKind{
	authorizev1.PolicyKind_POLICY_KIND_TOOL, authorizev1.PolicyKind_POLICY_KIND_RESOURCE, authorizev1.PolicyKind_POLICY_KIND_PROMPT,
}

var callOf = map[authorizev1.PolicyKind]string{
	authorizev1.PolicyKind_POLICY_KIND_TOOL: "tools/call", authorizev1.PolicyKind_POLICY_KIND_RESOURCE: "resources/read", authorizev1.PolicyKind_POLICY_KIND_PROMPT: "prompts/get",
}

// randomPolicies draws n rules over small alphabets, so that globs, names,
// principals and groups collide often.
func randomPolicies(rng *rand.Rand, n int) *configv1.PolicySet {
	pick := func(opts ...string) []string {
		var out []string
		for range rng.IntN(3) {
			out = append(out, opts[rng.IntN(len(opts))])
		}
		return out
	}
	globs := []string{"*", "a*", "?b", "ab", "a?", "*b", "b", "a*b", "ba", "file:///*", "file:///a?"}
	ps := &configv1.PolicySet{}
	for i := range n {
		p := &configv1.Policy{
			Id:         fmt.Sprintf("r%d", i),
			Principals: pick("alice", "bob", "*", "b*", "carol"),
			Groups:     pick("release", "eng", "r*"),
			Servers:    pick("gh", "g?", "*", "wiki"),
			Tools:      pick(globs...),
			Resources:  pick(globs...),
			Prompts:    pick(globs...),
			Effect:     []configv1.PolicyEffect{allowE, denyE}[rng.IntN(2)],
		}
		if len(p.Servers) == 0 {
			p.Servers = []string{"*"}
		}
		ps.Policies = append(ps.Policies, p)
	}
	return ps
}

// TestPolicyListIffCall is the property: for random rule sets, principals
// and names, a tool (resource, prompt) appears in the filtered list if and
// only if calling it is ALLOWed; and a refused call always names a rule.
func TestPolicyListIffCall(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 2026))
	names := []string{"ab", "a", "b", "bb", "ba", "aab", "abc", "", "delete_repo", "file:///ab", "file:///a"}
	counts := map[bool]int{}
	for iter := range 300 {
		s := policyState()
		s.policies = randomPolicies(rng, rng.IntN(8))
		for _, who := range []string{"alice", "bob", "carol"} {
			for _, route := range []string{"gh", "wiki"} {
				if who == "bob" && route == "wiki" {
					continue // not granted
				}
				for _, k := range policyKinds {
					list := decidePolicy(t, s, who, route, "tools/list", "")
					for _, n := range names {
						listed, _ := visible(list.GetAllow(), k, n)
						call := decidePolicy(t, s, who, route, callOf[k], n)
						allowed := call.GetDecision() == authorizev1.Decision_DECISION_ALLOW
						if listed != allowed {
							t.Fatalf("iteration %d: %s on %s, %s %q: listed %v, call %v %q\nrules: %v",
								iter, who, route, callOf[k], n, listed, call.GetDecision(), call.GetReason(), s.policies)
						}
						counts[allowed]++
						if !allowed && call.GetRuleId() == "" {
							t.Fatalf("iteration %d: %s %q refused without a rule id", iter, callOf[k], n)
						}
					}
				}
			}
		}
	}
	// Both outcomes are well represented, or the property says little.
	if counts[true] < 1000 || counts[false] < 1000 {
		t.Fatalf("allowed %d, refused %d: the random rules do not exercise both", counts[true], counts[false])
	}
}

// TestExplainTrace: Explain names the grant's source, every rule that
// targets the name (with whether it names the principal), the server's
// tool lists and the auth mode, and decides like Decide.
func TestExplainTrace(t *testing.T) {
	s := policyState()
	for _, tc := range []struct {
		principal, route, tool string
		decision               authorizev1.Decision
		steps                  []string
	}{
		{"bob", "gh", "merge_force", authorizev1.Decision_DECISION_ALLOW, []string{
			"grant gh group release",
			"rule release-merge allow tool merge_* (names bob)",
			"rule alice-merge allow tool merge_force (does not name bob)",
			"rule no-force deny tool merge_force (does not name bob)",
			"auth none no upstream credential",
		}},
		{"alice", "gh", "merge_force", authorizev1.Decision_DECISION_DENY, []string{
			"grant gh own servers",
			"rule release-merge allow tool merge_* (does not name alice)",
			"rule alice-merge allow tool merge_force (names alice)",
			"rule no-force deny tool merge_force (names alice)",
		}},
		{"carol", "gh", "delete_repo", authorizev1.Decision_DECISION_DENY, []string{
			"grant gh group eng (asserted by okta)",
			"server_tools disallowed_tools lists delete_repo",
			"rule - no rule targets tool delete_repo",
		}},
		{"dave", "gh", "search", authorizev1.Decision_DECISION_NOT_FOUND, []string{"grant gh not granted"}},
		{"dave", "nope", "search", authorizev1.Decision_DECISION_NOT_FOUND, []string{"grant nope no such server"}},
	} {
		var tr authorize.Trace
		d, err := authorize.Explain(s, tc.principal, &authorizev1.AuthorizeRequest{Route: tc.route, JsonrpcMethod: "tools/call", ToolName: tc.tool}, &tr)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, st := range tr.Steps {
			got = append(got, string(st.Kind)+" "+st.Subject+" "+st.Detail)
		}
		if d.Response.GetDecision() != tc.decision || !slices.Equal(got, tc.steps) {
			t.Errorf("%s %s %s: %v\n%s\nwant %v\n%s", tc.principal, tc.route, tc.tool, d.Response.GetDecision(), strings.Join(got, "\n"), tc.decision, strings.Join(tc.steps, "\n"))
		}
	}
	if _, err := authorize.Explain(s, "nobody", &authorizev1.AuthorizeRequest{Route: "gh", JsonrpcMethod: "tools/list"}, nil); err != authorize.ErrUnknownPrincipal {
		t.Errorf("unknown principal: %v", err)
	}
}

// visible is api/wire.Visible for an ALLOW.
func visible(a *authorizev1.Allow, kind authorizev1.PolicyKind, name string) (bool, string) {
	return wire.Visible(a.GetAllowedTools(), a.GetDisallowedTools(), a.GetVisibility(), kind, name)
}

// TestVisibilityNumbers pins api/wire's kind and effect numbers to the
// proto enums they stand for.
func TestVisibilityNumbers(t *testing.T) {
	for _, p := range [][2]int32{
		{int32(authorizev1.PolicyKind_POLICY_KIND_TOOL), wire.KindTool},
		{int32(authorizev1.PolicyKind_POLICY_KIND_RESOURCE), wire.KindResource},
		{int32(authorizev1.PolicyKind_POLICY_KIND_PROMPT), wire.KindPrompt},
		{int32(authorizev1.VisibilityEffect_VISIBILITY_EFFECT_ALLOW), wire.EffectAllow},
		{int32(authorizev1.VisibilityEffect_VISIBILITY_EFFECT_DENY), wire.EffectDeny},
		{int32(authorizev1.VisibilityEffect_VISIBILITY_EFFECT_RESTRICT), wire.EffectRestrict},
	} {
		if p[0] != p[1] {
			t.Errorf("proto %d, api/wire %d", p[0], p[1])
		}
	}
}
