package configapi_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

func TestGroupValidation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		g    *configv1.Group
		msg  string
	}{
		{"nil", nil, "group: required"},
		{"no name", &configv1.Group{}, "name: required"},
		{"bad name", &configv1.Group{Name: "a b"}, "name: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"bad server", &configv1.Group{Name: "release", Servers: []string{"github", "a/b"}}, `servers[1]: must be a server name or "*"`},
		{"long description", &configv1.Group{Name: "release", Description: string(make([]byte, 257))}, "description: longer than 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.admin().groups.PutGroup(ctx, &configv1.PutGroupRequest{Group: tc.g})
			wantCode(t, err, connect.CodeInvalidArgument, tc.msg)
		})
	}
	// A principal's groups follow the same grammar.
	_, err := e.admin().principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: "bob", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Groups: []string{"release", "x y"},
	}})
	wantCode(t, err, connect.CodeInvalidArgument, "groups[1]: must be a group name")
	for _, name := range []string{"", "a/b"} {
		_, err = e.admin().groups.GetGroup(ctx, &configv1.GetGroupRequest{Name: name})
		wantCode(t, err, connect.CodeInvalidArgument, "")
		_, err = e.admin().groups.DeleteGroup(ctx, &configv1.DeleteGroupRequest{Name: name})
		wantCode(t, err, connect.CodeInvalidArgument, "")
	}
	_, err = e.admin().groups.DeleteGroup(ctx, &configv1.DeleteGroupRequest{Name: "release", ExpectedRevision: -1})
	wantCode(t, err, connect.CodeInvalidArgument, "expected_revision: must not be negative")
	if got := len(e.st.Groups()); got != 0 {
		t.Fatalf("%d groups stored after invalid requests, want 0", got)
	}
	// Members may not call the admin API.
	e.putPrincipal("member", configv1.Role_ROLE_MEMBER)
	key, _ := e.createKey("member")
	_, err = e.as(key).groups.ListGroups(ctx, &configv1.ListGroupsRequest{})
	wantCode(t, err, connect.CodePermissionDenied, "")
}

