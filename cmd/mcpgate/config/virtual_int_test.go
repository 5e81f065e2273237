package config_test

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
)

// TestApplyVirtualServers: `virtual_servers:` round-trips through apply
// (after the servers they name, before the principals granted them): every
// field, tool_prefix's presence included; applying again changes nothing;
// an invalid one fails with the control plane's message naming both
// sources.
func TestApplyVirtualServers(t *testing.T) {
	c := controlPlane(t)
	const file = `
mcp_servers:
  echo:
    url: http://127.0.0.1:9/mcp
  notes:
    url: http://127.0.0.1:9/mcp
virtual_servers:
  team:
    description: the team's tools
    tool_separator: "__"
    scopes: [team.use]
    members:
      - server: echo
        include_tools: [echo, search]
        exclude_tools: [delete]
        renames:
          search: find
      - server: notes
        tool_prefix: n.
principals:
  - name: vic
    servers: [team]
`
	parse := func(y string) *config.File {
		t.Helper()
		f, err := config.Parse([]byte(y), func(string) (string, bool) { return "", false })
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	ctx := t.Context()
	res, err := config.Apply(ctx, c, parse(file), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := "server echo created\nserver notes created\nvirtual_server team created\nprincipal vic created\n"
	if got := outcomes(res); got != want {
		t.Fatalf("first apply:\n%s\nwant:\n%s", got, want)
	}
	got, err := c.VirtualServers.GetVirtualServer(ctx, &configv1.GetVirtualServerRequest{Name: "team"})
	if err != nil {
		t.Fatal(err)
	}
	wantVS := &configv1.VirtualServer{Name: "team", Description: "the team's tools", ToolSeparator: "__", Scopes: []string{"team.use"},
		Members: []*configv1.VirtualServerMember{
			{Server: "echo", IncludeTools: []string{"echo", "search"}, ExcludeTools: []string{"delete"}, Renames: map[string]string{"search": "find"}},
			{Server: "notes", ToolPrefix: proto.String("n.")},
		}, Revision: got.GetVirtualServer().GetRevision()}
	if !proto.Equal(got.GetVirtualServer(), wantVS) {
		t.Fatalf("team = %v\nwant %v", got.GetVirtualServer(), wantVS)
	}
	res, err = config.Apply(ctx, c, parse(file), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := outcomes(res), strings.ReplaceAll(want, "created", "unchanged"); got != want {
		t.Fatalf("second apply:\n%s\nwant:\n%s", got, want)
	}
	// Prefixes that are not prefix-free: the file is refused naming both
	// members.
	bad := strings.Replace(file, "        tool_prefix: n.", "        tool_prefix: echo__x", 1)
	_, err = config.Apply(ctx, c, parse(bad), time.Now())
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(),
		`virtual server "team": invalid_argument: members[0] (echo): tool prefix "echo__" and members[1] (notes): tool prefix "echo__x" are not prefix-free`) {
		t.Fatalf("bad file: %v", err)
	}
	// Unknown fields are refused by the parser.
	if _, err := config.Parse([]byte("virtual_servers:\n  team:\n    members:\n      - server: echo\n        prefix: x\n"), func(string) (string, bool) { return "", false }); err == nil ||
		!strings.Contains(err.Error(), `unknown field "prefix"`) {
		t.Fatalf("unknown field: %v", err)
	}
	// tool_prefix: "" is present (no prefix); absent is nil (the default).
	f := parse("virtual_servers:\n  solo:\n    members:\n      - server: echo\n        tool_prefix: \"\"\n      - server: notes\n")
	if m := f.VirtualServers[0].GetMembers(); m[0].ToolPrefix == nil || m[0].GetToolPrefix() != "" || m[1].ToolPrefix != nil {
		t.Fatalf("tool_prefix presence: %v", f.VirtualServers[0])
	}
}
