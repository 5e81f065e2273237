package dataplane

import (
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

func TestExtractCredentials(t *testing.T) {
	cases := []struct {
		name   string
		header map[string][]string
		want   *authorizev1.Credentials
	}{
		{name: "none", want: &authorizev1.Credentials{}},
		{name: "mcpgate header", header: map[string][]string{"X-MCPGate-API-Key": {"mcpg_a"}}, want: &authorizev1.Credentials{ApiKey: "mcpg_a"}},
		{name: "litellm bearer", header: map[string][]string{"x-litellm-api-key": {"Bearer mcpg_b"}}, want: &authorizev1.Credentials{ApiKey: "mcpg_b"}},
		{name: "litellm bare", header: map[string][]string{"x-litellm-api-key": {"mcpg_c"}}, want: &authorizev1.Credentials{ApiKey: "mcpg_c"}},
		{name: "litellm lower bearer", header: map[string][]string{"X-Litellm-Api-Key": {"bearer sk-1"}}, want: &authorizev1.Credentials{ApiKey: "sk-1"}},
		{name: "authorization api key", header: map[string][]string{"Authorization": {"Bearer mcpg_d"}}, want: &authorizev1.Credentials{ApiKey: "mcpg_d"}},
		{name: "authorization token", header: map[string][]string{"Authorization": {"Bearer eyJtok"}}, want: &authorizev1.Credentials{BearerToken: "eyJtok"}},
		{name: "authorization scheme case", header: map[string][]string{"Authorization": {"bearer eyJtok"}}, want: &authorizev1.Credentials{BearerToken: "eyJtok"}},
		{name: "basic", header: map[string][]string{"Authorization": {"Basic dXNlcjpwdw=="}}, want: &authorizev1.Credentials{}},
		{name: "empty bearer", header: map[string][]string{"Authorization": {"Bearer"}}, want: &authorizev1.Credentials{MalformedAuthorization: true}},
		{name: "bearer spaces", header: map[string][]string{"Authorization": {"Bearer   "}}, want: &authorizev1.Credentials{MalformedAuthorization: true}},
		{name: "two tokens", header: map[string][]string{"Authorization": {"Bearer a b"}}, want: &authorizev1.Credentials{MalformedAuthorization: true}},
		{name: "two headers", header: map[string][]string{"Authorization": {"Bearer a", "Bearer b"}}, want: &authorizev1.Credentials{MalformedAuthorization: true}},
		{name: "empty authorization", header: map[string][]string{"Authorization": {""}}, want: &authorizev1.Credentials{}},
		{
			name:   "api key header wins over authorization key",
			header: map[string][]string{"X-MCPGate-API-Key": {"mcpg_a"}, "Authorization": {"Bearer mcpg_z"}},
			want:   &authorizev1.Credentials{ApiKey: "mcpg_a"},
		},
		{
			name:   "api key and token",
			header: map[string][]string{"X-MCPGate-API-Key": {"mcpg_a"}, "Authorization": {"Bearer tok"}},
			want:   &authorizev1.Credentials{ApiKey: "mcpg_a", BearerToken: "tok"},
		},
		{
			name:   "mcpgate header wins over litellm",
			header: map[string][]string{"X-MCPGate-API-Key": {"mcpg_a"}, "x-litellm-api-key": {"Bearer mcpg_b"}},
			want:   &authorizev1.Credentials{ApiKey: "mcpg_a"},
		},
		{name: "passthrough exact", header: map[string][]string{"X-MCP-Gmail-Authorization": {"Bearer up"}}, want: &authorizev1.Credentials{PassthroughAuthorization: "Bearer up"}},
		{name: "passthrough case", header: map[string][]string{"x-mcp-gmail-authorization": {"Bearer up"}}, want: &authorizev1.Credentials{PassthroughAuthorization: "Bearer up"}},
		{name: "passthrough other server", header: map[string][]string{"X-MCP-GitHub-Authorization": {"Bearer up"}}, want: &authorizev1.Credentials{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for k, vs := range tc.header {
				h[k] = vs // raw keys: extraction must not depend on canonical form
			}
			got := extractCredentials(h, "Gmail")
			if !proto.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestIsStrippedRequestHeader(t *testing.T) {
	for _, k := range []string{"X-MCPGate-API-Key", "x-litellm-api-key", "authorization", "Cookie", "X-MCP-Gmail-Authorization", "x-mcp-other-authorization", "Mcp-Session-Id", "X-MCPGate-Anything", "X-Custom", "Origin", "X-Forwarded-For", "Proxy-Authorization"} {
		if !isStrippedRequestHeader(k) {
			t.Errorf("%s is forwarded", k)
		}
	}
	for _, k := range []string{"Mcp-Protocol-Version", "Mcp-Method", "Mcp-Name", "Last-Event-ID", "Accept", "Content-Type", "Mcp-Param-Region", "Traceparent"} {
		if isStrippedRequestHeader(k) {
			t.Errorf("%s is stripped", k)
		}
	}
}
