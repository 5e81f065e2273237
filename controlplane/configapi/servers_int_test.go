package configapi_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

func TestServerValidation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const (
		at  = configv1.AuthType_AUTH_TYPE_API_KEY
		o2  = configv1.AuthType_AUTH_TYPE_OAUTH2
		ac  = configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE
		cc  = configv1.OAuth2Flow_O_AUTH2_FLOW_CLIENT_CREDENTIALS
		tok = "https://idp.example.com/token"
	)
	with := func(f func(s *configv1.McpServer)) *configv1.McpServer {
		s := httpServer("srv")
		f(s)
		return s
	}
	oauth := func(flow configv1.OAuth2Flow, f func(s *configv1.McpServer)) *configv1.McpServer {
		return with(func(s *configv1.McpServer) {
			s.AuthType, s.Oauth2Flow, s.ClientId, s.TokenUrl = o2, flow, "cid", tok
			s.AuthorizationUrl = "https://idp.example.com/authorize"
			s.ClientSecret = "cs"
			f(s)
		})
	}
	for _, tc := range []struct {
		name string
		srv  *configv1.McpServer
		msg  string
	}{
		{"no server", nil, "server: required"},
		{"empty name", with(func(s *configv1.McpServer) { s.Name = "" }), "name: required"},
		{"name with slash", with(func(s *configv1.McpServer) { s.Name = "a/b" }), "name: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"name leading dash", with(func(s *configv1.McpServer) { s.Name = "-a" }), "name: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"name too long", with(func(s *configv1.McpServer) { s.Name = strings.Repeat("a", 65) }), "name: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"no url", with(func(s *configv1.McpServer) { s.Url = "" }), "url: required"},
		{"relative url", with(func(s *configv1.McpServer) { s.Url = "/mcp" }), "url: must be an absolute http or https URL"},
		{"ftp url", with(func(s *configv1.McpServer) { s.Url = "ftp://h/mcp" }), "url: must be an absolute http or https URL"},
		{"url without host", with(func(s *configv1.McpServer) { s.Url = "https:///mcp" }), "url: must have a host"},
		{"url with credentials", with(func(s *configv1.McpServer) { s.Url = "https://u:p@h/mcp" }), "url: must not contain credentials"},
		{"unparsable url", with(func(s *configv1.McpServer) { s.Url = "https://h:bad/" }), "url: not a valid URL"},
		{"bad transport", with(func(s *configv1.McpServer) { s.Transport = 9 }), "transport: must be http or sse"},
		{"bad protocol version", with(func(s *configv1.McpServer) { s.ProtocolVersion = "2024-11-05" }), "protocol_version: must be empty (auto), 2025-11-25 or 2026-07-28"},
		{"bad auth type", with(func(s *configv1.McpServer) { s.AuthType = 99 }), "auth_type: unknown value"},
		{"api_key without value", with(func(s *configv1.McpServer) { s.AuthType = at }), "auth_value: required for auth_type api_key"},
		{"bearer without value", with(func(s *configv1.McpServer) { s.AuthType = configv1.AuthType_AUTH_TYPE_BEARER_TOKEN }), "auth_value: required for auth_type bearer_token"},
		{"authorization without value", with(func(s *configv1.McpServer) { s.AuthType = configv1.AuthType_AUTH_TYPE_AUTHORIZATION }), "auth_value: required for auth_type authorization"},
		{"token without value", with(func(s *configv1.McpServer) { s.AuthType = configv1.AuthType_AUTH_TYPE_TOKEN }), "auth_value: required for auth_type token"},
		{"basic without colon", with(func(s *configv1.McpServer) { s.AuthType, s.AuthValue = configv1.AuthType_AUTH_TYPE_BASIC, "userpass" }), "auth_value: must be user:password for auth_type basic"},
		{"basic empty user", with(func(s *configv1.McpServer) { s.AuthType, s.AuthValue = configv1.AuthType_AUTH_TYPE_BASIC, ":pass" }), "auth_value: must be user:password for auth_type basic"},
		{"auth value newline", with(func(s *configv1.McpServer) { s.AuthType, s.AuthValue = at, "a\nb" }), "auth_value: contains control characters"},
		{"none with value", with(func(s *configv1.McpServer) { s.AuthValue = "x" }), "auth_value: not allowed with auth_type none"},
		{"passthrough with value", with(func(s *configv1.McpServer) { s.AuthType, s.AuthValue = configv1.AuthType_AUTH_TYPE_PASSTHROUGH, "x" }), "auth_value: not allowed with auth_type passthrough"},
		{"oauth2 without flow", oauth(0, func(s *configv1.McpServer) {}), "oauth2_flow: required for auth_type oauth2"},
		{"oauth2 bad flow", oauth(7, func(s *configv1.McpServer) {}), "oauth2_flow: must be authorization_code, client_credentials or token_exchange"},
		{"oauth2 without client id", oauth(ac, func(s *configv1.McpServer) { s.ClientId = "" }), "client_id: required for auth_type oauth2"},
		{"oauth2 without token url", oauth(ac, func(s *configv1.McpServer) { s.TokenUrl = "" }), "token_url: required for auth_type oauth2"},
		{"code without authorization url", oauth(ac, func(s *configv1.McpServer) { s.AuthorizationUrl = "" }), "authorization_url: required for oauth2_flow authorization_code"},
		{"client credentials without secret", oauth(cc, func(s *configv1.McpServer) { s.ClientSecret = "" }), "client_secret: required for oauth2_flow client_credentials"},
		{"oauth2 with auth value", oauth(cc, func(s *configv1.McpServer) { s.AuthValue = "x" }), "auth_value: not allowed with auth_type oauth2"},
		{"relative token url", oauth(cc, func(s *configv1.McpServer) { s.TokenUrl = "/token" }), "token_url: must be an absolute http or https URL"},
		{"relative authorization url", oauth(ac, func(s *configv1.McpServer) { s.AuthorizationUrl = "idp/authorize" }), "authorization_url: must be an absolute http or https URL"},
		{"relative revocation url", oauth(ac, func(s *configv1.McpServer) { s.RevocationUrl = "/revoke" }), "revocation_url: must be an absolute http or https URL"},
		{"flow without oauth2", with(func(s *configv1.McpServer) { s.Oauth2Flow = ac }), "oauth2_flow: only allowed with auth_type oauth2"},
		{"client secret without oauth2", with(func(s *configv1.McpServer) { s.ClientSecret = "x" }), "client_secret: only allowed with auth_type oauth2"},
		{"bad scope", oauth(ac, func(s *configv1.McpServer) { s.Scopes = []string{"a", "b c"} }), "scopes[1]: must be a non-empty scope token without spaces or quotes"},
		{"header not a token", with(func(s *configv1.McpServer) { s.StaticHeaders = map[string]string{"X Bad": "v"} }), `static_headers: header name "X Bad" is not a valid HTTP token`},
		{"hop-by-hop header", with(func(s *configv1.McpServer) { s.StaticHeaders = map[string]string{"connection": "close"} }), "static_headers: Connection is hop-by-hop and cannot be set"},
		{"transfer-encoding header", with(func(s *configv1.McpServer) { s.StaticHeaders = map[string]string{"Transfer-Encoding": "x"} }), "static_headers: Transfer-Encoding is hop-by-hop and cannot be set"},
		{"admission header", with(func(s *configv1.McpServer) { s.StaticHeaders = map[string]string{"X-MCPGate-API-Key": "v"} }), "static_headers: X-Mcpgate-Api-Key is an admission header and cannot be set"},
		{"litellm header", with(func(s *configv1.McpServer) { s.StaticHeaders = map[string]string{"x-litellm-api-key": "v"} }), "static_headers: X-Litellm-Api-Key is an admission header and cannot be set"},
		{"passthrough header", with(func(s *configv1.McpServer) { s.StaticHeaders = map[string]string{"X-MCP-Other-Authorization": "v"} }), "static_headers: X-Mcp-Other-Authorization is a passthrough header and cannot be set"},
		{"authorization with api_key", with(func(s *configv1.McpServer) {
			s.AuthType, s.AuthValue, s.StaticHeaders = at, "k", map[string]string{"Authorization": "v"}
		}), "static_headers: Authorization is only allowed with auth_type none"},
		{"empty header value", with(func(s *configv1.McpServer) { s.StaticHeaders = map[string]string{"X-Team": ""} }), "static_headers[X-Team]: value required"},
		{"header value newline", with(func(s *configv1.McpServer) { s.StaticHeaders = map[string]string{"X-Team": "a\r\nb"} }), "static_headers[X-Team]: value contains control characters"},
		{"duplicate header", with(func(s *configv1.McpServer) { s.StaticHeaders = map[string]string{"X-Team": "a", "x-team": "b"} }), "static_headers: X-Team given more than once"},
		{"empty allowed tool", with(func(s *configv1.McpServer) { s.AllowedTools = []string{"a", ""} }), "allowed_tools[1]: must not be empty"},
		{"empty disallowed tool", with(func(s *configv1.McpServer) { s.DisallowedTools = []string{" "} }), "disallowed_tools[0]: must not be empty"},
		{"tool allowed and disallowed", with(func(s *configv1.McpServer) {
			s.AllowedTools, s.DisallowedTools = []string{"send", "read"}, []string{"x", "read"}
		}), `disallowed_tools[1]: tool "read" is also in allowed_tools`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: tc.srv})
			wantCode(t, err, connect.CodeInvalidArgument, tc.msg)
		})
	}
	// Nothing invalid was stored.
	resp, err := e.cli.Get(ctx, store.Prefix+store.KindServer+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Fatalf("%d servers stored by invalid requests", len(resp.Kvs))
	}

	// Valid definitions of every auth type are accepted.
	for i, s := range []*configv1.McpServer{
		httpServer("plain"),
		with(func(s *configv1.McpServer) { s.Name, s.AuthType, s.AuthValue = "k", at, "v" }),
		with(func(s *configv1.McpServer) {
			s.Name, s.AuthType, s.AuthValue, s.Transport = "b", configv1.AuthType_AUTH_TYPE_BASIC, "u:p", configv1.Transport_TRANSPORT_SSE
		}),
		with(func(s *configv1.McpServer) { s.Name, s.AuthType = "p", configv1.AuthType_AUTH_TYPE_PASSTHROUGH }),
		with(func(s *configv1.McpServer) {
			s.Name, s.StaticHeaders = "h", map[string]string{"Authorization": "Bearer x"}
		}),
		oauth(ac, func(s *configv1.McpServer) {
			s.Name, s.ClientSecret, s.Scopes = "gmail", "", []string{"openid", "email"}
		}),
		oauth(cc, func(s *configv1.McpServer) { s.Name = "m2m" }),
	} {
		if _, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: s}); err != nil {
			t.Fatalf("valid server %d (%s): %v", i, s.GetName(), err)
		}
	}
}

