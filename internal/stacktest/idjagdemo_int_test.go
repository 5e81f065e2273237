package stacktest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/internal/oidcdemo"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// demoIDToken signs in at the demo IdP as user with no browser: the
// authorization code flow (PKCE, nonce, state) as clientID, its login form
// driven over plain HTTP with a cookie jar. It returns the ID token.
func demoIDToken(t *testing.T, idp *oidcdemo.Provider, clientID, secret, redirect, user string) string {
	t.Helper()
	ctx := t.Context()
	prov, err := oidc.NewProvider(ctx, idp.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	cfg := &oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: prov.Endpoint(), RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "email"}}
	verifier := oauth2.GenerateVerifier()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) *http.Response {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get(cfg.AuthCodeURL("st4te", oidc.Nonce("n0nce"), oauth2.S256ChallengeOption(verifier)))
	resp.Body.Close()
	login, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
	resp = get(login.String())
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="id" value="([^"]*)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("login page: %d %s", resp.StatusCode, page)
	}
	resp, err = c.PostForm(idp.Issuer()+"/login", url.Values{"id": {string(m[1])}, "username": {user}, "password": {oidcdemo.Password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for range 5 {
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("IdP sign-in: %d at %s", resp.StatusCode, resp.Request.URL)
		}
		loc, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if strings.HasPrefix(loc.String(), redirect) {
			if loc.Query().Get("state") != "st4te" {
				t.Fatalf("state: %s", loc)
			}
			tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := tok.Extra("id_token").(string)
			if idt, err := prov.Verifier(&oidc.Config{ClientID: clientID}).Verify(ctx, raw); err != nil || idt.Nonce != "n0nce" {
				t.Fatalf("ID token: %v", err)
			}
			return raw
		}
		resp = get(loc.String())
		resp.Body.Close()
	}
	t.Fatal("the IdP never redirected to the client")
	return ""
}

// TestGoSDK_IDJAGDemoIdP is enterprise-managed authorization with the demo
// IdP end to end through the data plane, with no browser: an agent
// registered at the gateway (and, under the same client id, at the IdP)
// signs Ada in at the IdP over plain HTTP, exchanges her ID token at the
// IdP for an ID-JAG for the echo route (RFC 8693), redeems it at the
// gateway's /token (jwt-bearer, relayed by the data plane) and calls a
// tool with the official Go SDK client. The upstream sees the call and the
// gateway's decision names Ada. Bob's ID token is refused by the IdP when
// presented by another client; an ID-JAG is single use at the gateway.
func TestGoSDK_IDJAGDemoIdP(t *testing.T) {
	s := stacktest.Start(t)
	ctx := context.Background()
	idp, err := oidcdemo.Start(oidcdemo.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = idp.Close() })
	rev, err := s.Store.PutIdentityProvider(ctx, &configv1.IdentityProvider{
		Name: "demo", DisplayName: "Demo IdP", Issuer: idp.Issuer(), TrustIdJag: true, CreatePrincipals: true,
	}, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Group release grants echo. Ada is unknown to the gateway: the ID-JAG
	// creates her, and the groups it asserts (release, at the demo IdP)
	// are what grant her echo.
	g, err := s.Groups.PutGroup(ctx, &configv1.PutGroupRequest{Group: &configv1.Group{Name: "release", Servers: []string{stacktest.EchoRoute}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store.WaitRevision(ctx, max(rev, g.GetGroup().GetRevision())); err != nil {
		t.Fatal(err)
	}

	// The agent registers at the gateway (through the data plane).
	reg, err := http.Post(s.PublicURL+"/register", "application/json", strings.NewReader(`{"redirect_uris":["http://127.0.0.1/cb"],`+
		`"grant_types":["authorization_code","`+oauth.GrantJWTBearer+`"],"token_endpoint_auth_method":"client_secret_basic","client_name":"agent"}`))
	if err != nil {
		t.Fatal(err)
	}
	var client struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	err = json.NewDecoder(reg.Body).Decode(&client)
	reg.Body.Close()
	if err != nil || reg.StatusCode != http.StatusCreated || client.Secret == "" {
		t.Fatalf("register: %d %+v %v", reg.StatusCode, client, err)
	}
	// The enterprise registers the same client at its IdP.
	const idpSecret, redirect = "agent-idp-secret", "http://127.0.0.1:1/cb"
	idp.AddClient(oidcdemo.Client{ID: client.ID, Secret: idpSecret, RedirectURIs: []string{redirect}})

	// Ada signs in at the IdP (no browser) and the agent exchanges her ID
	// token for an ID-JAG for the echo route.
	idToken := demoIDToken(t, idp, client.ID, idpSecret, redirect, oidcdemo.Ada)
	route := s.RouteURL(stacktest.EchoRoute)
	idpToken := idp.Issuer() + "/oauth/token"
	jagForm := func(subject string) url.Values {
		return url.Values{
			"grant_type": {oidcdemo.GrantTokenExchange}, "requested_token_type": {oidcdemo.TokenTypeIDJAG},
			"subject_token": {subject}, "subject_token_type": {oidcdemo.TokenTypeIDToken},
			"audience": {s.PublicURL}, "resource": {route},
		}
	}
	status, jag := postForm(t, idpToken, jagForm(idToken), client.ID, idpSecret)
	if status != http.StatusOK || jag["issued_token_type"] != oidcdemo.TokenTypeIDJAG || jag["token_type"] != "N_A" {
		t.Fatalf("IdP token exchange: %d %v", status, jag)
	}
	assertion := jag["access_token"].(string)

	// The gateway's token for it, at /token through the data plane.
	status, tok := postForm(t, s.PublicURL+"/token", url.Values{"grant_type": {oauth.GrantJWTBearer}, "assertion": {assertion}}, client.ID, client.Secret)
	if status != http.StatusOK || tok["token_type"] != "Bearer" || tok["refresh_token"] != nil {
		t.Fatalf("gateway token: %d %v", status, tok)
	}
	access := tok["access_token"].(string)
	// An ID-JAG is used once.
	status, again := postForm(t, s.PublicURL+"/token", url.Values{"grant_type": {oauth.GrantJWTBearer}, "assertion": {assertion}}, client.ID, client.Secret)
	if status != http.StatusBadRequest || again["error"] != "invalid_grant" || again["error_description"] != "the assertion was already used" {
		t.Errorf("replayed ID-JAG: %d %v", status, again)
	}

	// A tool call through the data plane with the official Go SDK client.
	hc := &http.Client{Transport: headerTransport{h: http.Header{"Authorization": {"Bearer " + access}}, base: http.DefaultTransport}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "idjag-demo-agent", Version: "1"}, nil).
		Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: route, HTTPClient: hc}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "ada via the demo IdP"}})
	if err != nil || res.IsError || textOf(t, res) != "ada via the demo IdP" {
		t.Fatalf("tools/call: %v %v", res, err)
	}
	var sawCall bool
	for _, r := range s.Echo.Requests() {
		sawCall = sawCall || r.RPCMethod == "tools/call"
	}
	if !sawCall {
		t.Error("the upstream did not see the tools/call")
	}
	assertNoAdmission(t, s.Echo, access, assertion, idToken)
	// The principal behind the token is Ada.
	dec, err := s.Authorize.Authorize(ctx, &authorizev1.AuthorizeRequest{
		Route: stacktest.EchoRoute, Credentials: &authorizev1.Credentials{BearerToken: access}, HttpMethod: http.MethodPost,
		JsonrpcMethod: "tools/call", ToolName: "echo", ClientAddress: "127.0.0.1", PublicBaseUrl: s.PublicURL,
	})
	if err != nil || dec.GetDecision() != authorizev1.Decision_DECISION_ALLOW || dec.GetPrincipal() != "ada_demo-example" {
		t.Errorf("decision for the token: %v %v", dec, err)
	}
	// She was created by the assertion, with no servers of her own, and
	// her group is the one the demo IdP asserted in it.
	if p, ok := s.Store.Principal("ada_demo-example"); !ok || len(p.GetServers()) != 0 || len(p.GetGroups()) != 0 ||
		len(p.GetAssertedGroups()) != 1 || p.GetAssertedGroups()[0].GetGroup() != "release" || p.GetAssertedGroups()[0].GetIdentityProvider() != "demo" {
		t.Errorf("ada after the assertion: %v", p)
	}

	// Another client cannot exchange Ada's ID token (it was issued to the
	// agent).
	idp.AddClient(oidcdemo.Client{ID: "intruder", Secret: "intruder-secret", RedirectURIs: []string{redirect}})
	status, refused := postForm(t, idpToken, jagForm(idToken), "intruder", "intruder-secret")
	if status != http.StatusBadRequest || refused["error"] != "invalid_grant" || refused["error_description"] != "subject_token was issued to another client" {
		t.Errorf("exchange by another client: %d %v", status, refused)
	}
}
