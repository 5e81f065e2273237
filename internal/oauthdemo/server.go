package oauthdemo

import (
	"slices"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// McpServer returns the gateway's server definition for an upstream MCP
// server at mcpURL protected by p (oauth2 authorization_code with the
// provider's endpoints and the configured client), and its secrets. Call
// after SetIssuer.
func (p *Provider) McpServer(name, mcpURL string) (*configv1.McpServer, *storev1.ServerSecrets) {
	iss := p.Issuer()
	return &configv1.McpServer{
		Name:             name,
		Url:              mcpURL,
		Transport:        configv1.Transport_TRANSPORT_HTTP,
		AuthType:         configv1.AuthType_AUTH_TYPE_OAUTH2,
		Oauth2Flow:       configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE,
		ClientId:         p.cfg.ClientID,
		AuthorizationUrl: iss + "/authorize",
		TokenUrl:         iss + "/token",
		RevocationUrl:    iss + "/revoke",
		Issuer:           iss,
		Scopes:           slices.Clone(p.cfg.Scopes),
		Description:      "mcpgate demo notes (OAuth-protected upstream)",
	}, &storev1.ServerSecrets{ClientSecret: p.cfg.ClientSecret}
}
