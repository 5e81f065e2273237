package configapi_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

func oktaIdP() *configv1.IdentityProvider {
	return &configv1.IdentityProvider{
		Name: "okta", DisplayName: "Okta", Issuer: "https://example.okta.com", ClientId: "0oa1",
		Scopes: []string{"email", "profile", "groups"}, AllowedDomains: []string{"example.com"},
		CreatePrincipals: true, ClientSecret: "okta-client-secret-value",
	}
}

// TestIdentityProviders_CRUD: create, read back without the secret (only
// client_secret_set), sealed at rest, replace keeping the secret, CAS,
// delete.
func TestIdentityProviders_CRUD(t *testing.T) {
	e := newEnv(t)
	c := e.admin().idps
	ctx := t.Context()
	put, err := c.PutIdentityProvider(ctx, &configv1.PutIdentityProviderRequest{IdentityProvider: oktaIdP()})
	if err != nil {
		t.Fatal(err)
	}
	got := put.GetIdentityProvider()
	if !put.GetChanged() || got.GetClientSecret() != "" || !got.GetClientSecretSet() || got.GetRevision() == 0 {
		t.Fatalf("put: %v", put)
	}
	if raw := e.rawValue(store.KindIdentityProvider, "okta"); bytes.Contains(raw, []byte("okta-client-secret-value")) {
		t.Fatal("client secret stored in the clear")
	}
	g, err := c.GetIdentityProvider(ctx, &configv1.GetIdentityProviderRequest{Name: "okta"})
	if err != nil || g.GetIdentityProvider().GetClientSecret() != "" || !g.GetIdentityProvider().GetClientSecretSet() ||
		g.GetIdentityProvider().GetIssuer() != "https://example.okta.com" {
		t.Fatalf("get: %v %v", g, err)
	}
	l, err := c.ListIdentityProviders(ctx, &configv1.ListIdentityProvidersRequest{})
	if err != nil || len(l.GetIdentityProviders()) != 1 || l.GetIdentityProviders()[0].GetClientSecret() != "" {
		t.Fatalf("list: %v %v", l, err)
	}
	// Same again: unchanged.
	again, err := c.PutIdentityProvider(ctx, &configv1.PutIdentityProviderRequest{IdentityProvider: oktaIdP(), ExpectedRevision: got.GetRevision()})
	if err != nil || again.GetChanged() {
		t.Fatalf("put again: %v %v", again, err)
	}
	// Replace without a secret keeps the stored one.
	upd := oktaIdP()
	upd.ClientSecret, upd.DisplayName = "", "Okta SSO"
	r2, err := c.PutIdentityProvider(ctx, &configv1.PutIdentityProviderRequest{IdentityProvider: upd, ExpectedRevision: got.GetRevision()})
	if err != nil || !r2.GetChanged() || !r2.GetIdentityProvider().GetClientSecretSet() {
		t.Fatalf("replace: %v %v", r2, err)
	}
	idp, _ := e.st.IdentityProvider("okta")
	if idp.ClientSecret != "okta-client-secret-value" || idp.Def.GetDisplayName() != "Okta SSO" {
		t.Fatalf("stored: %v", idp.Def)
	}
	_, err = c.PutIdentityProvider(ctx, &configv1.PutIdentityProviderRequest{IdentityProvider: oktaIdP()})
	wantCode(t, err, connect.CodeAborted, "identity provider already exists; pass its revision to replace it")
	_, err = c.PutIdentityProvider(ctx, &configv1.PutIdentityProviderRequest{IdentityProvider: oktaIdP(), ExpectedRevision: got.GetRevision()})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	_, err = c.DeleteIdentityProvider(ctx, &configv1.DeleteIdentityProviderRequest{Name: "okta", ExpectedRevision: got.GetRevision()})
	wantCode(t, err, connect.CodeAborted, "revision conflict; re-read and retry")
	// The people's tokens kept for token exchanges go with their provider
	// (ann's, from okta) or their principal (ben's).
	for _, k := range [][2]string{{"ann", "okta"}, {"ben", "entra"}, {"cid", "entra"}} {
		if _, err := e.st.SaveIdPToken(ctx, k[0], "uid-"+k[0], k[1], &storev1.IdPToken{SubjectToken: "tok-" + k[0]}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err = c.DeleteIdentityProvider(ctx, &configv1.DeleteIdentityProviderRequest{Name: "okta", ExpectedRevision: r2.GetIdentityProvider().GetRevision()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.IdPToken(ctx, "ann"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ann's okta token after okta was deleted: %v", err)
	}
	if _, err := e.admin().principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{Name: "ben", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin().principals.DeletePrincipal(ctx, &configv1.DeletePrincipalRequest{Name: "ben"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.st.IdPToken(ctx, "ben"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ben's token after ben was deleted: %v", err)
	}
	if _, tok, err := e.st.IdPToken(ctx, "cid"); err != nil || tok.GetSubjectToken() != "tok-cid" {
		t.Fatalf("cid's entra token: %v %v", tok, err)
	}
	_, err = c.GetIdentityProvider(ctx, &configv1.GetIdentityProviderRequest{Name: "okta"})
	wantCode(t, err, connect.CodeNotFound, "identity provider not found")
	_, err = c.DeleteIdentityProvider(ctx, &configv1.DeleteIdentityProviderRequest{Name: "okta"})
	wantCode(t, err, connect.CodeNotFound, "identity provider not found")
	if strings.Contains(e.logs.String(), "okta-client-secret-value") {
		t.Fatal("client secret logged")
	}
	// Members may not manage identity providers.
	_, err = e.as("").idps.ListIdentityProviders(ctx, &configv1.ListIdentityProvidersRequest{})
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("anonymous list: %v", err)
	}
}

// TestIdentityProviders_Validation: every bad field is InvalidArgument
// with a fixed message that echoes no value.
func TestIdentityProviders_Validation(t *testing.T) {
	e := newEnv(t)
	with := func(f func(*configv1.IdentityProvider)) *configv1.IdentityProvider {
		d := oktaIdP()
		f(d)
		return d
	}
	for _, tc := range []struct {
		name string
		idp  *configv1.IdentityProvider
		msg  string
	}{
		{"none", nil, "identity_provider: required"},
		{"no name", with(func(d *configv1.IdentityProvider) { d.Name = "" }), "name: must match ^[a-z0-9-]{1,32}$"},
		{"upper-case name", with(func(d *configv1.IdentityProvider) { d.Name = "Okta" }), "name: must match ^[a-z0-9-]{1,32}$"},
		{"long name", with(func(d *configv1.IdentityProvider) { d.Name = strings.Repeat("a", 33) }), "name: must match ^[a-z0-9-]{1,32}$"},
		{"control in display name", with(func(d *configv1.IdentityProvider) { d.DisplayName = "Ok\u202eta" }), "display_name: at most 64 printable characters"},
		{"no issuer", with(func(d *configv1.IdentityProvider) { d.Issuer = "" }), "issuer: required"},
		{"http issuer", with(func(d *configv1.IdentityProvider) { d.Issuer = "http://idp.example.com" }), "issuer: must be https (http only on loopback)"},
		{"issuer with query", with(func(d *configv1.IdentityProvider) { d.Issuer = "https://idp.example.com/?a=b" }), "issuer: must not contain credentials, a query or a fragment"},
		{"issuer with credentials", with(func(d *configv1.IdentityProvider) { d.Issuer = "https://u:p@idp.example.com" }), "issuer: must not contain credentials, a query or a fragment"},
		{"relative issuer", with(func(d *configv1.IdentityProvider) { d.Issuer = "/idp" }), "issuer: not an absolute URL"},
		{"no client id", with(func(d *configv1.IdentityProvider) { d.ClientId = "" }), "client_id: required, at most 256 characters without control characters"},
		{"secret with newline", with(func(d *configv1.IdentityProvider) { d.ClientSecret = "a\nb" }), "client_secret: at most 1024 characters without control characters"},
		{"bad scope", with(func(d *configv1.IdentityProvider) { d.Scopes = []string{"a b"} }), "scopes: each a scope token of at most 128 characters"},
		{"bad principal claim", with(func(d *configv1.IdentityProvider) { d.PrincipalClaim = "e mail" }), "principal_claim: must match ^[A-Za-z0-9_:./-]{1,128}$"},
		{"bad groups claim", with(func(d *configv1.IdentityProvider) { d.GroupsClaim = "g\"" }), "groups_claim: must match ^[A-Za-z0-9_:./-]{1,128}$"},
		{"bad domain", with(func(d *configv1.IdentityProvider) { d.AllowedDomains = []string{"@example.com"} }), "allowed_domains: each a lowercase domain name such as example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in *configv1.IdentityProvider
			if tc.idp != nil {
				in = proto.CloneOf(tc.idp)
			}
			_, err := e.admin().idps.PutIdentityProvider(t.Context(), &configv1.PutIdentityProviderRequest{IdentityProvider: in})
			wantCode(t, err, connect.CodeInvalidArgument, tc.msg)
		})
	}
	// http on loopback is allowed (the demo IdP).
	ok := oktaIdP()
	ok.Issuer = "http://127.0.0.1:9999"
	if _, err := e.admin().idps.PutIdentityProvider(t.Context(), &configv1.PutIdentityProviderRequest{IdentityProvider: ok}); err != nil {
		t.Fatal(err)
	}
}
