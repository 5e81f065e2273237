package interop

import (
	"context"
	"slices"
	"strings"
	"testing"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/internal/oidcdemo"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// idpOutput is oauth.mjs's summary with what its scripted browser did.
type idpOutput struct {
	oauthOutput
	BrowserActions []string `json:"browserActions"`
	Pages          []struct {
		URL  string `json:"url"`
		Body string `json:"body"`
	} `json:"pages"`
}

// TestTypeScriptSDK_IdPSignIn: the TypeScript SDK client's own OAuth flow
// through the data plane, its scripted browser signing in with the demo
// IdP instead of a key: 401 → discovery → registration → "Sign in with
// Demo IdP" → IdP login → consent → upstream consent → token →
// tools/call, which reaches the upstream with the person's own upstream
// token (whoami names them). Bob, signed in just in time with no grant of
// the route, is refused at the consent step (access_denied) and the SDK
// gets no token.
func TestTypeScriptSDK_IdPSignIn(t *testing.T) {
	node(t) // skip (or fail) before starting a gateway
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
	// Ada's grant of notes stands for her group's; an admin created her
	// for SSO (display name = email). Bob is created just in time.
	if _, err := s.Principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: &configv1.Principal{
		Name: "ada_demo-example", DisplayName: oidcdemo.Ada, Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER,
		Role: configv1.Role_ROLE_MEMBER, Servers: []string{stacktest.NotesRoute},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Store.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	env := func(email, upstreamUser string) map[string]string {
		return map[string]string{
			"MCPGATE_URL": s.RouteURL(stacktest.NotesRoute), "MCPGATE_USER": upstreamUser,
			"MCPGATE_IDP": "Demo IdP", "MCPGATE_IDP_USER": email, "MCPGATE_IDP_PASSWORD": oidcdemo.Password,
		}
	}

	var out idpOutput
	runScript(t, "oauth.mjs", env(oidcdemo.Ada, "ada@provider"), &out)
	if !out.OK {
		t.Fatalf("ada: %s", out.Error)
	}
	if want := []string{"401", "register", "authorize", "token", "connected"}; !slices.Equal(sortedSteps(out.Steps), sortedSteps(want)) || out.Steps[len(out.Steps)-1] != "connected" {
		t.Errorf("steps %v, want %v", out.Steps, want)
	}
	if want := []string{"signin-idp", "idp-login", "consent", "upstream-consent"}; !slices.Equal(out.BrowserActions, want) {
		t.Errorf("browser actions %v, want %v", out.BrowserActions, want)
	}
	// The pages behind those actions: the gateway's sign-in page offering
	// the IdP, the IdP's own login page, the gateway's consent naming the
	// client, then the upstream provider's consent.
	if len(out.Pages) != 4 {
		t.Fatalf("pages %d, want 4: %v", len(out.Pages), out.BrowserActions)
	}
	if p := out.Pages[0]; !strings.HasPrefix(p.URL, s.PublicURL+"/") || !strings.Contains(p.Body, "Sign in with Demo IdP") {
		t.Errorf("sign-in page %s without the IdP button: %s", p.URL, p.Body)
	}
	if p := out.Pages[1]; !strings.HasPrefix(p.URL, idp.Issuer()+"/login") {
		t.Errorf("IdP login page at %s, want %s/login", p.URL, idp.Issuer())
	}
	if p := out.Pages[2]; !strings.HasPrefix(p.URL, s.PublicURL+"/") || !strings.Contains(p.URL, "/consent") || !out.ConsentNamedClient {
		t.Errorf("gateway consent %s (named the client: %v)", p.URL, out.ConsentNamedClient)
	}
	if p := out.Pages[3]; !strings.HasPrefix(p.URL, s.ProviderURL) {
		t.Errorf("upstream consent at %s, want under %s", p.URL, s.ProviderURL)
	}
	if out.IsError || out.Result.User != "ada@provider" {
		t.Errorf("whoami %+v (isError %v), want ada@provider", out.Result, out.IsError)
	}
	if out.Iss != s.PublicURL || out.AccessToken == "" {
		t.Errorf("iss %q (want %q), gateway token %q", out.Iss, s.PublicURL, out.AccessToken)
	}
	t.Logf("ada: steps %v, browser %v, whoami %q", out.Steps, out.BrowserActions, out.Result.User)

	// Every request the upstream saw carried ada's own upstream token (one
	// the upstream provider issued to ada@provider), and no admission
	// credential.
	seen := s.Notes.Requests()
	if len(seen) == 0 {
		t.Fatal("the upstream saw no request")
	}
	var sawCall bool
	for _, r := range seen {
		bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if user, _, ok := s.Provider.Verify(bearer); !ok || user != "ada@provider" {
			t.Errorf("%s reached the upstream with %q (user %q)", r.RPCMethod, bearer, user)
		}
		if bad := stacktest.AdmissionHeaders(r.Header, out.AccessToken, s.DataPlaneToken); len(bad) > 0 {
			t.Errorf("%s %s reached the upstream with %q", r.Method, r.RPCMethod, bad)
		}
		sawCall = sawCall || r.RPCMethod == "tools/call"
	}
	if !sawCall {
		t.Error("the upstream saw no tools/call")
	}
	p, ok := s.Store.Principal("ada_demo-example")
	if !ok || len(p.GetAssertedGroups()) != 1 || p.GetAssertedGroups()[0].GetGroup() != "release" {
		t.Errorf("ada's asserted groups: %v", p.GetAssertedGroups())
	}

	// Bob signs in (created just in time, group readers) but is granted
	// nothing: the authorization ends in access_denied, no token.
	before := len(s.Notes.Requests())
	var bob idpOutput
	if _, err := runScriptErr(t, "oauth.mjs", env(oidcdemo.Bob, "bob@provider"), &bob); err == nil || bob.OK {
		t.Fatalf("bob connected: %+v", bob.oauthOutput)
	}
	if !strings.Contains(bob.Error, "access_denied") || slices.Contains(bob.Steps, "token") {
		t.Errorf("bob: error %q, steps %v; want access_denied and no token", bob.Error, bob.Steps)
	}
	if want := []string{"signin-idp", "idp-login"}; !slices.Equal(bob.BrowserActions, want) {
		t.Errorf("bob's browser actions %v, want %v", bob.BrowserActions, want)
	}
	t.Logf("bob: steps %v, browser %v, error %.120q", bob.Steps, bob.BrowserActions, bob.Error)
	bp, ok := s.Store.Principal("bob_demo-example")
	if !ok || len(bp.GetServers()) != 0 || len(bp.GetAssertedGroups()) != 1 || bp.GetAssertedGroups()[0].GetGroup() != "readers" {
		t.Errorf("bob: %v", bp)
	}
	if n := len(s.Notes.Requests()); n != before {
		t.Errorf("the upstream saw %d requests during bob's attempt", n-before)
	}
}
