package authorize_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// pinState is a state with tool pins (authorize.PinState).
type pinState struct {
	*state
	pins map[string]*storev1.ToolPinsRecord
}

func (s pinState) ToolPins(server string) (*store.ToolPins, bool) {
	r, ok := s.pins[server]
	if !ok {
		return nil, false
	}
	return store.NewToolPins(r), true
}

// stepUpState: alice is granted "gh" (oauth2 authorization_code, server
// scopes repo.read) whose tool_scopes say merge_* needs gh.merge (and
// upstream scope repo), admin_* needs gh.admin and gh.merge, and read_*
// needs nothing; "plain" (auth none) has tool_scopes del_* → plain.write.
// Alice has a grant for gh with the upstream scopes given.
func stepUpState(upstream []string) pinState {
	s := newState()
	s.principals["alice"] = &configv1.Principal{Name: "alice", Servers: []string{"gh", "plain"}}
	s.addKey(keyAlice, "alice", false, now.AddDate(1, 0, 0))
	s.servers["gh"] = &store.Server{Def: &configv1.McpServer{
		Name: "gh", Url: "https://gh.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_OAUTH2,
		Oauth2Flow: configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE, Scopes: []string{"repo.read"},
		ToolScopes: []*configv1.ToolScopes{
			{Tool: "merge_*", Scopes: []string{"gh.merge"}, UpstreamScopes: []string{"repo"}},
			{Tool: "admin_*", Scopes: []string{"gh.admin", "gh.merge"}},
		},
		OnToolChange: configv1.ToolChangeMode_TOOL_CHANGE_MODE_BLOCK,
	}, Secrets: &storev1.ServerSecrets{}}
	s.servers["plain"] = &store.Server{Def: &configv1.McpServer{
		Name: "plain", Url: "https://plain.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_NONE,
		ToolScopes: []*configv1.ToolScopes{{Tool: "del_*", Scopes: []string{"plain.write"}}},
	}, Secrets: &storev1.ServerSecrets{}}
	s.addGrant("alice", "gh", vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE, "up", now.Add(1e12))
	s.grants[[2]string{"alice", "gh"}].Conn.Scopes = upstream
	return pinState{state: s, pins: map[string]*storev1.ToolPinsRecord{"gh": {Server: "gh", Pins: map[string]*configv1.ToolPin{
		"read_issue":   {Tool: "read_issue", ApprovedDigest: "aa"},
		"read_changed": {Tool: "read_changed", ApprovedDigest: "aa", PendingDigest: "bb"},
	}}}}
}