func TestPrincipalValidation(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	user := configv1.PrincipalKind_PRINCIPAL_KIND_USER
	for _, tc := range []struct {
		name string
		p    *configv1.Principal
		msg  string
	}{
		{"nil", nil, "principal: required"},
		{"bad name", &configv1.Principal{Name: "a b", Kind: user}, "name: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"no kind", &configv1.Principal{Name: "a"}, "kind: required (user or service_account)"},
		{"bad kind", &configv1.Principal{Name: "a", Kind: 5}, "kind: must be user or service_account"},
		{"bad role", &configv1.Principal{Name: "a", Kind: user, Role: 7}, "role: must be member or admin"},
		{"bad server", &configv1.Principal{Name: "a", Kind: user, Servers: []string{"gmail", "a/b"}}, `servers[1]: must be a server name or "*"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.admin().principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: tc.p})
			wantCode(t, err, connect.CodeInvalidArgument, tc.msg)
		})
	}
	res, err := e.admin().principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{Name: "bob", Kind: user}})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetPrincipal().GetRole() != configv1.Role_ROLE_MEMBER {
		t.Fatalf("default role = %v, want member", res.GetPrincipal().GetRole())
	}
	if got := len(e.st.Principals()); got != 2 { // admin and bob
		t.Fatalf("%d principals stored, want 2", got)
	}
}

func TestServerCAS(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.admin().servers
	created, err := c.PutServer(ctx, &configv1.PutServerRequest{Server: httpServer("gh")})
	if err != nil {
		t.Fatal(err)
	}
	rev := created.GetServer().GetRevision()
	if !created.GetChanged() || rev == 0 {
		t.Fatalf("create: changed=%v revision=%d", created.GetChanged(), rev)
	}
	_, err = c.PutServer(ctx, &configv1.PutServerRequest{Server: httpServer("gh")})
	wantCode(t, err, connect.CodeAborted, "mcp server already exists; pass its revision to replace it")

	// Two writers read the same revision; only the first wins.
	a, b := httpServer("gh"), httpServer("gh")
	a.Description, b.Description = "writer a", "writer b"
	if _, err := c.PutServer(ctx, &configv1.PutServerRequest{Server: a, ExpectedRevision: rev}); err != nil {
		t.Fatal(err)
	}
	_, err = c.PutServer(ctx, &configv1.PutServerRequest{Server: b, ExpectedRevision: rev})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	got, err := c.GetServer(ctx, &configv1.GetServerRequest{Name: "gh"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetServer().GetDescription() != "writer a" {
		t.Fatalf("description = %q", got.GetServer().GetDescription())
	}

	// Concurrent writers with the same expected revision through two
	// replicas: exactly one succeeds, the others are aborted.
	other := e.newReplica()
	rev = got.GetServer().GetRevision()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, losses := 0, 0
	for i := range 8 {
		wg.Go(func() {
			s := httpServer("gh")
			s.Description = strings.Repeat("x", i+1)
			r := e.replica
			if i%2 == 1 {
				r = other
			}
			_, err := r.as(e.adminKey).servers.PutServer(ctx, &configv1.PutServerRequest{Server: s, ExpectedRevision: rev})
			mu.Lock()
			defer mu.Unlock()
			switch connect.CodeOf(err) {
			case connect.CodeAborted:
				losses++
			default:
				if err != nil {
					t.Errorf("writer %d: %v", i, err)
				}
				wins++
			}
		})
	}
	wg.Wait()
	if wins != 1 || losses != 7 {
		t.Fatalf("wins=%d losses=%d, want 1 and 7", wins, losses)
	}

	// Delete with a stale revision is aborted; with the current one it works.
	_, err = c.DeleteServer(ctx, &configv1.DeleteServerRequest{Name: "gh", ExpectedRevision: rev})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	got, err = c.GetServer(ctx, &configv1.GetServerRequest{Name: "gh"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteServer(ctx, &configv1.DeleteServerRequest{Name: "gh", ExpectedRevision: got.GetServer().GetRevision()}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetServer(ctx, &configv1.GetServerRequest{Name: "gh"})
	wantCode(t, err, connect.CodeNotFound, "mcp server not found")
	_, err = c.DeleteServer(ctx, &configv1.DeleteServerRequest{Name: "gh"})
	wantCode(t, err, connect.CodeNotFound, "mcp server not found")
	// Replacing a deleted server is a conflict, not a silent create.
	_, err = c.PutServer(ctx, &configv1.PutServerRequest{Server: httpServer("gh"), ExpectedRevision: rev})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
}

func TestPrincipalCAS(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.admin().principals
	p := &configv1.Principal{Name: "carol", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: []string{"gmail"}}
	res, err := c.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: p})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: p})
	wantCode(t, err, connect.CodeAborted, "principal already exists; pass its revision to replace it")
	same, err := c.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: p, ExpectedRevision: res.GetPrincipal().GetRevision()})
	if err != nil || same.GetChanged() || same.GetPrincipal().GetRevision() != res.GetPrincipal().GetRevision() {
		t.Fatalf("idempotent put: changed=%v rev=%d err=%v", same.GetChanged(), same.GetPrincipal().GetRevision(), err)
	}
	p.Servers = []string{"*"}
	upd, err := c.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: p, ExpectedRevision: res.GetPrincipal().GetRevision()})
	if err != nil || !upd.GetChanged() {
		t.Fatalf("update: %v", err)
	}
	_, err = c.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: p, ExpectedRevision: res.GetPrincipal().GetRevision()})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	_, err = c.DeletePrincipal(ctx, &configv1.DeletePrincipalRequest{Name: "carol", ExpectedRevision: res.GetPrincipal().GetRevision()})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	if _, err := c.DeletePrincipal(ctx, &configv1.DeletePrincipalRequest{Name: "carol", ExpectedRevision: upd.GetPrincipal().GetRevision()}); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetPrincipal(ctx, &configv1.GetPrincipalRequest{Name: "carol"})
	wantCode(t, err, connect.CodeNotFound, "principal not found")
}

func TestServerSecretsWriteOnly(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.admin().servers
	const (
		authValue = "sk-live-AUTHVALUE-0123456789"
		hdrValue  = "team-HEADERSECRET-9876"
		cs        = "CLIENTSECRET-abcdef"
	)
	s := httpServer("svc")
	s.AuthType, s.AuthValue = configv1.AuthType_AUTH_TYPE_BEARER_TOKEN, authValue
	s.StaticHeaders = map[string]string{"X-Team": hdrValue, "X-Env": "prod-ENVSECRET"}
	s.AllowedTools = []string{"read"}
	created, err := c.PutServer(ctx, &configv1.PutServerRequest{Server: s})
	if err != nil {
		t.Fatal(err)
	}
	m2m := httpServer("m2m")
	m2m.AuthType, m2m.Oauth2Flow, m2m.ClientId, m2m.ClientSecret, m2m.TokenUrl = configv1.AuthType_AUTH_TYPE_OAUTH2, configv1.OAuth2Flow_O_AUTH2_FLOW_CLIENT_CREDENTIALS, "cid", cs, "https://idp.example.com/token"
	if _, err := c.PutServer(ctx, &configv1.PutServerRequest{Server: m2m}); err != nil {
		t.Fatal(err)
	}
	secrets := []string{authValue, hdrValue, "ENVSECRET", cs}
	noSecrets := func(what string, m proto.Message) {
		t.Helper()
		js, _ := protojson.Marshal(m)
		bin, _ := proto.Marshal(m)
		for _, sec := range secrets {
			if strings.Contains(string(js), sec) || bytes.Contains(bin, []byte(sec)) {
				t.Fatalf("%s leaks a secret: %s", what, js)
			}
		}
	}
	noSecrets("PutServer", created)
	got, err := c.GetServer(ctx, &configv1.GetServerRequest{Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	noSecrets("GetServer", got)
	gs := got.GetServer()
	if !gs.GetAuthValueSet() || gs.GetClientSecretSet() || strings.Join(gs.GetStaticHeaderNames(), ",") != "X-Env,X-Team" || gs.GetAuthValue() != "" || len(gs.GetStaticHeaders()) != 0 {
		t.Fatalf("public definition = %v", gs)
	}
	list, err := c.ListServers(ctx, &configv1.ListServersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	noSecrets("ListServers", list)
	if len(list.GetServers()) != 2 || !list.GetServers()[0].GetClientSecretSet() {
		t.Fatalf("list = %v", list)
	}
	for _, name := range []string{"svc", "m2m"} {
		raw := e.rawValue(store.KindServer, name)
		for _, sec := range secrets {
			if bytes.Contains(raw, []byte(sec)) {
				t.Fatalf("raw etcd value of %s contains a plaintext secret", name)
			}
		}
	}
	if strings.Contains(e.logs.String(), authValue) || strings.Contains(e.logs.String(), cs) || strings.Contains(e.logs.String(), hdrValue) {
		t.Fatal("a secret reached the logs")
	}

	// Putting the same definition again changes nothing and writes nothing.
	rev := gs.GetRevision()
	same, err := c.PutServer(ctx, &configv1.PutServerRequest{Server: s, ExpectedRevision: rev})
	if err != nil || same.GetChanged() || same.GetServer().GetRevision() != rev {
		t.Fatalf("idempotent put: changed=%v rev=%d/%d err=%v", same.GetChanged(), same.GetServer().GetRevision(), rev, err)
	}
	// The public form read back (secrets empty) keeps the stored secrets,
	// with empty header values standing for "keep".
	readBack := proto.CloneOf(gs)
	readBack.StaticHeaders = map[string]string{"X-Team": "", "X-Env": ""}
	same, err = c.PutServer(ctx, &configv1.PutServerRequest{Server: readBack, ExpectedRevision: rev})
	if err != nil || same.GetChanged() {
		t.Fatalf("put of read-back definition: changed=%v err=%v", same.GetChanged(), err)
	}
	// A changed secret is a change.
	s2 := proto.CloneOf(s)
	s2.AuthValue = "rotated-value"
	upd, err := c.PutServer(ctx, &configv1.PutServerRequest{Server: s2, ExpectedRevision: rev})
	if err != nil || !upd.GetChanged() {
		t.Fatalf("secret rotation: changed=%v err=%v", upd.GetChanged(), err)
	}
	if cur, _ := e.st.Server("svc"); cur.Secrets.GetAuthValue() != "rotated-value" || cur.Secrets.GetStaticHeaders()["X-Team"] != hdrValue {
		t.Fatal("rotation did not store the new secret or lost a kept one")
	}
	// Dropping a header needs replace_secrets; auth_type none then must not
	// inherit the old auth_value.
	plain := httpServer("svc")
	plain.StaticHeaders = map[string]string{"X-Team": hdrValue}
	res, err := c.PutServer(ctx, &configv1.PutServerRequest{Server: plain, ExpectedRevision: upd.GetServer().GetRevision(), ReplaceSecrets: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetServer().GetAuthValueSet() || strings.Join(res.GetServer().GetStaticHeaderNames(), ",") != "X-Team" {
		t.Fatalf("after replace_secrets: %v", res.GetServer())
	}
	// Without replace_secrets, switching to auth_type none drops the unused
	// auth_value instead of failing validation.
	keep := httpServer("svc")
	keep.AuthType, keep.AuthValue = configv1.AuthType_AUTH_TYPE_API_KEY, "k1"
	res, err = c.PutServer(ctx, &configv1.PutServerRequest{Server: keep, ExpectedRevision: res.GetServer().GetRevision()})
	if err != nil || strings.Join(res.GetServer().GetStaticHeaderNames(), ",") != "X-Team" {
		t.Fatalf("header not kept: %v %v", res.GetServer(), err)
	}
	res, err = c.PutServer(ctx, &configv1.PutServerRequest{Server: httpServer("svc"), ExpectedRevision: res.GetServer().GetRevision()})
	if err != nil || res.GetServer().GetAuthValueSet() {
		t.Fatalf("switch to none: %v %v", res.GetServer(), err)
	}
}
