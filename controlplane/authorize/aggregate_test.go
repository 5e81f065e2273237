package authorize_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// aggState is a state with virtual servers: an authorize.AggregateState.
type aggState struct {
	*state
	virtual map[string]*configv1.VirtualServer
}

func (s aggState) Servers() []*store.Server {
	out := make([]*store.Server, 0, len(s.servers))
	for _, v := range s.servers {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b *store.Server) int {
		if a.Def.GetName() < b.Def.GetName() {
			return -1
		}
		return 1
	})
	return out
}

func (s aggState) VirtualServer(n string) (*configv1.VirtualServer, bool) {
	v, ok := s.virtual[n]
	return v, ok
}

const (
	keyVic   = "mcpg_vic___0000000000000000"
	keyAlAgg = "mcpg_alagg_0000000000000000"
)

func aggregateState() aggState {
	s := aggState{state: newState(), virtual: map[string]*configv1.VirtualServer{}}
	add := func(name string, t configv1.AuthType, flow configv1.OAuth2Flow, value string, disallowed ...string) {
		s.servers[name] = &store.Server{
			Def:     &configv1.McpServer{Name: name, Url: "https://upstream.example/" + name, AuthType: t, Oauth2Flow: flow, Scopes: []string{name + ".use"}, DisallowedTools: disallowed},
			Secrets: &storev1.ServerSecrets{AuthValue: value},
		}
	}
	add("echo", configv1.AuthType_AUTH_TYPE_NONE, 0, "", "delete")
	add("notes", configv1.AuthType_AUTH_TYPE_BEARER_TOKEN, 0, "s3cret")
	add("Gmail", configv1.AuthType_AUTH_TYPE_OAUTH2, configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE, "")
	add("cc", configv1.AuthType_AUTH_TYPE_OAUTH2, configv1.OAuth2Flow_O_AUTH2_FLOW_CLIENT_CREDENTIALS, "")
	add("pass", configv1.AuthType_AUTH_TYPE_PASSTHROUGH, 0, "")
	add("broken", configv1.AuthType_AUTH_TYPE_API_KEY, 0, "") // no auth_value: misconfigured
	s.virtual["team"] = &configv1.VirtualServer{Name: "team", Scopes: []string{"team.use"}, Members: []*configv1.VirtualServerMember{
		{Server: "echo", IncludeTools: []string{"echo", "search", "delete"}, Renames: map[string]string{"search": "find"}},
		{Server: "notes", ToolPrefix: proto.String("n.")},
		{Server: "Gmail"},
		{Server: "pass"},
		{Server: "gone"}, // deleted since: left out
	}}
	s.virtual["solo"] = &configv1.VirtualServer{Name: "solo", Members: []*configv1.VirtualServerMember{{Server: "broken"}}}
	s.principals["alice"] = &configv1.Principal{Name: "alice", Servers: []string{"echo", "notes", "Gmail", "cc", "pass", "broken", "solo"}}
	s.principals["vic"] = &configv1.Principal{Name: "vic", Servers: []string{"team"}}
	s.principals["carol"] = &configv1.Principal{Name: "carol", Servers: []string{"elsewhere"}}
	s.addKey(keyAlAgg, "alice", false, time.Time{})
	s.addKey(keyVic, "vic", false, time.Time{})
	s.addKey(keyCarol, "carol", false, time.Time{})
	for _, r := range []string{"", "team", "echo"} {
		s.addSourcedToken("tok-vic-"+r, "vic", "", r, keyVic, base)
		s.addSourcedToken("tok-alice-"+r, "alice", "", r, keyAlAgg, base)
	}
	return s
}

// member is the expected outcome of one member.
type member struct {
	server, prefix, upstream string
	decision                 authorizev1.Decision
	reason                   string
	headers                  []*authorizev1.Header
	connect                  bool
}

func aggReq(route string, key string, method, name string) *authorizev1.AuthorizeRequest {
	r := &authorizev1.AuthorizeRequest{
		Route: route, RootAggregate: route == "", Credentials: &authorizev1.Credentials{ApiKey: key},
		HttpMethod: "POST", JsonrpcMethod: method, PublicBaseUrl: base,
	}
	switch method {
	case "tools/call":
		r.ToolName = name
	case "prompts/get":
		r.PromptName = name
	}
	return r
}

