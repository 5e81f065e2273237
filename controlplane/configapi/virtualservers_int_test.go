package configapi_test

import (
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// putPlainServer creates an auth-less server called name.
func putPlainServer(t *testing.T, e *env, name string) {
	t.Helper()
	_, err := e.admin().servers.PutServer(t.Context(), &configv1.PutServerRequest{Server: &configv1.McpServer{
		Name: name, Url: "https://upstream.example/" + name + "/mcp", AuthType: configv1.AuthType_AUTH_TYPE_NONE,
	}})
	if err != nil {
		t.Fatalf("put server %s: %v", name, err)
	}
}

func teamVirtual() *configv1.VirtualServer {
	return &configv1.VirtualServer{Name: "team", Description: "the team's tools", Scopes: []string{"team.use"}, Members: []*configv1.VirtualServerMember{
		{Server: "echo", IncludeTools: []string{"echo", "search"}, Renames: map[string]string{"search": "find"}},
		{Server: "notes", ToolPrefix: proto.String("n."), ExcludeTools: []string{"delete"}},
	}}
}

func TestVirtualServerValidation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, n := range []string{"echo", "notes", "Gmail"} {
		putPlainServer(t, e, n)
	}
	with := func(f func(v *configv1.VirtualServer)) *configv1.VirtualServer {
		v := teamVirtual()
		f(v)
		return v
	}
	member := func(server string) *configv1.VirtualServerMember {
		return &configv1.VirtualServerMember{Server: server}
	}
	for _, tc := range []struct {
		name string
		v    *configv1.VirtualServer
		msg  string
	}{
		{"nil", nil, "virtual_server: required"},
		{"no name", with(func(v *configv1.VirtualServer) { v.Name = "" }), "name: required"},
		{"bad name", with(func(v *configv1.VirtualServer) { v.Name = "a b" }), "name: " + wire.ServerNameRule},
		{"name of a server", with(func(v *configv1.VirtualServer) { v.Name = "Gmail" }),
			`name: virtual server "Gmail" and server "Gmail": a virtual server may not share a server's name (one route each)`},
		{"unknown member", with(func(v *configv1.VirtualServer) { v.Members = append(v.Members, member("calendar")) }),
			`members[2].server: virtual server "team" names server "calendar", which does not exist`},
		{"bad member name", with(func(v *configv1.VirtualServer) { v.Members[1].Server = "a/b" }), "members[1].server: " + wire.ServerNameRule},
		{"duplicate member", with(func(v *configv1.VirtualServer) { v.Members = append(v.Members, member("echo")) }),
			"members[2] (echo): the server is already members[0]"},
		{"no members", with(func(v *configv1.VirtualServer) { v.Members = nil }), "members: at least one member required"},
		{"prefixes not prefix-free", with(func(v *configv1.VirtualServer) { v.Members[1].ToolPrefix = proto.String("echo__x") }),
			`members[0] (echo): tool prefix "echo__" and members[1] (notes): tool prefix "echo__x" are not prefix-free (one starts with the other, so a name could belong to both)`},
		{"empty prefix beside another", with(func(v *configv1.VirtualServer) { v.Members[1].ToolPrefix = proto.String("") }),
			`members[0] (echo): tool prefix "echo__" and members[1] (notes): tool prefix "" are not prefix-free (one starts with the other, so a name could belong to both)`},
		{"invalid prefix", with(func(v *configv1.VirtualServer) { v.Members[1].ToolPrefix = proto.String("n/") }),
			`members[1] (notes): tool prefix "n/" must be at most 64 characters of A-Z, a-z, 0-9, '_', '-' and '.'`},
		{"rename target invalid", with(func(v *configv1.VirtualServer) { v.Members[0].Renames["search"] = "find it" }),
			`members[0] (echo): renames["search"] = "find it": ` + wire.ToolNameRule},
		{"rename target too long", with(func(v *configv1.VirtualServer) { v.Members[0].Renames["search"] = strings.Repeat("f", 129) }),
			`members[0] (echo): renames["search"] = "` + strings.Repeat("f", 129) + `": ` + wire.ToolNameRule},
		{"renames collide", with(func(v *configv1.VirtualServer) { v.Members[1].Renames = map[string]string{"lookup": "find"} }),
			`members[1] (notes): renames["lookup"] = "find" collides with members[0] (echo): renames["search"] = "find"`},
		{"rename in another member's prefix space", with(func(v *configv1.VirtualServer) { v.Members[0].Renames["search"] = "n.find" }),
			`members[0] (echo): renames["search"] = "n.find" falls in members[1] (notes)'s names (tool prefix "n.")`},
		{"separator makes prefixes overlap", with(func(v *configv1.VirtualServer) {
			v.ToolSeparator = "."
			v.Members[1].ToolPrefix = proto.String("echo.x.")
		}), `members[0] (echo): tool prefix "echo." and members[1] (notes): tool prefix "echo.x." are not prefix-free (one starts with the other, so a name could belong to both)`},
		{"bad separator", with(func(v *configv1.VirtualServer) { v.ToolSeparator = "::" }), "tool_separator: must be 1 to 8 characters of A-Z, a-z, 0-9, '_', '-' and '.'"},
		{"bad include", with(func(v *configv1.VirtualServer) { v.Members[0].IncludeTools = []string{"echo", ""} }),
			"members[0] (echo): include_tools[1]: must be 1 to 128 characters without control characters"},
		{"bad exclude", with(func(v *configv1.VirtualServer) { v.Members[1].ExcludeTools = []string{"a\nb"} }),
			"members[1] (notes): exclude_tools[0]: must be 1 to 128 characters without control characters"},
		{"bad scope", with(func(v *configv1.VirtualServer) { v.Scopes = []string{"a b"} }), "scopes[0]: must be a non-empty scope token without spaces or quotes"},
		{"long description", with(func(v *configv1.VirtualServer) { v.Description = strings.Repeat("d", 257) }), "description: longer than 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.admin().virtual.PutVirtualServer(ctx, &configv1.PutVirtualServerRequest{VirtualServer: tc.v})
			wantCode(t, err, connect.CodeInvalidArgument, tc.msg)
		})
	}
	if got := len(e.st.VirtualServers()); got != 0 {
		t.Fatalf("%d virtual servers stored after invalid requests, want 0", got)
	}
	// Members may not call the admin API.
	e.putPrincipal("member", configv1.Role_ROLE_MEMBER)
	key, _ := e.createKey("member")
	_, err := e.as(key).virtual.ListVirtualServers(ctx, &configv1.ListVirtualServersRequest{})
	wantCode(t, err, connect.CodePermissionDenied, "")
}

