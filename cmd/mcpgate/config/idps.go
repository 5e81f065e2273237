package config

import (
	"context"
	"fmt"

	"go.yaml.in/yaml/v3"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
)

// identityProviderYAML is one entry of identity_providers:.
type identityProviderYAML struct {
	Name             string   `yaml:"name"`
	DisplayName      string   `yaml:"display_name"`
	Issuer           string   `yaml:"issuer"`
	ClientID         string   `yaml:"client_id"`
	ClientSecret     string   `yaml:"client_secret"`
	Scopes           []string `yaml:"scopes"`
	PrincipalClaim   string   `yaml:"principal_claim"`
	GroupsClaim      string   `yaml:"groups_claim"`
	AllowedDomains   []string `yaml:"allowed_domains"`
	CreatePrincipals bool     `yaml:"create_principals"`
	TrustIDJAG       bool     `yaml:"trust_id_jag"`
	line             int
}

func (p *identityProviderYAML) UnmarshalYAML(n *yaml.Node) error {
	type plain identityProviderYAML
	if err := n.Decode((*plain)(p)); err != nil {
		return err
	}
	p.line = n.Line
	return nil
}

// signinYAML is the signin: block. It configures the control plane that
// `mcpgate dev` runs; `mcpgate control` takes --signin-api-key
// (MCPGATE_SIGNIN_API_KEY) instead.
type signinYAML struct {
	APIKey *bool `yaml:"api_key"`
}

// convertIdPs converts identity_providers: (names unique, required).
func convertIdPs(y []identityProviderYAML) ([]*configv1.IdentityProvider, error) {
	seen := map[string]int{}
	var out []*configv1.IdentityProvider
	for _, p := range y {
		if p.Name == "" {
			return nil, fmt.Errorf("%w: line %d: identity provider has no name", ErrInvalid, p.line)
		}
		if l, dup := seen[p.Name]; dup {
			return nil, fmt.Errorf("%w: line %d: identity provider %q already defined on line %d", ErrInvalid, p.line, p.Name, l)
		}
		seen[p.Name] = p.line
		out = append(out, &configv1.IdentityProvider{
			Name:             p.Name,
			DisplayName:      p.DisplayName,
			Issuer:           p.Issuer,
			ClientId:         p.ClientID,
			ClientSecret:     p.ClientSecret,
			Scopes:           p.Scopes,
			PrincipalClaim:   p.PrincipalClaim,
			GroupsClaim:      p.GroupsClaim,
			AllowedDomains:   p.AllowedDomains,
			CreatePrincipals: p.CreatePrincipals,
			TrustIdJag:       p.TrustIDJAG,
		})
	}
	return out, nil
}

func applyIdP(ctx context.Context, c configv1connect.IdentityProviderServiceClient, p *configv1.IdentityProvider) (Outcome, error) {
	if c == nil {
		return 0, fmt.Errorf("no identity provider client")
	}
	return upsert(func() (int64, error) {
		got, err := c.GetIdentityProvider(ctx, &configv1.GetIdentityProviderRequest{Name: p.GetName()})
		return got.GetIdentityProvider().GetRevision(), err
	}, func(expected int64) (bool, error) {
		res, err := c.PutIdentityProvider(ctx, &configv1.PutIdentityProviderRequest{IdentityProvider: p, ExpectedRevision: expected})
		return res.GetChanged(), err
	})
}
