package configapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// TestToolScopesValidation: tool_scopes and on_tool_change are validated
// like every server field, with fixed messages naming the field.
func TestToolScopesValidation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	rule := func(tool string, scopes, upstream []string) []*configv1.ToolScopes {
		return []*configv1.ToolScopes{{Tool: tool, Scopes: scopes, UpstreamScopes: upstream}}
	}
	oauth := func(s *configv1.McpServer) {
		s.AuthType, s.Oauth2Flow, s.ClientId = configv1.AuthType_AUTH_TYPE_OAUTH2, configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE, "cid"
		s.TokenUrl, s.AuthorizationUrl = "https://idp.example.com/token", "https://idp.example.com/authorize"
	}
	many := make([]*configv1.ToolScopes, 257)
	for i := range many {
		many[i] = &configv1.ToolScopes{Tool: "t", Scopes: []string{"s"}}
	}
	for _, tc := range []struct {
		name string
		f    func(s *configv1.McpServer)
		msg  string
	}{
		{"empty tool", func(s *configv1.McpServer) { s.ToolScopes = rule(" ", []string{"a"}, nil) }, "tool_scopes[0].tool: required, at most 128 bytes"},
		{"long tool", func(s *configv1.McpServer) { s.ToolScopes = rule(strings.Repeat("t", 129), []string{"a"}, nil) }, "tool_scopes[0].tool: required, at most 128 bytes"},
		{"bad glob", func(s *configv1.McpServer) { s.ToolScopes = rule("merge_[", []string{"a"}, nil) }, "tool_scopes[0].tool: malformed glob"},
		{"no scopes", func(s *configv1.McpServer) { s.ToolScopes = rule("a", nil, nil) }, "tool_scopes[0]: scopes or upstream_scopes required"},
		{"scope with space", func(s *configv1.McpServer) { s.ToolScopes = rule("a", []string{"ok", "b c"}, nil) },
			"tool_scopes[0].scopes[1]: must be a scope token without spaces, quotes, commas or equals signs"},
		{"scope with comma", func(s *configv1.McpServer) { s.ToolScopes = rule("a", []string{"b,c"}, nil) },
			"tool_scopes[0].scopes[0]: must be a scope token without spaces, quotes, commas or equals signs"},
		{"upstream scope with quote", func(s *configv1.McpServer) { oauth(s); s.ToolScopes = rule("a", []string{"x"}, []string{`q"`}) },
			"tool_scopes[0].upstream_scopes[0]: must be a scope token without spaces, quotes, commas or equals signs"},
		{"upstream scopes without oauth2", func(s *configv1.McpServer) { s.ToolScopes = rule("a", []string{"x"}, []string{"repo"}) },
			"tool_scopes[0].upstream_scopes: only with auth_type oauth2 and oauth2_flow authorization_code"},
		{"too many rules", func(s *configv1.McpServer) { s.ToolScopes = many }, "tool_scopes: at most 256 rules"},
		{"bad on_tool_change", func(s *configv1.McpServer) { s.OnToolChange = 7 }, "on_tool_change: must be warn or block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := httpServer("srv")
			tc.f(s)
			_, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: s})
			wantCode(t, err, connect.CodeInvalidArgument, tc.msg)
		})
	}
	s := httpServer("gh")
	oauth(s)
	s.ToolScopes = []*configv1.ToolScopes{{Tool: "merge_*", Scopes: []string{"gh.merge"}, UpstreamScopes: []string{"repo"}}, {Tool: "del?", UpstreamScopes: []string{"delete_repo"}}}
	s.OnToolChange = configv1.ToolChangeMode_TOOL_CHANGE_MODE_BLOCK
	res, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: s})
	if err != nil {
		t.Fatalf("valid server: %v", err)
	}
	if got := res.GetServer(); len(got.GetToolScopes()) != 2 || got.GetOnToolChange() != configv1.ToolChangeMode_TOOL_CHANGE_MODE_BLOCK {
		t.Errorf("stored %v", got)
	}
}