// TestStepUpDecision is the table of scopes × tools: what a tools/call
// gets for each token scope set, tool and upstream grant.
func TestStepUpDecision(t *testing.T) {
	type want struct {
		decision authorizev1.Decision
		reason   string
		scopes   []string // Deny.InsufficientScope.Scopes or Challenge.Scopes
	}
	allow := want{decision: authorizev1.Decision_DECISION_ALLOW, reason: authorize.ReasonAllowed}
	insufficient := func(sc ...string) want {
		return want{authorizev1.Decision_DECISION_DENY, authorize.ReasonInsufficientScope, sc}
	}
	upstream := func(sc ...string) want {
		return want{authorizev1.Decision_DECISION_CHALLENGE, authorize.ReasonUpstreamScope, sc}
	}
	changed := want{decision: authorizev1.Decision_DECISION_DENY, reason: authorize.ReasonToolChanged}
	full := []string{"repo", "repo.read"}
	cases := []struct {
		name     string
		route    string
		tokenSc  []string // nil with apiKey
		apiKey   bool
		method   string
		tool     string
		upstream []string
		want     want
	}{
		{"no tool scope needed", "gh", []string{"repo.read"}, false, "tools/call", "read_issue", full, allow},
		{"tools/list never steps up", "gh", []string{"repo.read"}, false, "tools/list", "", full, allow},
		{"merge without gh.merge", "gh", []string{"repo.read"}, false, "tools/call", "merge_pr", full, insufficient("gh.merge", "repo.read")},
		{"merge with gh.merge", "gh", []string{"gh.merge", "repo.read"}, false, "tools/call", "merge_pr", full, allow},
		{"admin needs both, has one", "gh", []string{"gh.merge", "repo.read"}, false, "tools/call", "admin_repo", full, insufficient("gh.admin", "gh.merge", "repo.read")},
		{"admin with both", "gh", []string{"gh.admin", "gh.merge"}, false, "tools/call", "admin_repo", full, allow},
		{"token without any scope", "gh", []string{}, false, "tools/call", "merge_pr", full, insufficient("gh.merge")},
		{"api key is not scoped", "gh", nil, true, "tools/call", "admin_repo", full, allow},
		{"grant lacks upstream repo: token", "gh", []string{"gh.merge", "repo.read"}, false, "tools/call", "merge_pr", []string{"repo.read"}, upstream("gh.merge", "repo.read")},
		{"grant lacks upstream repo: api key", "gh", nil, true, "tools/call", "merge_pr", []string{"repo.read"}, upstream("gh.merge", "repo.read")},
		{"grant lacks repo, tool needs none", "gh", []string{"repo.read"}, false, "tools/call", "read_issue", []string{"repo.read"}, allow},
		{"changed tool blocked", "gh", []string{"repo.read"}, false, "tools/call", "read_changed", full, changed},
		{"changed tool blocked for keys too", "gh", nil, true, "tools/call", "read_changed", full, changed},
		{"auth none server: scope missing", "plain", []string{}, false, "tools/call", "del_row", nil, insufficient("plain.write")},
		{"auth none server: scope held", "plain", []string{"plain.write"}, false, "tools/call", "del_row", nil, allow},
		{"auth none server: other tool", "plain", []string{}, false, "tools/call", "get_row", nil, allow},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := stepUpState(c.upstream)
			req := &authorizev1.AuthorizeRequest{Route: c.route, PublicBaseUrl: base, HttpMethod: "POST", JsonrpcMethod: c.method, ToolName: c.tool,
				Credentials: &authorizev1.Credentials{}}
			if c.apiKey {
				req.Credentials.ApiKey = keyAlice
			} else {
				st.addSourcedToken("tok-alice", "alice", "", c.route, keyAlice, base)
				st.tokens[store.HashKey("tok-alice")].Scopes = c.tokenSc
				req.Credentials.BearerToken = "tok-alice"
			}
			d, err := authorize.Decide(st, now, req)
			if err != nil {
				t.Fatal(err)
			}
			r := d.Response
			if r.GetDecision() != c.want.decision || r.GetReason() != c.want.reason {
				t.Fatalf("decision %s (%s), want %s (%s)", r.GetDecision(), r.GetReason(), c.want.decision, c.want.reason)
			}
			var got []string
			switch r.GetDecision() {
			case authorizev1.Decision_DECISION_DENY:
				// Every DENY names its rule (the audit's rule_id).
				wantRule := map[string]string{authorize.ReasonInsufficientScope: wire.RuleServerToolScopes, authorize.ReasonToolChanged: wire.RuleServerOnToolChange}[c.want.reason]
				if r.GetRuleId() != wantRule {
					t.Errorf("rule %q, want %q", r.GetRuleId(), wantRule)
				}
				got = r.GetDeny().GetInsufficientScope().GetScopes()
				if (c.want.reason == authorize.ReasonInsufficientScope) != (r.GetDeny().GetInsufficientScope() != nil) {
					t.Errorf("insufficient_scope set = %v", r.GetDeny().GetInsufficientScope() != nil)
				}
			case authorizev1.Decision_DECISION_CHALLENGE:
				got = r.GetChallenge().GetScopes()
				if r.GetChallenge().GetError() != "" {
					t.Errorf("challenge error %q, want none (the credential is fine)", r.GetChallenge().GetError())
				}
			case authorizev1.Decision_DECISION_ALLOW:
				tp := r.GetAllow().GetToolPinning()
				if c.route == "gh" && (tp == nil || !tp.GetBlock() || tp.GetPins()["read_issue"] != "aa" || len(tp.GetPins()) != 2) {
					t.Errorf("tool pinning %v", tp)
				}
				if c.route == "plain" && tp != nil {
					t.Errorf("plain pins nothing, got %v", tp)
				}
			}
			if !slices.Equal(got, c.want.scopes) {
				t.Errorf("scopes %q, want %q", got, c.want.scopes)
			}
		})
	}
}

