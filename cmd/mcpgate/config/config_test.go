package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

const full = `
public_url: https://gw.example.com
mcp_servers:
  Gmail:
    url: https://gmail.example.com/mcp
    transport: sse
    auth_type: oauth2
    auth_value: os.environ/AUTH_VALUE
    oauth2_flow: authorization_code
    client_id: cid
    client_secret: os.environ/CLIENT_SECRET
    authorization_url: https://accounts.example.com/auth
    token_url: https://accounts.example.com/token
    scopes: [a, b]
    static_headers:
      X-Team: os.environ/TEAM
    allowed_tools: [send]
    disallowed_tools: [delete]
    description: mail
    revocation_url: https://accounts.example.com/revoke
    issuer: https://accounts.example.com
    protocol_version: 2025-11-25
  a-first:
    url: http://127.0.0.1:9/mcp
principals:
  - name: alice
    kind: user
    role: admin
    servers: [Gmail]
    display_name: Alice
  - name: ci
    kind: service_account
    servers: ["*"]
keys:
  - principal: ci
    name: pipeline
    key: os.environ/CI_KEY
    expires: 2030-01-02T03:04:05Z
  - principal: alice
    name: laptop
    expires: 720h
`

func TestParse_EveryField(t *testing.T) {
	f, err := config.Parse([]byte(full), env(map[string]string{
		"AUTH_VALUE": "av", "CLIENT_SECRET": "cs", "TEAM": "blue", "CI_KEY": "mcpg_pinned",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if f.PublicURL != "https://gw.example.com" {
		t.Errorf("public_url = %q", f.PublicURL)
	}
	wantServers := []*configv1.McpServer{{
		Name:             "Gmail",
		Url:              "https://gmail.example.com/mcp",
		Transport:        configv1.Transport_TRANSPORT_SSE,
		AuthType:         configv1.AuthType_AUTH_TYPE_OAUTH2,
		AuthValue:        "av",
		Oauth2Flow:       configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE,
		ClientId:         "cid",
		ClientSecret:     "cs",
		AuthorizationUrl: "https://accounts.example.com/auth",
		TokenUrl:         "https://accounts.example.com/token",
		Scopes:           []string{"a", "b"},
		StaticHeaders:    map[string]string{"X-Team": "blue"},
		AllowedTools:     []string{"send"},
		DisallowedTools:  []string{"delete"},
		Description:      "mail",
		RevocationUrl:    "https://accounts.example.com/revoke",
		Issuer:           "https://accounts.example.com",
		ProtocolVersion:  "2025-11-25",
	}, {
		Name:      "a-first",
		Url:       "http://127.0.0.1:9/mcp",
		Transport: configv1.Transport_TRANSPORT_HTTP,
		AuthType:  configv1.AuthType_AUTH_TYPE_NONE,
	}}
	if len(f.Servers) != len(wantServers) {
		t.Fatalf("got %d servers", len(f.Servers))
	}
	for i := range wantServers {
		if !proto.Equal(f.Servers[i], wantServers[i]) {
			t.Errorf("server %d:\n got %v\nwant %v", i, f.Servers[i], wantServers[i])
		}
	}
	wantPrincipals := []*configv1.Principal{
		{Name: "alice", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: configv1.Role_ROLE_ADMIN, Servers: []string{"Gmail"}, DisplayName: "Alice"},
		{Name: "ci", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT, Role: configv1.Role_ROLE_MEMBER, Servers: []string{"*"}},
	}
	if len(f.Principals) != len(wantPrincipals) {
		t.Fatalf("got %d principals", len(f.Principals))
	}
	for i := range wantPrincipals {
		if !proto.Equal(f.Principals[i], wantPrincipals[i]) {
			t.Errorf("principal %d:\n got %v\nwant %v", i, f.Principals[i], wantPrincipals[i])
		}
	}
	wantKeys := []config.Key{
		{Principal: "ci", Name: "pipeline", Value: "mcpg_pinned", ExpireTime: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Line: 35},
		{Principal: "alice", Name: "laptop", TTL: 720 * time.Hour, Line: 39},
	}
	if len(f.Keys) != len(wantKeys) {
		t.Fatalf("got %d keys", len(f.Keys))
	}
	for i := range wantKeys {
		if g, w := f.Keys[i], wantKeys[i]; g.Principal != w.Principal || g.Name != w.Name || g.Value != w.Value ||
			g.TTL != w.TTL || !g.ExpireTime.Equal(w.ExpireTime) || g.Line != w.Line {
			t.Errorf("key %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestParse_Errors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want string
	}{
		{"unknown top-level field", "public_url: x\nmcp_server: {}\n", nil, `line 2: unknown field "mcp_server"`},
		{"unknown server field", "mcp_servers:\n  a:\n    url: http://x\n    command: npx\n", nil, `line 4: unknown field "command" in mcp_servers.a`},
		{"unknown principal field", "principals:\n  - name: a\n    grants: [x]\n", nil, `line 3: unknown field "grants" in principals`},
		{"unknown key field", "keys:\n  - principal: a\n    name: n\n    ttl: 1h\n", nil, `line 4: unknown field "ttl" in keys`},
		{"missing env var", "mcp_servers:\n  a:\n    url: http://x\n    auth_value: os.environ/NOPE_NOT_SET\n", nil, "line 4: environment variable NOPE_NOT_SET is not set"},
		{"empty env name", "public_url: os.environ/\n", nil, `line 1: "os.environ/" names no environment variable`},
		{"bad transport", "mcp_servers:\n  a:\n    transport: stdio\n", nil, `line 3: transport "stdio" is not one of http, sse`},
		{"bad auth_type", "mcp_servers:\n  a:\n    auth_type: magic\n", nil, `line 3: auth_type "magic" is not one of`},
		{"bad oauth2_flow", "mcp_servers:\n  a:\n    oauth2_flow: implicit\n", nil, `line 3: oauth2_flow "implicit" is not one of authorization_code, client_credentials, token_exchange`},
		{"bad kind", "principals:\n  - name: a\n    kind: robot\n", nil, `line 3: kind "robot" is not one of service_account, user`},
		{"bad role", "principals:\n  - name: a\n    role: root\n", nil, `line 3: role "root" is not one of admin, member`},
		{"bad expires", "keys:\n  - principal: a\n    name: n\n    expires: tomorrow\n", nil, `line 4: expires "tomorrow" is neither`},
		{"negative expires", "keys:\n  - principal: a\n    name: n\n    expires: -1h\n", nil, `line 4: expires "-1h" must be positive`},
		{"key without principal", "keys:\n  - name: n\n", nil, "line 2: key has no principal"},
		{"generated key without name", "keys:\n  - principal: a\n", nil, "line 2: a key without a pinned value"},
		{"principal without name", "principals:\n  - kind: user\n", nil, "line 2: principal has no name"},
		{"duplicate principal", "principals:\n  - name: a\n  - name: a\n", nil, `line 3: principal "a" already defined on line 2`},
		{"wrong type", "mcp_servers:\n  a:\n    scopes: read\n", nil, "line 3"},
		{"not yaml", "mcp_servers: [\n", nil, "yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.yaml), env(tc.env))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !errors.Is(err, config.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParse_EnvResolvesAnyString(t *testing.T) {
	y := "public_url: os.environ/PUB\nmcp_servers:\n  a:\n    url: os.environ/URL\n    scopes: [os.environ/SCOPE]\n"
	f, err := config.Parse([]byte(y), env(map[string]string{"PUB": "https://gw", "URL": "http://u/mcp", "SCOPE": "true"}))
	if err != nil {
		t.Fatal(err)
	}
	if f.PublicURL != "https://gw" || f.Servers[0].GetUrl() != "http://u/mcp" || f.Servers[0].GetScopes()[0] != "true" {
		t.Errorf("got %q %q %q", f.PublicURL, f.Servers[0].GetUrl(), f.Servers[0].GetScopes())
	}
}

func TestParse_Empty(t *testing.T) {
	f, err := config.Parse(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Servers)+len(f.Principals)+len(f.Keys) != 0 {
		t.Errorf("empty file parsed to %+v", f)
	}
}
