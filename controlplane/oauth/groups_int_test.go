package oauth_test

import (
	"net/url"
	"testing"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// TestAuthorizeGroupGrants: /authorize's "may use" after sign-in is the
// decision's effective grants: a principal granted a route only through a
// group (admin-set or IdP-asserted) reaches the consent page; without the
// group it gets access_denied, as for a route it was never granted.
func TestAuthorizeGroupGrants(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	const ginaKey = "mcpg_gina_000000000000000000000000"
	rev, err := e.st.PutGroup(ctx, &configv1.Group{Name: "gh", Servers: []string{"GitHub"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	rev, err = e.st.PutPrincipal(ctx, &configv1.Principal{Name: "gina", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Groups: []string{"gh"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	e.putKey("gina", ginaKey)
	c := e.publicClient("Groups")
	q := func(route string) url.Values {
		v := e.authQuery(c)
		v.Set("resource", e.pub+"/"+route+"/mcp")
		v.Set("scope", "")
		return v
	}
	b := newBrowser(t)
	e.signIn(b, ginaKey)
	e.consentPage(b, q("GitHub"))
	wantRedirectError(t, e, b.get(e.authorizeURL(q("Gmail"))), "access_denied")

	// The group goes: the next /authorize is refused.
	g, _ := e.st.Group("gh")
	drev, err := e.st.DeleteGroup(ctx, "gh", g.GetRevision())
	if err != nil {
		t.Fatal(err)
	}
	e.wait(drev)
	wantRedirectError(t, e, b.get(e.authorizeURL(q("GitHub"))), "access_denied")

	// Asserted by an identity provider instead: allowed again.
	if rev, err = e.st.PutGroup(ctx, &configv1.Group{Name: "idp-gh", Servers: []string{"GitHub"}}, 0); err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	if err := e.st.SetAssertedGroups(ctx, "gina", "okta", []string{"idp-gh"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	e.sync()
	e.consentPage(b, q("GitHub"))
}
