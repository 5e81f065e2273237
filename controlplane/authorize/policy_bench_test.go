package authorize_test

import (
	"fmt"
	"testing"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
)

// benchPolicies is n rules shaped like a real list: most target other
// servers (one per team), a tenth target gh, each naming a group or a
// principal and a few tool globs; every fifth is a deny.
func benchPolicies(n int) *configv1.PolicySet {
	ps := &configv1.PolicySet{}
	for i := range n {
		server := fmt.Sprintf("team%d-*", i%37)
		if i%10 == 0 {
			server = "gh"
		}
		effect := allowE
		if i%5 == 0 {
			effect = denyE
		}
		ps.Policies = append(ps.Policies, &configv1.Policy{
			Id:         fmt.Sprintf("rule-%d", i),
			Principals: []string{fmt.Sprintf("user%d", i)},
			Groups:     []string{fmt.Sprintf("group%d", i%50), "eng"},
			Servers:    []string{server},
			Tools:      []string{fmt.Sprintf("tool%d_*", i), "write_?"},
			Resources:  []string{fmt.Sprintf("file:///team%d/*", i)},
			Effect:     effect,
		})
	}
	return ps
}

// BenchmarkDecideRules: one tools/call decision with 0, 100 and 1,000
// rules (compiling the principal's visibility for the ALLOW and deciding
// the call).
func BenchmarkDecideRules(b *testing.B) {
	for _, n := range []int{0, 100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			s := policyState()
			s.policies = benchPolicies(n)
			req := &authorizev1.AuthorizeRequest{
				Route: "gh", PublicBaseUrl: base, HttpMethod: "POST", JsonrpcMethod: "tools/call", ToolName: "search",
				Credentials: &authorizev1.Credentials{ApiKey: policyKey("carol")},
			}
			b.ReportAllocs()
			for b.Loop() {
				d, err := authorize.Decide(s, now, req)
				if err != nil || d.Response.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
					b.Fatal(d.Response, err)
				}
			}
		})
	}
}

// BenchmarkCompileVisibility: compiling one principal's visibility for one
// server, what a decision costs on a memo miss (a new policy list, a new
// principal/server/groups combination).
func BenchmarkCompileVisibility(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			s := policyState()
			s.policies = benchPolicies(n)
			rules := s.PoliciesFor("gh")
			groups := []string{"eng"}
			b.ReportAllocs()
			for b.Loop() {
				if v := authorize.CompileVisibility(rules, "carol", groups); len(v) == 0 {
					b.Fatal("nothing compiled")
				}
			}
		})
	}
}
