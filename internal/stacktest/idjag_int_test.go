package stacktest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/internal/idjagtest"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// postForm posts form to u (with basic client credentials when id is set)
// and decodes the JSON answer.
func postForm(t *testing.T, u string, form url.Values, id, secret string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %d %s", u, resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

// TestGoSDK_IDJAG is enterprise-managed authorization end to end through
// the data plane, with no browser: the client registers at the gateway,
// gets an ID-JAG for the echo route from the person's identity provider
// (RFC 8693 token exchange at the IdP), exchanges it at the gateway's
// /token (relayed by the data plane) for an access token, and calls a tool
// with the official Go SDK client. Removing the identity provider from the
// configuration ends the token (401).
func TestGoSDK_IDJAG(t *testing.T) {
	s := stacktest.Start(t)
	s.AddUser("alice", stacktest.EchoRoute)
	idp := idjagtest.Start(t)
	rev, err := s.Store.PutIdentityProvider(t.Context(), &configv1.IdentityProvider{Name: "corp", Issuer: idp.Issuer, TrustIdJag: true, PrincipalClaim: "sub"}, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Store.WaitRevision(t.Context(), rev); err != nil {
		t.Fatal(err)
	}

	// Discovery: the metadata advertises the grant.
	resp, err := http.Get(s.PublicURL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Issuer     string   `json:"issuer"`
		Token      string   `json:"token_endpoint"`
		Registrar  string   `json:"registration_endpoint"`
		GrantTypes []string `json:"grant_types_supported"`
	}
	err = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if err != nil || !slices.Contains(md.GrantTypes, oauth.GrantJWTBearer) || md.Issuer != s.PublicURL {
		t.Fatalf("metadata %+v %v", md, err)
	}

	// Registration: a confidential client allowed the jwt-bearer grant.
	reg, err := http.Post(md.Registrar, "application/json", strings.NewReader(`{"redirect_uris":["http://127.0.0.1/cb"],`+
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

	// The ID-JAG from the IdP.
	route := s.RouteURL(stacktest.EchoRoute)
	status, jag := postForm(t, idp.Issuer+"/token", url.Values{
		"grant_type": {idjagtest.GrantTokenExchange}, "requested_token_type": {idjagtest.TokenTypeIDJAG},
		"subject_token": {idjagtest.SubjectToken("alice", "alice@example.com")}, "subject_token_type": {idjagtest.TokenTypeIDToken},
		"audience": {md.Issuer}, "resource": {route}, "client_id": {client.ID},
	}, "", "")
	if status != http.StatusOK || jag["issued_token_type"] != idjagtest.TokenTypeIDJAG {
		t.Fatalf("IdP token exchange: %d %v", status, jag)
	}

	// The gateway's token for it.
	status, tok := postForm(t, md.Token, url.Values{"grant_type": {oauth.GrantJWTBearer}, "assertion": {jag["access_token"].(string)}}, client.ID, client.Secret)
	if status != http.StatusOK || tok["token_type"] != "Bearer" {
		t.Fatalf("gateway token: %d %v", status, tok)
	}
	if _, ok := tok["refresh_token"]; ok {
		t.Errorf("refresh token issued")
	}
	access := tok["access_token"].(string)

	// A tool call through the data plane with the official Go SDK client.
	hc := &http.Client{Transport: headerTransport{h: http.Header{"Authorization": {"Bearer " + access}}, base: http.DefaultTransport}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "idjag-agent", Version: "1"}, nil).
		Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: route, HTTPClient: hc}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello from an ID-JAG"}})
	if err != nil || res.IsError || textOf(t, res) != "hello from an ID-JAG" {
		t.Fatalf("tools/call: %v %v", res, err)
	}
	assertNoAdmission(t, s.Echo, access)

	// The IdP is removed from the configuration: its tokens end.
	if _, err := s.Store.DeleteIdentityProvider(context.Background(), "corp", 0); err != nil {
		t.Fatal(err)
	}
	rev, _ = s.Store.HeadRevision(t.Context())
	if err := s.Store.WaitRevision(t.Context(), rev); err != nil {
		t.Fatal(err)
	}
	r, body := rawPost(t, route, http.Header{"Authorization": {"Bearer " + access}}, initializeBody)
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("after removing the IdP: %d %q %s", r.StatusCode, r.Header.Get("WWW-Authenticate"), body)
	}
}
