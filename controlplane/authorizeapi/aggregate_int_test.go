package authorizeapi_test

import (
	"testing"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// TestAggregateService: DescribeRoute answers for the root aggregate ("")
// and a virtual server; Authorize on /mcp and /team/mcp completes the
// members' decisions with their upstream credentials (alice's vault grant
// for Gmail), exactly as on Gmail's own route.
func TestAggregateService(t *testing.T) {
	srv := etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, srv, kr)
	seed(t, st)
	ctx := t.Context()
	rev, err := st.PutVirtualServer(ctx, &configv1.VirtualServer{Name: "team", Description: "the team", Scopes: []string{"team.use"},
		Members: []*configv1.VirtualServerMember{{Server: "Gmail"}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	c := client(serve(t, st), dataPlaneToken)
	r, err := c.DescribeRoute(ctx, &authorizev1.DescribeRouteRequest{Route: ""})
	if err != nil || !r.GetFound() || len(r.GetScopes()) != 0 {
		t.Errorf("DescribeRoute(root) = %v, %v", r, err)
	}
	r, err = c.DescribeRoute(ctx, &authorizev1.DescribeRouteRequest{Route: "team"})
	if err != nil || !r.GetFound() || r.GetDescription() != "the team" || len(r.GetScopes()) != 1 || r.GetScopes()[0] != "team.use" {
		t.Errorf("DescribeRoute(team) = %v, %v", r, err)
	}
	for _, route := range []string{"", "team"} {
		req := authorizeReq()
		req.Route, req.RootAggregate = route, route == ""
		resp, err := c.Authorize(ctx, req)
		if err != nil {
			t.Fatalf("%q: %v", route, err)
		}
		ms := resp.GetAggregate().GetMembers()
		if resp.GetDecision() != authorizev1.Decision_DECISION_ALLOW || resp.GetAggregate().GetName() != route || len(ms) != 1 {
			t.Fatalf("%q: %v", route, resp)
		}
		a := ms[0].GetDecision().GetAllow()
		if ms[0].GetServer() != "Gmail" || !a.GetVaultGrant() || len(a.GetUpstreamHeaders()) != 1 ||
			a.GetUpstreamHeaders()[0].GetValue() != "Bearer upstream-token" || a.GetUpstreamUrl() != "https://upstream.example/mcp" {
			t.Fatalf("%q: member %v", route, ms[0])
		}
	}
}
