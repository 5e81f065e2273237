package config_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
)

const idpFile = `
identity_providers:
  - name: okta
    display_name: Okta
    issuer: https://example.okta.com
    client_id: 0oa1
    client_secret: os.environ/OKTA_SECRET
    scopes: [email, profile, groups]
    principal_claim: email
    groups_claim: groups
    allowed_domains: [example.com]
    create_principals: true
    trust_id_jag: true
signin:
  api_key: false
`

func TestParse_IdentityProviders(t *testing.T) {
	f, err := config.Parse([]byte(idpFile), env(map[string]string{"OKTA_SECRET": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	want := &configv1.IdentityProvider{
		Name: "okta", DisplayName: "Okta", Issuer: "https://example.okta.com", ClientId: "0oa1", ClientSecret: "s3cret",
		Scopes: []string{"email", "profile", "groups"}, PrincipalClaim: "email", GroupsClaim: "groups",
		AllowedDomains: []string{"example.com"}, CreatePrincipals: true, TrustIdJag: true,
	}
	if len(f.IdentityProviders) != 1 || !proto.Equal(f.IdentityProviders[0], want) {
		t.Fatalf("identity providers: %v", f.IdentityProviders)
	}
	if f.SigninAPIKey == nil || *f.SigninAPIKey {
		t.Fatalf("signin.api_key = %v, want false", f.SigninAPIKey)
	}
	f, err = config.Parse([]byte("identity_providers: []\n"), env(nil))
	if err != nil || f.SigninAPIKey != nil {
		t.Fatalf("no signin block: %v %v", f, err)
	}
	for _, tc := range []struct{ doc, msg string }{
		{"identity_providers:\n  - issuer: https://x.example\n", "line 2: identity provider has no name"},
		{"identity_providers:\n  - name: a\n  - name: a\n", `line 3: identity provider "a" already defined on line 2`},
		{"identity_providers:\n  - name: a\n    secret: x\n", `line 3: unknown field "secret" in identity_providers`},
		{"signin:\n  api_keys: false\n", `line 2: unknown field "api_keys" in signin`},
	} {
		_, err := config.Parse([]byte(tc.doc), env(nil))
		if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: err = %v, want %q", tc.doc, err, tc.msg)
		}
	}
}