// TestScopeSets: the scope arithmetic /authorize and the decision share.
func TestScopeSets(t *testing.T) {
	def := stepUpState(nil).servers["gh"].Def
	if got := authorize.OfferedScopes(def); !slices.Equal(got, []string{"repo.read", "gh.merge", "gh.admin"}) {
		t.Errorf("offered %q", got)
	}
	for _, c := range []struct {
		granted, want []string
	}{
		{[]string{"repo.read"}, []string{"repo.read"}},
		{[]string{"gh.merge"}, []string{"repo"}},
		{[]string{"repo.read", "gh.merge", "gh.admin"}, []string{"repo", "repo.read"}},
		{nil, nil},
	} {
		if got := authorize.UpstreamScopesFor(def, c.granted); !slices.Equal(got, c.want) {
			t.Errorf("UpstreamScopesFor(%q) = %q, want %q", c.granted, got, c.want)
		}
	}
	if s, u := authorize.ToolNeeds(def, "merge_x"); !slices.Equal(s, []string{"gh.merge"}) || !slices.Equal(u, []string{"repo"}) {
		t.Errorf("ToolNeeds = %q %q", s, u)
	}
	if authorize.ToolMatches("[", "[") {
		t.Error("a malformed glob matched")
	}
}

// BenchmarkDecidePins measures a tools/call decision on a server with
// tool_scopes and N pinned tools (the Allow carries the pins), against the
// same server without either: run with -bench DecidePins.
func BenchmarkDecidePins(b *testing.B) {
	for _, n := range []int{0, 50, 512} {
		st := stepUpState([]string{"repo", "repo.read"})
		def := st.servers["gh"].Def
		if n == 0 {
			def.ToolScopes, def.OnToolChange = nil, configv1.ToolChangeMode_TOOL_CHANGE_MODE_UNSPECIFIED
		}
		rec := &storev1.ToolPinsRecord{Server: "gh", Pins: map[string]*configv1.ToolPin{}}
		for i := range n {
			name := fmt.Sprintf("tool_%04d", i)
			rec.Pins[name] = &configv1.ToolPin{Tool: name, ApprovedDigest: strings.Repeat("a", 64)}
		}
		st.pins["gh"] = rec
		cached := store.NewToolPins(rec)
		ps := cachedPins{st, cached}
		st.addSourcedToken("tok-bench", "alice", "", "gh", keyAlice, base)
		st.tokens[store.HashKey("tok-bench")].Scopes = []string{"gh.merge", "repo.read"}
		req := &authorizev1.AuthorizeRequest{Route: "gh", PublicBaseUrl: base, HttpMethod: "POST", JsonrpcMethod: "tools/call",
			ToolName: "merge_pr", Credentials: &authorizev1.Credentials{BearerToken: "tok-bench"}}
		b.Run(fmt.Sprintf("pins=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			size := 0
			for b.Loop() {
				d, err := authorize.Decide(ps, now, req)
				if err != nil || d.Response.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
					b.Fatal(d.Response, err)
				}
			}
			d, _ := authorize.Decide(ps, now, req)
			size = proto.Size(d.Response)
			b.ReportMetric(float64(size), "response-bytes")
		})
	}
}

// cachedPins serves one decoded record, as the store's cache does.
type cachedPins struct {
	pinState
	tp *store.ToolPins
}

func (c cachedPins) ToolPins(server string) (*store.ToolPins, bool) {
	if server != "gh" {
		return nil, false
	}
	return c.tp, true
}

