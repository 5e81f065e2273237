package stacktest_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/internal/oidcdemo"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// idpClient is the official Go SDK client on the notes route whose scripted
// browser signs in with the demo IdP as email.
func idpClient(t *testing.T, s *stacktest.Stack, email, upstreamUser string) (*mcp.ClientSession, *auth.AuthorizationCodeHandler, *stacktest.Browser, error) {
	t.Helper()
	return idpClientOn(t, s, stacktest.NotesRoute, email, upstreamUser)
}

// idpClientOn is idpClient on route.
func idpClientOn(t *testing.T, s *stacktest.Stack, route, email, upstreamUser string) (*mcp.ClientSession, *auth.AuthorizationCodeHandler, *stacktest.Browser, error) {
	t.Helper()
	redirect := "http://127.0.0.1:53683/callback"
	b := stacktest.NewBrowser("", upstreamUser)
	b.IdP, b.IdPUser, b.IdPPassword = "Demo IdP", email, oidcdemo.Password
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect}, ClientName: "stacktest SSO client", TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		RedirectURL:              redirect,
		AuthorizationCodeFetcher: b.Fetcher(redirect),
	})
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "stacktest-sso", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: s.RouteURL(route), OAuthHandler: h}, nil)
	return cs, h, b, err
}

// TestGoSDK_IdPSignIn runs the SSO flow end to end through the data plane
// with the official Go SDK client: 401 → discovery → registration →
// "Sign in with Demo IdP" → IdP login → consent → upstream consent →
// tools/call reaching the upstream with the person's own upstream token.
// Both are created at first sign-in and granted only through the groups
// the IdP asserts: Bob (group readers, not granted notes) is refused at
// the consent step (access_denied) and gets no token.
func TestGoSDK_IdPSignIn(t *testing.T) {
	s := stacktest.Start(t)
	idp, err := oidcdemo.Start(oidcdemo.Config{Clients: []oidcdemo.Client{{
		ID: "gw", Secret: "gw-secret", RedirectURIs: []string{s.PublicURL + wire.IdPCallbackPath},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	ctx := context.Background()
	rev, err := s.Store.PutIdentityProvider(ctx, &configv1.IdentityProvider{
		Name: "demo", DisplayName: "Demo IdP", Issuer: idp.Issuer(), ClientId: "gw", CreatePrincipals: true,
	}, "gw-secret", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Ada and Bob are created at their first sign-in with no own servers:
	// the groups the demo IdP asserts grant them, release (Ada) notes and
	// readers (Bob) only echo.
	for _, g := range []*configv1.Group{
		{Name: "release", Servers: []string{stacktest.NotesRoute, stacktest.EchoRoute}},
		{Name: "readers", Servers: []string{stacktest.EchoRoute}},
	} {
		res, err := s.Groups.PutGroup(ctx, &configv1.PutGroupRequest{Group: g})
		if err != nil {
			t.Fatal(err)
		}
		rev = max(rev, res.GetGroup().GetRevision())
	}
	if err := s.Store.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}

	cs, h, b, err := idpClient(t, s, oidcdemo.Ada, "ada@provider")
	if err != nil {
		t.Fatalf("connect as ada through the IdP: %v", err)
	}
	defer cs.Close()
	if got := whoami(t, cs); got != "ada@provider" {
		t.Errorf("whoami = %q", got)
	}
	var sawIdPLogin, sawConsent bool
	for _, p := range b.Pages {
		sawIdPLogin = sawIdPLogin || strings.HasPrefix(p.URL, idp.Issuer()+"/login")
		sawConsent = sawConsent || strings.Contains(p.Body, "stacktest SSO client") && strings.Contains(p.URL, "/consent")
		if strings.Contains(p.Body, `name="key"`) && !strings.Contains(p.Body, "Sign in with Demo IdP") {
			t.Errorf("a sign-in page without the IdP button: %s", p.Body)
		}
	}
	if !sawIdPLogin || !sawConsent {
		t.Errorf("pages: IdP login %v, gateway consent %v", sawIdPLogin, sawConsent)
	}
	tok := gatewayToken(t, h)
	for _, r := range s.Notes.Requests() {
		bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if user, _, ok := s.Provider.Verify(bearer); !ok || user != "ada@provider" {
			t.Errorf("%s reached the upstream with %q (user %q)", r.RPCMethod, bearer, user)
		}
	}
	assertNoAdmission(t, s.Notes, tok, s.DataPlaneToken)
	p, ok := s.Store.Principal("ada_demo-example")
	if !ok || len(p.GetServers()) != 0 || len(p.GetAssertedGroups()) != 1 || p.GetAssertedGroups()[0].GetGroup() != "release" {
		t.Errorf("ada's asserted groups: %v", p.GetAssertedGroups())
	}

	// Bob signs in (created just in time, group readers) but his group is
	// not granted notes: the authorization ends in access_denied, no token.
	_, _, _, err = idpClient(t, s, oidcdemo.Bob, "bob@provider")
	if err == nil || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("bob: err = %v, want access_denied", err)
	}
	bp, ok := s.Store.Principal("bob_demo-example")
	if !ok || len(bp.GetServers()) != 0 || len(bp.GetAssertedGroups()) != 1 || bp.GetAssertedGroups()[0].GetGroup() != "readers" {
		t.Errorf("bob: %v", bp)
	}
	resp, _ := rawPost(t, s.RouteURL(stacktest.NotesRoute), http.Header{}, initializeBody)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous: %d", resp.StatusCode)
	}
}