func TestAggregateDecision(t *testing.T) {
	allow := authorizev1.Decision_DECISION_ALLOW
	chal := authorizev1.Decision_DECISION_CHALLENGE
	deny := authorizev1.Decision_DECISION_DENY
	rootAlice := []member{
		{server: "Gmail", prefix: "Gmail__", decision: chal, reason: authorize.ReasonNoGrant, connect: true},
		{server: "cc", prefix: "cc__", decision: allow, headers: hdr("Authorization", "Bearer minted")},
		{server: "echo", prefix: "echo__", decision: allow},
		{server: "notes", prefix: "notes__", decision: allow, headers: hdr("Authorization", "Bearer s3cret")},
		{server: "pass", prefix: "pass__", decision: deny, reason: authorize.ReasonPassthroughMissing},
	}
	team := []member{
		{server: "echo", prefix: "echo__", decision: allow},
		{server: "notes", prefix: "n.", decision: allow, headers: hdr("Authorization", "Bearer s3cret")},
		{server: "Gmail", prefix: "Gmail__", decision: chal, reason: authorize.ReasonNoGrant, connect: true},
		{server: "pass", prefix: "pass__", decision: deny, reason: authorize.ReasonPassthroughMissing},
	}
	for _, c := range []struct {
		name     string
		req      *authorizev1.AuthorizeRequest
		grant    bool // alice and vic have an active Gmail grant
		decision authorizev1.Decision
		reason   string
		members  []member
		omitted  []string
	}{
		{name: "root/no credential", req: aggReq("", "", "initialize", ""), decision: chal, reason: authorize.ReasonNoCredential},
		{name: "root/initialize", req: aggReq("", keyAlAgg, "initialize", ""), decision: allow, members: rootAlice, omitted: []string{"broken"}},
		{name: "root/tools/list with grant", req: aggReq("", keyAlAgg, "tools/list", ""), grant: true, decision: allow, omitted: []string{"broken"},
			members: append([]member{{server: "Gmail", prefix: "Gmail__", decision: allow, headers: hdr("Authorization", "Bearer up-gmail")}}, rootAlice[1:]...)},
		{name: "root/granted only a virtual server", req: aggReq("", keyVic, "initialize", ""), decision: authorizev1.Decision_DECISION_NOT_FOUND, reason: authorize.ReasonNotGranted},
		{name: "root/granted nothing", req: aggReq("", keyCarol, "initialize", ""), decision: authorizev1.Decision_DECISION_NOT_FOUND, reason: authorize.ReasonNotGranted},
		{name: "root/tools/call", req: aggReq("", keyAlAgg, "tools/call", "notes__add"), decision: allow,
			members: []member{{server: "notes", prefix: "notes__", upstream: "add", decision: allow, headers: hdr("Authorization", "Bearer s3cret")}}},
		{name: "root/tools/call forbidden by the member", req: aggReq("", keyAlAgg, "tools/call", "echo__delete"), decision: allow,
			members: []member{{server: "echo", prefix: "echo__", upstream: "delete", decision: deny, reason: authorize.ReasonToolForbidden}}},
		{name: "root/tools/call member without grant", req: aggReq("", keyAlAgg, "tools/call", "Gmail__send"), decision: allow,
			members: []member{{server: "Gmail", prefix: "Gmail__", upstream: "send", decision: chal, reason: authorize.ReasonNoGrant, connect: true}}},
		{name: "root/tools/call unknown name", req: aggReq("", keyAlAgg, "tools/call", "nobody__x"), decision: allow},
		{name: "root/tools/call bare upstream name", req: aggReq("", keyAlAgg, "tools/call", "add"), decision: allow},
		{name: "root/prompts/get", req: aggReq("", keyAlAgg, "prompts/get", "echo__greet"), decision: allow,
			members: []member{{server: "echo", prefix: "echo__", upstream: "greet", decision: allow}}},
		{name: "root/member", req: func() *authorizev1.AuthorizeRequest {
			r := aggReq("", keyAlAgg, "resources/read", "")
			r.Member, r.ResourceUri = "notes", "notes://a"
			return r
		}(), decision: allow, members: []member{{server: "notes", prefix: "notes__", decision: allow, headers: hdr("Authorization", "Bearer s3cret")}}},
		{name: "root/member not usable", req: func() *authorizev1.AuthorizeRequest {
			r := aggReq("", keyAlAgg, "notifications/cancelled", "")
			r.Member = "secret"
			return r
		}(), decision: allow},
		{name: "virtual/not granted", req: aggReq("team", keyAlAgg, "initialize", ""), decision: authorizev1.Decision_DECISION_NOT_FOUND, reason: authorize.ReasonNotGranted},
		{name: "virtual/granted nothing", req: aggReq("team", keyCarol, "initialize", ""), decision: authorizev1.Decision_DECISION_NOT_FOUND, reason: authorize.ReasonNotGranted},
		{name: "virtual/no credential", req: aggReq("team", "", "initialize", ""), decision: chal, reason: authorize.ReasonNoCredential},
		{name: "virtual/initialize", req: aggReq("team", keyVic, "initialize", ""), decision: allow, members: team},
		{name: "virtual/tools/list with grant", req: aggReq("team", keyVic, "tools/list", ""), grant: true, decision: allow,
			members: append(slices.Clone(team[:2]), member{server: "Gmail", prefix: "Gmail__", decision: allow, headers: hdr("Authorization", "Bearer up-gmail")}, team[3])},
		{name: "virtual/tools/call renamed", req: aggReq("team", keyVic, "tools/call", "find"), decision: allow,
			members: []member{{server: "echo", prefix: "echo__", upstream: "search", decision: allow}}},
		{name: "virtual/tools/call renamed away", req: aggReq("team", keyVic, "tools/call", "echo__search"), decision: allow},
		{name: "virtual/tools/call outside include_tools", req: aggReq("team", keyVic, "tools/call", "echo__other"), decision: allow},
		{name: "virtual/tools/call prefix override", req: aggReq("team", keyVic, "tools/call", "n.add"), decision: allow,
			members: []member{{server: "notes", prefix: "n.", upstream: "add", decision: allow, headers: hdr("Authorization", "Bearer s3cret")}}},
		{name: "virtual/tools/call default prefix not used when overridden", req: aggReq("team", keyVic, "tools/call", "notes__add"), decision: allow},
		{name: "virtual/tools/call forbidden by the member", req: aggReq("team", keyVic, "tools/call", "echo__delete"), decision: allow,
			members: []member{{server: "echo", prefix: "echo__", upstream: "delete", decision: deny, reason: authorize.ReasonToolForbidden}}},
		{name: "virtual/prompts/get renamed", req: aggReq("team", keyVic, "prompts/get", "find"), decision: allow,
			members: []member{{server: "echo", prefix: "echo__", upstream: "search", decision: allow}}},
		{name: "virtual/member", req: func() *authorizev1.AuthorizeRequest {
			r := aggReq("team", keyVic, "", "")
			r.HttpMethod, r.Member = "DELETE", "Gmail"
			return r
		}(), decision: allow, members: []member{{server: "Gmail", prefix: "Gmail__", decision: chal, reason: authorize.ReasonNoGrant, connect: true}}},
		{name: "virtual/misconfigured member left out", req: aggReq("solo", keyAlAgg, "tools/list", ""), decision: allow, omitted: []string{"broken"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := aggregateState()
			if c.grant {
				st.addGrant("alice", "Gmail", vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, "up-gmail", now.Add(time.Hour))
				st.addGrant("vic", "Gmail", vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, "up-gmail", now.Add(time.Hour))
			}
			d, err := authorize.Decide(st, now, c.req)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if !slices.Equal(d.Omitted, c.omitted) {
				t.Errorf("omitted %v, want %v", d.Omitted, c.omitted)
			}
			resp, err := newAuthorizer(st, withClock(clock), withMachineTokens(fixedMachine("minted"))).Authorize(context.Background(), c.req)
			if err != nil {
				t.Fatalf("Authorize: %v", err)
			}
			if resp.GetDecision() != c.decision || (c.reason != "" && resp.GetReason() != c.reason) {
				t.Fatalf("decision %v %q, want %v %q", resp.GetDecision(), resp.GetReason(), c.decision, c.reason)
			}
			agg := resp.GetAggregate()
			if c.decision != allow {
				if agg != nil {
					t.Fatalf("aggregate on a %v: %v", resp.GetDecision(), agg)
				}
				return
			}
			if agg == nil {
				t.Fatal("ALLOW of an aggregate route without its aggregate")
			}
			if want := c.req.GetRoute(); agg.GetName() != want {
				t.Errorf("aggregate name %q, want %q", agg.GetName(), want)
			}
			if resp.GetAllow() != nil {
				t.Errorf("aggregate ALLOW carries a server Allow: %v", resp.GetAllow())
			}
			got := agg.GetMembers()
			if len(got) != len(c.members) {
				names := []string{}
				for _, m := range got {
					names = append(names, m.GetServer())
				}
				t.Fatalf("members %v, want %d", names, len(c.members))
			}
			for i, w := range c.members {
				g := got[i]
				md := g.GetDecision()
				if g.GetServer() != w.server || g.GetToolPrefix() != w.prefix || g.GetUpstreamName() != w.upstream || g.GetInstructionsName() != w.server {
					t.Errorf("member %d = %s prefix %q upstream %q, want %s %q %q", i, g.GetServer(), g.GetToolPrefix(), g.GetUpstreamName(), w.server, w.prefix, w.upstream)
				}
				if md.GetDecision() != w.decision || (w.reason != "" && md.GetReason() != w.reason) {
					t.Errorf("member %s: %v %q, want %v %q", w.server, md.GetDecision(), md.GetReason(), w.decision, w.reason)
				}
				if md.GetPrincipal() != resp.GetPrincipal() {
					t.Errorf("member %s: principal %q, want %q", w.server, md.GetPrincipal(), resp.GetPrincipal())
				}
				if w.decision == allow {
					if md.GetAllow().GetUpstreamUrl() != "https://upstream.example/"+w.server {
						t.Errorf("member %s: upstream %q", w.server, md.GetAllow().GetUpstreamUrl())
					}
					if !headersEqual(md.GetAllow().GetUpstreamHeaders(), w.headers) {
						t.Errorf("member %s: headers %v, want %v", w.server, md.GetAllow().GetUpstreamHeaders(), w.headers)
					}
				}
				wantConnect := ""
				if w.connect {
					wantConnect = "https://gw.example.com/connections?connect=" + w.server
				}
				if md.GetChallenge().GetConnectUrl() != wantConnect {
					t.Errorf("member %s: connect_url %q, want %q", w.server, md.GetChallenge().GetConnectUrl(), wantConnect)
				}
				if w.decision == chal && !slices.Equal(md.GetChallenge().GetScopes(), []string{w.server + ".use"}) {
					t.Errorf("member %s: challenge scopes %v", w.server, md.GetChallenge().GetScopes())
				}
			}
			if c.req.GetRoute() == "team" && len(got) > 0 && got[0].GetServer() == "echo" {
				if g := got[0]; !slices.Equal(g.GetIncludeTools(), []string{"echo", "search", "delete"}) || g.GetRenames()["search"] != "find" {
					t.Errorf("echo's naming and filter not passed on: %v", g)
				}
			}
		})
	}
}