// TestToolPinService: list and approve, with their refusals; reports are
// bounded per server (store.MaxToolPins) and never approve; members cannot
// use the service.
func TestToolPinService(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	s := httpServer("pinned")
	s.OnToolChange = configv1.ToolChangeMode_TOOL_CHANGE_MODE_WARN
	if _, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: s}); err != nil {
		t.Fatal(err)
	}
	_, err := e.admin().toolPins.ListToolPins(ctx, &configv1.ListToolPinsRequest{Server: "nosuch"})
	wantCode(t, err, connect.CodeNotFound, "server not found")
	res, err := e.admin().toolPins.ListToolPins(ctx, &configv1.ListToolPinsRequest{Server: "pinned"})
	if err != nil || len(res.GetPins()) != 0 || res.GetOnToolChange() != configv1.ToolChangeMode_TOOL_CHANGE_MODE_WARN {
		t.Fatalf("empty list: %v %v", res, err)
	}

	d := func(i int) string { return fmt.Sprintf("%064x", i) }
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	var seen []store.ToolDigest
	for i := range store.MaxToolPins + 10 {
		seen = append(seen, store.ToolDigest{Tool: fmt.Sprintf("t%04d", i), Digest: d(1)})
	}
	if ch, err := e.st.RecordToolDigests(ctx, "pinned", seen, now); err != nil || len(ch) != 0 {
		t.Fatalf("first seen: %v %v", ch, err)
	}
	// A changed digest is pending (one change), a new tool beyond the
	// bound is dropped, the approved digest stays.
	ch, err := e.st.RecordToolDigests(ctx, "pinned", []store.ToolDigest{{Tool: "t0000", Digest: d(2)}, {Tool: "extra", Digest: d(1)}}, now)
	if err != nil || len(ch) != 1 || ch[0] != (store.ToolChange{Tool: "t0000", Old: d(1), New: d(2)}) {
		t.Fatalf("change: %v %v", ch, err)
	}
	if ch, err := e.st.RecordToolDigests(ctx, "pinned", []store.ToolDigest{{Tool: "t0000", Digest: d(2)}}, now); err != nil || len(ch) != 0 {
		t.Fatalf("the same change again: %v %v", ch, err)
	}
	res, err = e.admin().toolPins.ListToolPins(ctx, &configv1.ListToolPinsRequest{Server: "pinned"})
	if err != nil || len(res.GetPins()) != store.MaxToolPins {
		t.Fatalf("list: %d pins, %v (bound %d)", len(res.GetPins()), err, store.MaxToolPins)
	}
	if p := res.GetPins()[0]; p.GetTool() != "t0000" || p.GetApprovedDigest() != d(1) || p.GetPendingDigest() != d(2) || p.GetChangeTime() == nil {
		t.Errorf("pin %v", p)
	}

	for _, tc := range []struct {
		name string
		req  *configv1.ApproveToolPinRequest
		code connect.Code
		msg  string
	}{
		{"bad server", &configv1.ApproveToolPinRequest{Server: "a/b", Tool: "t0000"}, connect.CodeInvalidArgument, "server: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"empty tool", &configv1.ApproveToolPinRequest{Server: "pinned"}, connect.CodeInvalidArgument, "tool: 1 to 128 bytes of UTF-8 without control characters"},
		{"unknown server", &configv1.ApproveToolPinRequest{Server: "nosuch", Tool: "t0000"}, connect.CodeNotFound, "server not found"},
		{"unknown tool", &configv1.ApproveToolPinRequest{Server: "pinned", Tool: "zzz"}, connect.CodeNotFound, "tool pin not found"},
		{"nothing pending", &configv1.ApproveToolPinRequest{Server: "pinned", Tool: "t0001"}, connect.CodeFailedPrecondition, "no pending change of this tool (or not the one named by digest_prefix)"},
		{"other digest", &configv1.ApproveToolPinRequest{Server: "pinned", Tool: "t0000", DigestPrefix: "f"}, connect.CodeFailedPrecondition, "no pending change of this tool (or not the one named by digest_prefix)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.admin().toolPins.ApproveToolPin(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	e.putPrincipal("mallory", configv1.Role_ROLE_MEMBER)
	key, _ := e.createKey("mallory")
	_, err = e.as(key).toolPins.ApproveToolPin(ctx, &configv1.ApproveToolPinRequest{Server: "pinned", Tool: "t0000"})
	if code := connect.CodeOf(err); code != connect.CodePermissionDenied && code != connect.CodeUnauthenticated {
		t.Errorf("member approval: %v", err)
	}
	ap, err := e.admin().toolPins.ApproveToolPin(ctx, &configv1.ApproveToolPinRequest{Server: "pinned", Tool: "t0000", DigestPrefix: d(2)[:12]})
	if err != nil || ap.GetPin().GetApprovedDigest() != d(2) || ap.GetPin().GetPendingDigest() != "" || ap.GetPin().GetApproveTime() == nil {
		t.Fatalf("approve: %v %v", ap, err)
	}

	// Deleting the server deletes its pins: created again, it starts
	// unpinned.
	if _, err := e.admin().servers.DeleteServer(ctx, &configv1.DeleteServerRequest{Name: "pinned"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: s}); err != nil {
		t.Fatal(err)
	}
	res, err = e.admin().toolPins.ListToolPins(ctx, &configv1.ListToolPinsRequest{Server: "pinned"})
	if err != nil || len(res.GetPins()) != 0 {
		t.Fatalf("pins of the re-created server: %d %v", len(res.GetPins()), err)
	}
}
