package stacktest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/dataplane"
	"github.com/mcpgate/mcpgate/internal/stacktest"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// policyUpstream is an MCP server with tools, resources, a resource
// template and prompts, for policy filtering.
func policyUpstream(jsonResponse bool) http.Handler {
	s := mcp.NewServer(&mcp.Implementation{Name: "policy", Version: "1"}, nil)
	for _, name := range []string{"search", "merge_pr", "admin_reset"} {
		mcp.AddTool(s, &mcp.Tool{Name: name, Description: name}, func(_ context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "did " + name}}}, nil, nil
		})
	}
	for _, uri := range []string{"file:///public/a.md", "file:///secret/b.md"} {
		s.AddResource(&mcp.Resource{URI: uri, Name: uri}, func(_ context.Context, r *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: r.Params.URI, Text: "contents"}}}, nil
		})
	}
	s.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "file:///secret/{name}", Name: "secrets"}, func(_ context.Context, r *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: r.Params.URI, Text: "contents"}}}, nil
	})
	for _, name := range []string{"draft", "release_notes"} {
		s.AddPrompt(&mcp.Prompt{Name: name}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: name}}}}, nil
		})
	}
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{JSONResponse: jsonResponse, Stateless: true})
}

// TestGoSDK_Policies: per-tool policy end to end, the official Go SDK as
// client and upstream on a per-server route, JSON and SSE replies. Rules:
// only group release may merge; nobody runs admin_*; file:///secret/* is
// bob's. alice (own grant) sees and may call only search, the public
// resource and both prompts (release_notes is restricted to release too);
// bob (group release) sees everything but admin_reset. A denied call is
// 403 with the gateway's JSON-RPC error, never reaches the upstream, and
// the audit event names the rule.
func TestGoSDK_Policies(t *testing.T) {
	auditBuf := &lockedBuffer{}
	s := stacktest.Start(t,
		stacktest.WithUpstreamRoutes(func(mux *http.ServeMux) {
			mux.Handle("/policy-json/mcp", policyUpstream(true))
			mux.Handle("/policy-sse/mcp", policyUpstream(false))
		}),
		stacktest.WithDataPlaneConfig(func(c *dataplane.Config) { c.Audit = audit.New(auditBuf) }))
	ctx := t.Context()
	base := strings.TrimSuffix(s.UpstreamURL, "/mcp")
	for _, n := range []string{"policy-json", "policy-sse"} {
		s.PutServer(&configv1.McpServer{Name: n, Url: base + "/" + n + "/mcp", Transport: configv1.Transport_TRANSPORT_HTTP, AuthType: configv1.AuthType_AUTH_TYPE_NONE})
	}
	if _, err := s.Groups.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "release", Servers: []string{"policy-json", "policy-sse"}}}); err != nil {
		t.Fatal(err)
	}
	alice := s.AddUser("alice", "policy-json", "policy-sse")
	if _, err := s.Principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: "bob", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: configv1.Role_ROLE_MEMBER, Groups: []string{"release"},
	}}); err != nil {
		t.Fatal(err)
	}
	bob := s.NewKey("bob")
	rev, err := s.Store.PutPolicies(ctx, &configv1.PolicySet{Policies: []*configv1.Policy{
		{Id: "release-merge", Groups: []string{"release"}, Servers: []string{"policy-*"}, Tools: []string{"merge_*"}, Prompts: []string{"release_*"}, Effect: configv1.PolicyEffect_POLICY_EFFECT_ALLOW},
		{Id: "no-admin", Principals: []string{"*"}, Servers: []string{"*"}, Tools: []string{"admin_*"}, Effect: configv1.PolicyEffect_POLICY_EFFECT_DENY},
		{Id: "bob-secrets", Principals: []string{"bob"}, Servers: []string{"*"}, Resources: []string{"file:///secret/*"}, Effect: configv1.PolicyEffect_POLICY_EFFECT_ALLOW},
	}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := s.Store.WaitRevision(wctx, rev); err != nil {
		t.Fatal(err)
	}

	type view struct{ tools, resources, templates, prompts []string }
	for _, route := range []string{"policy-json", "policy-sse"} {
		for _, tc := range []struct {
			who, key string
			want     view
			callable []string
			denied   map[string]string // tool → rule id
		}{
			{"alice", alice, view{
				tools: []string{"search"}, resources: []string{"file:///public/a.md"}, templates: nil, prompts: []string{"draft"},
			}, []string{"search"}, map[string]string{"merge_pr": "release-merge", "admin_reset": "no-admin"}},
			{"bob", bob, view{
				tools: []string{"merge_pr", "search"}, resources: []string{"file:///public/a.md", "file:///secret/b.md"},
				templates: []string{"file:///secret/{name}"}, prompts: []string{"draft", "release_notes"},
			}, []string{"search", "merge_pr"}, map[string]string{"admin_reset": "no-admin"}},
		} {
			t.Run(route+"/"+tc.who, func(t *testing.T) {
				client := mcp.NewClient(&mcp.Implementation{Name: "stacktest", Version: "1"}, nil)
				cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.RouteURL(route), HTTPClient: keyClient(tc.key), DisableStandaloneSSE: true}, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer cs.Close()
				var got view
				tools, err := cs.ListTools(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range tools.Tools {
					got.tools = append(got.tools, x.Name)
				}
				res, err := cs.ListResources(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range res.Resources {
					got.resources = append(got.resources, x.URI)
				}
				tpl, err := cs.ListResourceTemplates(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range tpl.ResourceTemplates {
					got.templates = append(got.templates, x.URITemplate)
				}
				prompts, err := cs.ListPrompts(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range prompts.Prompts {
					got.prompts = append(got.prompts, x.Name)
				}
				for _, l := range [][]string{got.tools, got.resources, got.templates, got.prompts} {
					slices.Sort(l)
				}
				if !slices.Equal(got.tools, tc.want.tools) || !slices.Equal(got.resources, tc.want.resources) ||
					!slices.Equal(got.templates, tc.want.templates) || !slices.Equal(got.prompts, tc.want.prompts) {
					t.Errorf("%s sees %+v, want %+v", tc.who, got, tc.want)
				}
				// Everything listed is callable.
				for _, name := range tc.callable {
					r, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name})
					if err != nil || textOf(t, r) != "did "+name {
						t.Errorf("call %s: %v", name, err)
					}
				}
				for _, uri := range got.resources {
					if _, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: uri}); err != nil {
						t.Errorf("read %s: %v", uri, err)
					}
				}
				for _, p := range got.prompts {
					if _, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: p}); err != nil {
						t.Errorf("get prompt %s: %v", p, err)
					}
				}
				// What is hidden is refused: through the SDK (the session
				// survives), and raw: exactly 403 and the fixed body.
				for name := range tc.denied {
					if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: name}); err == nil || !strings.Contains(err.Error(), "forbidden") {
						t.Errorf("call %s: %v, want forbidden", name, err)
					}
					resp, body := rawPost(t, s.RouteURL(route), http.Header{"X-Mcpgate-Api-Key": {tc.key}},
						`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"`+name+`"}}`)
					if resp.StatusCode != http.StatusForbidden || body != `{"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"forbidden"}}` {
						t.Errorf("raw call %s: %d %s", name, resp.StatusCode, body)
					}
				}
				if tc.who == "alice" {
					for _, body := range []string{
						`{"jsonrpc":"2.0","id":8,"method":"resources/read","params":{"uri":"file:///secret/b.md"}}`,
						`{"jsonrpc":"2.0","id":8,"method":"prompts/get","params":{"name":"release_notes"}}`,
					} {
						resp, got := rawPost(t, s.RouteURL(route), http.Header{"X-Mcpgate-Api-Key": {tc.key}}, body)
						if resp.StatusCode != http.StatusForbidden || got != `{"jsonrpc":"2.0","id":8,"error":{"code":-32003,"message":"forbidden"}}` {
							t.Errorf("raw %s: %d %s", body, resp.StatusCode, got)
						}
					}
				}
			})
		}
	}
	// The upstream never saw a refused call.
	for _, r := range s.Upstream.Recorder.Requests() {
		if r.Tool == "admin_reset" {
			t.Errorf("the upstream saw tools/call admin_reset")
		}
	}
	// Every deny's audit event names its rule.
	want := map[string]bool{"alice merge_pr release-merge": false, "alice admin_reset no-admin": false, "bob admin_reset no-admin": false,
		"alice resources/read bob-secrets": false, "alice prompts/get release-merge": false}
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, line := range strings.Split(auditBuf.String(), "\n") {
			var ev struct {
				Principal string `json:"principal"`
				Method    string `json:"method"`
				Tool      string `json:"tool"`
				Decision  string `json:"decision"`
				Rule      string `json:"rule_id"`
				Status    int    `json:"status"`
			}
			if line == "" || json.Unmarshal([]byte(line), &ev) != nil || ev.Decision != "deny" {
				continue
			}
			if ev.Rule == "" || ev.Status != http.StatusForbidden {
				t.Fatalf("deny without a rule id or 403: %s", line)
			}
			what := ev.Tool
			if ev.Method != "tools/call" {
				what = ev.Method
			}
			want[ev.Principal+" "+what+" "+ev.Rule] = true
		}
		missing := false
		for _, seen := range want {
			missing = missing || !seen
		}
		if !missing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit events %v:\n%s", want, auditBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