func headersEqual(a, b []*authorizev1.Header) bool {
	return slices.EqualFunc(a, b, func(x, y *authorizev1.Header) bool { return proto.Equal(x, y) })
}

// TestAggregateUndecidable: an aggregate request that targets one member
// fails like that member's route when the member cannot be decided.
func TestAggregateUndecidable(t *testing.T) {
	st := aggregateState()
	_, err := authorize.Decide(st, now, aggReq("solo", keyAlAgg, "tools/call", "broken__x"))
	if !errors.Is(err, authorize.ErrMisconfigured) {
		t.Fatalf("err = %v, want ErrMisconfigured", err)
	}
	r := aggReq("", keyAlAgg, "initialize", "")
	r.Route = "echo"
	if _, err := authorize.Decide(st, now, r); !errors.Is(err, authorize.ErrInvalidRequest) {
		t.Fatalf("root_aggregate with a route: err = %v", err)
	}
	// A state without virtual servers knows no aggregate route.
	d, err := authorize.Decide(st.state, now, aggReq("", keyAlAgg, "initialize", ""))
	if err != nil || d.Response.GetDecision() != authorizev1.Decision_DECISION_NOT_FOUND || !d.Response.GetUnknownRoute() {
		t.Fatalf("root on a state without aggregates: %v %v", d.Response, err)
	}
}