// TestExplainScopesAndPins: Explain records the server's pin of the tool
// (approved, changed under block or warn, not seen yet), every tool_scopes
// rule matching it, the gateway scopes an access token must carry and
// whether the person's upstream grant holds the upstream scopes, and
// decides like Decide (a blocked changed tool is DENY, a grant lacking an
// upstream scope the sign-in CHALLENGE).
func TestExplainScopesAndPins(t *testing.T) {
	full := []string{"repo", "repo.read"}
	for _, tc := range []struct {
		name     string
		route    string
		tool     string
		upstream []string
		warn     bool
		decision authorizev1.Decision
		reason   string
		steps    []string
	}{
		{"merge: scopes and upstream held", "gh", "merge_pr", full, false, authorizev1.Decision_DECISION_ALLOW, authorize.ReasonAllowed, []string{
			"grant gh own servers",
			"rule - no rule targets tool merge_pr",
			"pin merge_pr not seen yet: pinned when the server first lists it (on_tool_change block)",
			"scope tool_scopes merge_* needs scopes gh.merge, upstream scopes repo",
			"scope access token must carry gh.merge (an API key is not scoped)",
			"scope upstream grant holds repo",
		}},
		{"merge: upstream grant lacks repo", "gh", "merge_pr", []string{"repo.read"}, false, authorizev1.Decision_DECISION_CHALLENGE, authorize.ReasonUpstreamScope, []string{
			"grant gh own servers",
			"rule - no rule targets tool merge_pr",
			"pin merge_pr not seen yet: pinned when the server first lists it (on_tool_change block)",
			"scope tool_scopes merge_* needs scopes gh.merge, upstream scopes repo",
			"scope access token must carry gh.merge (an API key is not scoped)",
			"scope upstream grant lacks repo: the person must sign in upstream again",
		}},
		{"admin: two scopes", "gh", "admin_repo", full, false, authorizev1.Decision_DECISION_ALLOW, authorize.ReasonAllowed, []string{
			"grant gh own servers",
			"rule - no rule targets tool admin_repo",
			"pin admin_repo not seen yet: pinned when the server first lists it (on_tool_change block)",
			"scope tool_scopes admin_* needs scopes gh.admin gh.merge",
			"scope access token must carry gh.admin gh.merge (an API key is not scoped)",
		}},
		{"approved tool", "gh", "read_issue", full, false, authorizev1.Decision_DECISION_ALLOW, authorize.ReasonAllowed, []string{
			"grant gh own servers",
			"rule - no rule targets tool read_issue",
			"pin read_issue definition approved (on_tool_change block)",
		}},
		{"changed tool under block", "gh", "read_changed", full, false, authorizev1.Decision_DECISION_DENY, authorize.ReasonToolChanged, []string{
			"grant gh own servers",
			"rule - no rule targets tool read_changed",
			"pin read_changed definition changed since approval: refused until approved (on_tool_change block)",
		}},
		{"changed tool under warn", "gh", "read_changed", full, true, authorizev1.Decision_DECISION_ALLOW, authorize.ReasonAllowed, []string{
			"grant gh own servers",
			"rule - no rule targets tool read_changed",
			"pin read_changed definition changed since approval: allowed with an audit event (on_tool_change warn)",
		}},
		{"server without pins", "plain", "del_row", nil, false, authorizev1.Decision_DECISION_ALLOW, authorize.ReasonAllowed, []string{
			"grant plain own servers",
			"rule - no rule targets tool del_row",
			"scope tool_scopes del_* needs scopes plain.write",
			"scope access token must carry plain.write (an API key is not scoped)",
			"auth none no upstream credential",
		}},
		{"tool needing nothing", "plain", "get_row", nil, false, authorizev1.Decision_DECISION_ALLOW, authorize.ReasonAllowed, []string{
			"grant plain own servers",
			"rule - no rule targets tool get_row",
			"auth none no upstream credential",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := stepUpState(tc.upstream)
			if tc.warn {
				st.servers["gh"].Def.OnToolChange = configv1.ToolChangeMode_TOOL_CHANGE_MODE_WARN
			}
			var tr authorize.Trace
			d, err := authorize.Explain(st, "alice", &authorizev1.AuthorizeRequest{Route: tc.route, JsonrpcMethod: "tools/call", ToolName: tc.tool}, &tr)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range tr.Steps {
				got = append(got, string(s.Kind)+" "+s.Subject+" "+s.Detail)
			}
			if r := d.Response; r.GetDecision() != tc.decision || r.GetReason() != tc.reason || !slices.Equal(got, tc.steps) {
				t.Errorf("%v (%s)\n%s\nwant %v (%s)\n%s", r.GetDecision(), r.GetReason(), strings.Join(got, "\n"), tc.decision, tc.reason, strings.Join(tc.steps, "\n"))
			}
		})
	}
}
