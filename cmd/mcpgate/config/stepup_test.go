package config_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
)

// TestParse_ToolScopesAndPinning: the YAML keys tool_scopes (tool,
// scopes, upstream_scopes) and on_tool_change (warn|block) reach the
// server definition; unknown keys and values are refused with their line.
func TestParse_ToolScopesAndPinning(t *testing.T) {
	const y = `
mcp_servers:
  github:
    url: https://gh.example/mcp
    tool_scopes:
      - tool: "merge_*"
        scopes: [github.merge]
        upstream_scopes: [repo]
      - tool: admin_repo
        scopes: [github.admin, github.merge]
    on_tool_change: block
  plain:
    url: http://127.0.0.1:9/mcp
    on_tool_change: warn
`
	f, err := config.Parse([]byte(y), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []*configv1.ToolScopes{
		{Tool: "merge_*", Scopes: []string{"github.merge"}, UpstreamScopes: []string{"repo"}},
		{Tool: "admin_repo", Scopes: []string{"github.admin", "github.merge"}},
	}
	gh, plain := f.Servers[0], f.Servers[1]
	if len(gh.GetToolScopes()) != 2 || !proto.Equal(gh.GetToolScopes()[0], want[0]) || !proto.Equal(gh.GetToolScopes()[1], want[1]) {
		t.Errorf("tool_scopes %v", gh.GetToolScopes())
	}
	if gh.GetOnToolChange() != configv1.ToolChangeMode_TOOL_CHANGE_MODE_BLOCK || plain.GetOnToolChange() != configv1.ToolChangeMode_TOOL_CHANGE_MODE_WARN {
		t.Errorf("on_tool_change %v %v", gh.GetOnToolChange(), plain.GetOnToolChange())
	}
	for _, tc := range []struct{ yaml, want string }{
		{"mcp_servers:\n  a:\n    on_tool_change: ignore\n", `line 3: on_tool_change "ignore" is not one of block, warn`},
		{"mcp_servers:\n  a:\n    tool_scopes:\n      - tool: x\n        scope: [a]\n", `line 5: unknown field "scope"`},
	} {
		_, err := config.Parse([]byte(tc.yaml), env(nil))
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