// TestAggregateAudience: a gateway token is valid only on the route whose
// resource URL it was issued for: an aggregate's token on that aggregate
// (for all its members), not on a server route or another aggregate; a
// server's token not on an aggregate.
func TestAggregateAudience(t *testing.T) {
	st := aggregateState()
	for _, c := range []struct {
		token, route string
		ok           bool
	}{
		{"tok-alice-", "", true},
		{"tok-alice-", "echo", false},
		{"tok-alice-echo", "", false},
		{"tok-alice-echo", "echo", true},
		{"tok-vic-team", "team", true},
		{"tok-vic-team", "", false},
		{"tok-vic-", "team", false},
		{"tok-vic-echo", "team", false},
	} {
		r := aggReq(c.route, "", "tools/list", "")
		r.Credentials = &authorizev1.Credentials{BearerToken: c.token}
		d, err := authorize.Decide(st, now, r)
		if err != nil {
			t.Fatalf("%s on %q: %v", c.token, c.route, err)
		}
		got := d.Response
		if c.ok {
			if got.GetDecision() != authorizev1.Decision_DECISION_ALLOW && got.GetDecision() != authorizev1.Decision_DECISION_NOT_FOUND {
				t.Errorf("%s on %q: %v %q, want accepted", c.token, c.route, got.GetDecision(), got.GetReason())
			}
			continue
		}
		if got.GetDecision() != authorizev1.Decision_DECISION_CHALLENGE || got.GetReason() != authorize.ReasonWrongAudience ||
			got.GetChallenge().GetError() != authorize.ErrorInvalidToken || got.GetChallenge().GetErrorDescription() != authorize.DescWrongAudience {
			t.Errorf("%s on %q: %v %q, want the wrong-audience challenge", c.token, c.route, got.GetDecision(), got.GetReason())
		}
	}
	if want := "https://gw.example.com/mcp"; wire.ResourceURL(base, "") != want {
		t.Fatalf("root resource URL %q", wire.ResourceURL(base, ""))
	}
}

