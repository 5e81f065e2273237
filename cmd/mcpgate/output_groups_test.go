package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// TestPrincipalGrantSources: principals get names each grant's source:
// own, an admin-set group, or a group an identity provider asserted (with
// when).
func TestPrincipalGrantSources(t *testing.T) {
	at := timestamppb.New(time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
	p := &configv1.Principal{
		Name: "pat", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: configv1.Role_ROLE_MEMBER,
		Servers: []string{"notes"}, Groups: []string{"release"}, Revision: 12,
		AssertedGroups: []*configv1.GroupAssertion{{Group: "eng", IdentityProvider: "okta", AssertTime: at}},
	}
	eff := []*configv1.EffectiveServer{
		{Server: "github", Sources: []*configv1.GrantSource{{Group: "release"}}},
		{Server: "notes", Sources: []*configv1.GrantSource{{}, {Group: "eng", IdentityProvider: "okta", AssertTime: at}}},
	}
	var b strings.Builder
	(&printer{w: &b}).principal(p, eff)
	want := `NAME             pat
kind             user
role             member
servers          notes
groups           release
asserted_groups  eng (okta, 2026-11-30T09:00:00Z)
display_name     -
revision         12
grant github     group release (admin)
grant notes      own; group eng (idp okta, asserted 2026-11-30T09:00:00Z)
`
	if b.String() != want {
		t.Fatalf("principals get:\n%s\nwant:\n%s", b.String(), want)
	}
}
