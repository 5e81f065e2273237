package config_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
)

// TestApplyGroups: `groups:` in the file become groups (before the
// principals naming them), principals' `groups:` their admin-set
// memberships; applying again changes nothing, an edit changes only the
// edited object.
func TestApplyGroups(t *testing.T) {
	c := controlPlane(t)
	const file = `
mcp_servers:
  github:
    url: http://127.0.0.1:9/mcp
  notes:
    url: http://127.0.0.1:9/mcp
groups:
  release:
    servers: [github]
    description: release managers
  eng:
    servers: [notes]
principals:
  - name: alice
    servers: [notes]
    groups: [release]
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
	want := "server github created\nserver notes created\ngroup eng created\ngroup release created\nprincipal alice created\n"
	if got := outcomes(res); got != want {
		t.Fatalf("first apply:\n%s\nwant:\n%s", got, want)
	}
	g, err := c.Groups.GetGroup(ctx, &configv1.GetGroupRequest{Name: "release"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.GetGroup().GetServers(), []string{"github"}) || g.GetGroup().GetDescription() != "release managers" ||
		!slices.Equal(g.GetMembers(), []string{"alice"}) {
		t.Fatalf("group release = %v", g)
	}
	p, err := c.Principals.GetPrincipal(ctx, &configv1.GetPrincipalRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.GetPrincipal().GetGroups(), []string{"release"}) || len(p.GetEffectiveServers()) != 2 {
		t.Fatalf("alice = %v", p)
	}
	res, err = config.Apply(ctx, c, parse(file), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := outcomes(res), strings.ReplaceAll(want, "created", "unchanged"); got != want {
		t.Fatalf("second apply:\n%s\nwant:\n%s", got, want)
	}
	edited := strings.Replace(file, "servers: [github]", "servers: [github, notes]", 1)
	edited = strings.Replace(edited, "groups: [release]", "groups: [release, eng]", 1)
	res, err = config.Apply(ctx, c, parse(edited), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want = "server github unchanged\nserver notes unchanged\ngroup eng unchanged\ngroup release changed\nprincipal alice changed\n"
	if got := outcomes(res); got != want {
		t.Fatalf("edited apply:\n%s\nwant:\n%s", got, want)
	}
	// A bad group name is the control plane's precise 4xx, naming the group.
	_, err = config.Apply(ctx, c, parse("groups:\n  \"bad name\":\n    servers: [github]\n"), time.Now())
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), `group "bad name": invalid_argument: name: must match`) {
		t.Fatalf("bad group name: %v", err)
	}
}