// TestAggregateObtainFailure: a member whose upstream credential cannot be
// obtained (its token endpoint is down) is left out of a list so the other
// members keep working; a request for that member alone fails as on its
// route (could not decide: the data plane answers 503).
func TestAggregateObtainFailure(t *testing.T) {
	st := aggregateState()
	st.addGrant("alice", "Gmail", vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, "up-gmail", now.Add(time.Hour))
	a := newAuthorizer(st, withClock(clock), withMachineTokens(fixedMachine("minted")), withGrantTokens(errGrants{grants.ErrUpstreamUnavailable}))
	resp, err := a.Authorize(context.Background(), aggReq("", keyAlAgg, "tools/list", ""))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range resp.GetAggregate().GetMembers() {
		names = append(names, m.GetServer())
	}
	if !slices.Equal(names, []string{"cc", "echo", "notes", "pass"}) {
		t.Fatalf("members %v, want Gmail left out", names)
	}
	_, err = a.Authorize(context.Background(), aggReq("", keyAlAgg, "tools/call", "Gmail__send"))
	if !errors.Is(err, grants.ErrUpstreamUnavailable) {
		t.Fatalf("call of the failing member: %v", err)
	}
}

// BenchmarkDecideAggregate compares the decision of a tools/call on a
// server route with the same call through the root aggregate and a
// virtual server (name resolution plus the one member's decision).
func BenchmarkDecideAggregate(b *testing.B) {
	st := aggregateState()
	for _, c := range []struct {
		name string
		req  *authorizev1.AuthorizeRequest
	}{
		{"server", func() *authorizev1.AuthorizeRequest {
			r := aggReq("", keyAlAgg, "tools/call", "add")
			r.Route, r.RootAggregate = "notes", false
			return r
		}()},
		{"root", aggReq("", keyAlAgg, "tools/call", "notes__add")},
		{"virtual", aggReq("team", keyVic, "tools/call", "n.add")},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				d, err := authorize.Decide(st, now, c.req)
				if err != nil || d.Response.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
					b.Fatal(d.Response, err)
				}
			}
		})
	}
}