func TestVirtualServerCRUDAndNamespace(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	a := e.admin()
	for _, n := range []string{"echo", "notes"} {
		putPlainServer(t, e, n)
	}
	put, err := a.virtual.PutVirtualServer(ctx, &configv1.PutVirtualServerRequest{VirtualServer: teamVirtual()})
	if err != nil {
		t.Fatal(err)
	}
	rev := put.GetVirtualServer().GetRevision()
	if !put.GetChanged() || rev == 0 {
		t.Fatalf("create: changed=%v revision=%d", put.GetChanged(), rev)
	}
	_, err = a.virtual.PutVirtualServer(ctx, &configv1.PutVirtualServerRequest{VirtualServer: teamVirtual()})
	wantCode(t, err, connect.CodeAborted, "virtual server already exists; pass its revision to replace it")
	_, err = a.virtual.PutVirtualServer(ctx, &configv1.PutVirtualServerRequest{VirtualServer: teamVirtual(), ExpectedRevision: rev + 100})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	same, err := a.virtual.PutVirtualServer(ctx, &configv1.PutVirtualServerRequest{VirtualServer: teamVirtual(), ExpectedRevision: rev})
	if err != nil || same.GetChanged() || same.GetVirtualServer().GetRevision() != rev {
		t.Fatalf("same content: %v %v", same, err)
	}
	got, err := a.virtual.GetVirtualServer(ctx, &configv1.GetVirtualServerRequest{Name: "team"})
	if err != nil {
		t.Fatal(err)
	}
	want := teamVirtual()
	want.Revision = rev
	if !proto.Equal(got.GetVirtualServer(), want) {
		t.Fatalf("get = %v, want %v", got.GetVirtualServer(), want)
	}
	list, err := a.virtual.ListVirtualServers(ctx, &configv1.ListVirtualServersRequest{})
	if err != nil || len(list.GetVirtualServers()) != 1 || !proto.Equal(list.GetVirtualServers()[0], want) {
		t.Fatalf("list = %v, %v", list, err)
	}
	// One namespace: a server may not take the virtual server's name.
	_, err = a.servers.PutServer(ctx, &configv1.PutServerRequest{Server: &configv1.McpServer{Name: "team", Url: "https://upstream.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_NONE}})
	wantCode(t, err, connect.CodeInvalidArgument, `name: server "team" and virtual server "team": a server may not share a virtual server's name (one route each)`)
	// The root aggregate's default prefixes stay prefix-free.
	_, err = a.servers.PutServer(ctx, &configv1.PutServerRequest{Server: &configv1.McpServer{Name: "echo__x", Url: "https://upstream.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_NONE}})
	wantCode(t, err, connect.CodeInvalidArgument, `name: server "echo__x"'s tool prefix "echo__x__" and server "echo"'s tool prefix "echo__" are not prefix-free: on /mcp a name could belong to both`)
	// A server a virtual server has as a member is not deleted.
	_, err = a.servers.DeleteServer(ctx, &configv1.DeleteServerRequest{Name: "notes"})
	wantCode(t, err, connect.CodeFailedPrecondition, `server "notes" is members[1] of virtual server "team": remove it from the virtual server first`)
	if _, ok := e.st.Server("notes"); !ok {
		t.Fatal("referenced server deleted")
	}
	// Principals and groups are granted it like a server.
	_, err = a.principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: "vic", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: []string{"team"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.groups.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "eng", Servers: []string{"team"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.virtual.DeleteVirtualServer(ctx, &configv1.DeleteVirtualServerRequest{Name: "team", ExpectedRevision: rev + 100})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	if _, err = a.virtual.DeleteVirtualServer(ctx, &configv1.DeleteVirtualServerRequest{Name: "team", ExpectedRevision: rev}); err != nil {
		t.Fatal(err)
	}
	_, err = a.virtual.GetVirtualServer(ctx, &configv1.GetVirtualServerRequest{Name: "team"})
	wantCode(t, err, connect.CodeNotFound, "virtual server not found")
	_, err = a.virtual.DeleteVirtualServer(ctx, &configv1.DeleteVirtualServerRequest{Name: "team"})
	wantCode(t, err, connect.CodeNotFound, "virtual server not found")
	// Unreferenced now: the server may go.
	if _, err = a.servers.DeleteServer(ctx, &configv1.DeleteServerRequest{Name: "notes"}); err != nil {
		t.Fatal(err)
	}
}

// TestVirtualServerNamespaceRace: the store's own transaction refuses a
// virtual server named like a server even when the cache did not show it
// (and a server named like a virtual server).
func TestVirtualServerNamespaceRace(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	putPlainServer(t, e, "echo")
	_, err := e.st.PutVirtualServer(ctx, &configv1.VirtualServer{Name: "echo", Members: []*configv1.VirtualServerMember{{Server: "echo"}}}, 0)
	if err == nil || !strings.Contains(err.Error(), "revision conflict") {
		t.Fatalf("virtual server over a server: %v", err)
	}
	_, err = e.st.PutVirtualServer(ctx, &configv1.VirtualServer{Name: "v", Members: []*configv1.VirtualServerMember{{Server: "nope"}}}, 0)
	if err == nil || !strings.Contains(err.Error(), "revision conflict") {
		t.Fatalf("virtual server with a missing member: %v", err)
	}
	if _, err = e.st.PutVirtualServer(ctx, &configv1.VirtualServer{Name: "v", Members: []*configv1.VirtualServerMember{{Server: "echo"}}}, 0); err != nil {
		t.Fatal(err)
	}
	_, err = e.st.PutServer(ctx, &configv1.McpServer{Name: "v", Url: "https://upstream.example/mcp"}, nil, 0)
	if err == nil || !strings.Contains(err.Error(), "revision conflict") {
		t.Fatalf("server over a virtual server: %v", err)
	}
}