func TestGroupCRUDAndCAS(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	a := e.admin().groups
	// Unknown servers are allowed, as for principals.
	put, err := a.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "release", Servers: []string{"github", "notyet"}, Description: "release managers"}})
	if err != nil {
		t.Fatal(err)
	}
	if !put.GetChanged() || put.GetGroup().GetRevision() == 0 {
		t.Fatalf("create: changed=%v revision=%d", put.GetChanged(), put.GetGroup().GetRevision())
	}
	rev := put.GetGroup().GetRevision()
	_, err = a.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "release"}})
	wantCode(t, err, connect.CodeAborted, "group already exists; pass its revision to replace it")
	_, err = a.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "release"}, ExpectedRevision: rev + 100})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	// Same content: unchanged, same revision.
	same, err := a.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "release", Servers: []string{"github", "notyet"}, Description: "release managers", Revision: 77}, ExpectedRevision: rev})
	if err != nil {
		t.Fatal(err)
	}
	if same.GetChanged() || same.GetGroup().GetRevision() != rev {
		t.Fatalf("identical put: changed=%v revision=%d, want false %d", same.GetChanged(), same.GetGroup().GetRevision(), rev)
	}
	upd, err := a.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "release", Servers: []string{"github"}}, ExpectedRevision: rev})
	if err != nil {
		t.Fatal(err)
	}
	if !upd.GetChanged() || upd.GetGroup().GetRevision() <= rev {
		t.Fatalf("replace: changed=%v revision=%d", upd.GetChanged(), upd.GetGroup().GetRevision())
	}
	if _, err := a.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "dev", Servers: []string{"*"}}}); err != nil {
		t.Fatal(err)
	}
	list, err := a.ListGroups(ctx, &configv1.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := []*configv1.Group{
		{Name: "dev", Servers: []string{"*"}},
		{Name: "release", Servers: []string{"github"}, Revision: upd.GetGroup().GetRevision()},
	}
	want[0].Revision = list.GetGroups()[0].GetRevision()
	if w := (&configv1.ListGroupsResponse{Groups: want}); !proto.Equal(w, list) {
		t.Fatalf("list = %v, want %v", list, w)
	}
	// Members: admin-set and asserted.
	user := configv1.PrincipalKind_PRINCIPAL_KIND_USER
	for _, p := range []*configv1.Principal{
		{Name: "carol", Kind: user, Groups: []string{"release"}},
		{Name: "alice", Kind: user, Groups: []string{"dev"}},
		{Name: "dave", Kind: user},
	} {
		if _, err := e.admin().principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: p}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.st.SetAssertedGroups(ctx, "dave", "okta", []string{"release"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "asserted membership in the cache", func() bool {
		p, _ := e.st.Principal("dave")
		return len(p.GetAssertedGroups()) == 1
	})
	got, err := a.GetGroup(ctx, &configv1.GetGroupRequest{Name: "release"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.GetMembers(), []string{"carol", "dave"}) {
		t.Fatalf("members = %q, want [carol dave]", got.GetMembers())
	}
	_, err = a.DeleteGroup(ctx, &configv1.DeleteGroupRequest{Name: "release", ExpectedRevision: rev})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	if _, err := a.DeleteGroup(ctx, &configv1.DeleteGroupRequest{Name: "release", ExpectedRevision: upd.GetGroup().GetRevision()}); err != nil {
		t.Fatal(err)
	}
	_, err = a.GetGroup(ctx, &configv1.GetGroupRequest{Name: "release"})
	wantCode(t, err, connect.CodeNotFound, "group not found")
	_, err = a.DeleteGroup(ctx, &configv1.DeleteGroupRequest{Name: "release"})
	wantCode(t, err, connect.CodeNotFound, "group not found")
	if !containsAll(e.logs.String(), `"kind":"group"`, `"action":"delete"`) {
		t.Fatalf("no group audit line in logs")
	}
}

// TestPrincipalAssertedGroupsOutputOnly: PutPrincipal ignores a client's
// asserted_groups and keeps the stored ones; GetPrincipal shows where each
// grant comes from.
func TestPrincipalAssertedGroupsOutputOnly(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	user := configv1.PrincipalKind_PRINCIPAL_KIND_USER
	for _, g := range []*configv1.Group{
		{Name: "release", Servers: []string{"github", "notes"}},
		{Name: "eng", Servers: []string{"jira"}},
	} {
		if _, err := e.admin().groups.PutGroup(ctx, &configv1.PutGroupRequest{Group: g}); err != nil {
			t.Fatal(err)
		}
	}
	forged := []*configv1.GroupAssertion{{Group: "eng", IdentityProvider: "okta", AssertTime: timestamppb.Now()}}
	put, err := e.admin().principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: "bob", Kind: user, Servers: []string{"notes"}, Groups: []string{"release"}, AssertedGroups: forged,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(put.GetPrincipal().GetAssertedGroups()); n != 0 {
		t.Fatalf("client-supplied asserted_groups stored: %d", n)
	}
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	if err := e.st.SetAssertedGroups(ctx, "bob", "okta", []string{"eng"}, at); err != nil {
		t.Fatal(err)
	}
	var cur *configv1.Principal
	waitFor(t, "asserted group in the cache", func() bool {
		cur, _ = e.st.Principal("bob")
		return len(cur.GetAssertedGroups()) == 1
	})
	// An admin replace (with forged or no assertions) keeps the stored ones.
	upd, err := e.admin().principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: "bob", Kind: user, Servers: []string{"notes", "wiki"}, Groups: []string{"release"},
		AssertedGroups: []*configv1.GroupAssertion{{Group: "release", IdentityProvider: "evil"}},
	}, ExpectedRevision: cur.GetRevision()})
	if err != nil {
		t.Fatal(err)
	}
	wantAsserted := []*configv1.GroupAssertion{{Group: "eng", IdentityProvider: "okta", AssertTime: timestamppb.New(at)}}
	if w := (&configv1.Principal{AssertedGroups: wantAsserted}); !proto.Equal(w, &configv1.Principal{AssertedGroups: upd.GetPrincipal().GetAssertedGroups()}) {
		t.Fatalf("asserted after admin put = %v, want %v", upd.GetPrincipal().GetAssertedGroups(), wantAsserted)
	}
	get, err := e.admin().principals.GetPrincipal(ctx, &configv1.GetPrincipalRequest{Name: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(get.GetPrincipal().GetAssertedGroups()[0], wantAsserted[0]) {
		t.Fatalf("get: asserted = %v", get.GetPrincipal().GetAssertedGroups())
	}
	own := &configv1.GrantSource{}
	release := &configv1.GrantSource{Group: "release"}
	eng := &configv1.GrantSource{Group: "eng", IdentityProvider: "okta", AssertTime: timestamppb.New(at)}
	want := []*configv1.EffectiveServer{
		{Server: "github", Sources: []*configv1.GrantSource{release}},
		{Server: "jira", Sources: []*configv1.GrantSource{eng}},
		{Server: "notes", Sources: []*configv1.GrantSource{own, release}},
		{Server: "wiki", Sources: []*configv1.GrantSource{own}},
	}
	if w := (&configv1.GetPrincipalResponse{EffectiveServers: want}); !proto.Equal(w, &configv1.GetPrincipalResponse{EffectiveServers: get.GetEffectiveServers()}) {
		t.Fatalf("effective servers = %v, want %v", get.GetEffectiveServers(), want)
	}
	// SetAssertedGroups on a principal that does not exist.
	if err := e.st.SetAssertedGroups(ctx, "nobody", "okta", []string{"eng"}, at); err == nil {
		t.Fatal("SetAssertedGroups on a missing principal succeeded")
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