// TestAggregatePolicyNamingVirtualServer: a policy rule naming a virtual
// server in servers: decides its members' tools when they are used through
// it (issue 11: rules match servers or virtual servers), beside the rules
// naming the member server; the same call on the member's own route, or
// through the root aggregate, is not touched by it.
func TestAggregatePolicyNamingVirtualServer(t *testing.T) {
	s := aggregateState()
	s.principals["vic"].Servers = []string{"team", "echo"}
	s.policies = &configv1.PolicySet{Policies: []*configv1.Policy{
		{Id: "team-no-search", Principals: []string{"vic"}, Servers: []string{"team"}, Tools: []string{"search"}, Effect: configv1.PolicyEffect_POLICY_EFFECT_DENY},
		{Id: "everywhere", Principals: []string{"*"}, Servers: []string{"*"}, Tools: []string{"nothing_*"}, Effect: configv1.PolicyEffect_POLICY_EFFECT_DENY},
	}}
	now := time.Now()
	decide := func(req *authorizev1.AuthorizeRequest) *authorizev1.AuthorizeResponse {
		t.Helper()
		d, err := authorize.Decide(s, now, req)
		if err != nil {
			t.Fatal(err)
		}
		return d.Response
	}
	// Through team: the member's decision is the rule's DENY.
	res := decide(aggReq("team", keyVic, "tools/call", "find"))
	ms := res.GetAggregate().GetMembers()
	if len(ms) != 1 || ms[0].GetServer() != "echo" || ms[0].GetUpstreamName() != "search" ||
		ms[0].GetDecision().GetDecision() != authorizev1.Decision_DECISION_DENY || ms[0].GetDecision().GetRuleId() != "team-no-search" {
		t.Fatalf("team tools/call find: %v", res)
	}
	// Listing through team hides it (the member's compiled visibility).
	res = decide(aggReq("team", keyVic, "tools/list", ""))
	var echo *authorizev1.AggregateMember
	for _, m := range res.GetAggregate().GetMembers() {
		if m.GetServer() == "echo" {
			echo = m
		}
	}
	a := echo.GetDecision().GetAllow()
	if ok, rule := wire.Visible(a.GetAllowedTools(), a.GetDisallowedTools(), a.GetVisibility(), authorizev1.PolicyKind_POLICY_KIND_TOOL, "search"); ok || rule != "team-no-search" {
		t.Errorf("team tools/list: search visible=%v rule %q", ok, rule)
	}
	if ok, _ := wire.Visible(a.GetAllowedTools(), a.GetDisallowedTools(), a.GetVisibility(), authorizev1.PolicyKind_POLICY_KIND_TOOL, "echo"); !ok {
		t.Errorf("team tools/list: echo hidden")
	}
	// A rule counted once although it names both (servers: ["*"]).
	n := 0
	for _, v := range a.GetVisibility() {
		if v.GetRuleId() == "everywhere" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("rule everywhere compiled %d times", n)
	}
	// The member's own route: the team rule does not apply.
	req := aggReq("echo", keyVic, "tools/call", "search")
	req.RootAggregate = false
	if res := decide(req); res.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
		t.Errorf("echo route tools/call search: %v", res)
	}
}
