package clustertest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
)

// Admin is an admin API client bound to one control-plane replica.
type Admin struct {
	Servers    configv1connect.ServerServiceClient
	Principals configv1connect.PrincipalServiceClient
	Keys       configv1connect.KeyServiceClient
	RateLimits configv1connect.RateLimitServiceClient
}

// Admin returns an admin client for control plane i.
func (c *Cluster) Admin(i int) *Admin { return c.AdminOf(c.Controls[i]) }

// AdminOf returns an admin client for control plane n (near or far).
func (c *Cluster) AdminOf(n *Node) *Admin {
	key := c.AdminKey
	auth := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, r connect.AnyRequest) (connect.AnyResponse, error) {
			r.Header().Set("Authorization", "Bearer "+key)
			return next(ctx, r)
		}
	}))
	hc := c.HTTPClient()
	u := n.URL
	return &Admin{
		Servers:    configv1connect.NewServerServiceClient(hc, u, auth),
		Principals: configv1connect.NewPrincipalServiceClient(hc, u, auth),
		Keys:       configv1connect.NewKeyServiceClient(hc, u, auth),
		RateLimits: configv1connect.NewRateLimitServiceClient(hc, u, auth),
	}
}

// Setup creates route name → upstream (no upstream auth), a principal
// granted it, and a key for the principal; it returns the key and its id.
func (a *Admin) Setup(ctx context.Context, route, upstream, principal string) (key, id string, err error) {
	_, err = a.Servers.PutServer(ctx, &configv1.PutServerRequest{Server: &configv1.McpServer{
		Name: route, Url: upstream, Transport: configv1.Transport_TRANSPORT_HTTP, AuthType: configv1.AuthType_AUTH_TYPE_NONE,
	}})
	if err != nil {
		return "", "", fmt.Errorf("put server: %w", err)
	}
	if key, id, err = a.Principal(ctx, principal, route); err != nil {
		return "", "", err
	}
	return key, id, nil
}

// Principal creates a member principal granted routes and a key for it.
func (a *Admin) Principal(ctx context.Context, name string, routes ...string) (key, id string, err error) {
	_, err = a.Principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: name, Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: configv1.Role_ROLE_MEMBER, Servers: routes,
	}})
	if err != nil {
		return "", "", fmt.Errorf("put principal: %w", err)
	}
	res, err := a.Keys.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: name, Name: "clustertest"})
	if err != nil {
		return "", "", fmt.Errorf("create key: %w", err)
	}
	return res.GetKey(), res.GetApiKey().GetId(), nil
}

// CLI runs `mcpgate args...` against control plane i with the admin key
// and returns its combined output and exit code.
func (c *Cluster) CLI(ctx context.Context, i int, args ...string) (string, int) {
	return c.CLIOf(ctx, c.Controls[i], args...)
}

// CLIOf runs `mcpgate args...` against control plane n (near or far).
func (c *Cluster) CLIOf(ctx context.Context, n *Node, args ...string) (string, int) {
	cmd := exec.CommandContext(ctx, c.Bin.Mcpgate, args...)
	cmd.Env = append(cmd.Environ(), "MCPGATE_CONTROL_PLANE="+n.URL, "MCPGATE_ADMIN_KEY="+c.AdminKey)
	if c.PKI != nil {
		cmd.Env = append(cmd.Env, "SSL_CERT_FILE="+c.PKI.CA)
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return strings.TrimSpace(string(out)), code
}
