package stacktest_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mcpgate/mcpgate/internal/oauthdemo"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// oauthSession connects the official Go SDK client to the notes route with
// no gateway credential at all: the 401 challenge starts the SDK's
// authorization code flow (discovery, DCR, /authorize), which the scripted
// browser completes (sign-in with key, consent, upstream consent as user).
func oauthSession(t *testing.T, s *stacktest.Stack, key, user string) (*mcp.ClientSession, *auth.AuthorizationCodeHandler, *stacktest.Browser) {
	t.Helper()
	redirect := "http://127.0.0.1:53682/callback"
	b := stacktest.NewBrowser(key, user)
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect}, ClientName: "stacktest Go client", TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		RedirectURL:              redirect,
		AuthorizationCodeFetcher: b.Fetcher(redirect),
	})
	if err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "stacktest-oauth", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: s.RouteURL(stacktest.NotesRoute), OAuthHandler: h}, nil)
	if err != nil {
		t.Fatalf("connect with OAuth as %s: %v", user, err)
	}
	return cs, h, b
}

func whoami(t *testing.T, cs *mcp.ClientSession) string {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	if res.IsError {
		t.Fatalf("whoami failed: %s", textOf(t, res))
	}
	b, _ := json.Marshal(res.StructuredContent)
	var out oauthdemo.WhoamiOutput
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("whoami output %s: %v", b, err)
	}
	return out.User
}

// TestGoSDK_OAuth runs issue 4's flow end to end through the data plane:
// 401 → discovery → DCR → authorize → sign-in → consent → upstream consent
// → token → tools/call reaching the upstream with the person's own upstream
// token; a second person gets theirs; revoking a connection brings the 401
// back for that person only.
func TestGoSDK_OAuth(t *testing.T) {
	s := stacktest.Start(t)
	alice := s.AddUser("alice", stacktest.NotesRoute)
	bob := s.AddUser("bob", stacktest.NotesRoute)

	csA, hA, bA := oauthSession(t, s, alice, "alice@provider")
	if got := whoami(t, csA); got != "alice@provider" {
		t.Errorf("alice's whoami = %q", got)
	}
	consentShown := false
	for _, p := range bA.Pages {
		if strings.Contains(p.Body, "stacktest Go client") && strings.Contains(p.Body, "127.0.0.1:53682") {
			consentShown = true
		}
	}
	if !consentShown {
		t.Error("no gateway consent page named the client and its redirect host")
	}
	csB, hB, _ := oauthSession(t, s, bob, "bob@provider")
	if got := whoami(t, csB); got != "bob@provider" {
		t.Errorf("bob's whoami = %q", got)
	}

	tokA := gatewayToken(t, hA)
	tokB := gatewayToken(t, hB)
	if tokA == tokB {
		t.Fatal("alice and bob share a gateway token")
	}
	// Every request reached the upstream with an upstream token from the
	// demo provider, never with a gateway credential.
	var upstreamTokens = map[string]string{}
	for _, r := range s.Notes.Requests() {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			t.Errorf("%s %s reached the upstream without a bearer token", r.Method, r.RPCMethod)
			continue
		}
		user, _, ok := s.Provider.Verify(tok)
		if !ok {
			// Tokens are revoked below; all are still valid here.
			t.Errorf("%s %s reached the upstream with an unknown token", r.Method, r.RPCMethod)
		}
		upstreamTokens[user] = tok
	}
	if len(upstreamTokens) != 2 || upstreamTokens["alice@provider"] == upstreamTokens["bob@provider"] {
		t.Errorf("upstream tokens per user: %v", upstreamTokens)
	}
	assertNoAdmission(t, s.Notes, alice, bob, tokA, tokB, s.DataPlaneToken)

	// Revoke alice's connection (her session ends first: a request on it
	// would start a new sign-in).
	if err := csA.Close(); err != nil {
		t.Fatalf("close alice: %v", err)
	}
	s.RevokeConnection("alice", stacktest.NotesRoute)
	resp, body := rawPost(t, s.RouteURL(stacktest.NotesRoute), http.Header{"Authorization": {"Bearer " + tokA}}, initializeBody)
	// Revoking the connection revoked her gateway tokens for the route too
	// (issue 8 item 6): the token itself is now refused.
	want := `Bearer resource_metadata="` + s.PRMURL(stacktest.NotesRoute) + `", ` +
		`error="invalid_token", error_description="The credential is unknown revoked or expired."`
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
		t.Errorf("alice after revocation: %d %q %s, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, want)
	}
	if got := whoami(t, csB); got != "bob@provider" {
		t.Errorf("bob after alice's revocation: whoami = %q", got)
	}
	_ = csB.Close()
}

func gatewayToken(t *testing.T, h *auth.AuthorizationCodeHandler) string {
	t.Helper()
	ts, err := h.TokenSource(t.Context())
	if err != nil || ts == nil {
		t.Fatalf("token source: %v", err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// TestUpstream401BecomesChallenge revokes a person's access token at the
// upstream provider behind the gateway's back: the upstream's own 401 (and
// its WWW-Authenticate naming the upstream's metadata) never reaches the
// client, which gets the gateway's challenge instead, and the grant is
// unusable from then on.
func TestUpstream401BecomesChallenge(t *testing.T) {
	s := stacktest.Start(t)
	alice := s.AddUser("alice", stacktest.NotesRoute)
	cs, h, _ := oauthSession(t, s, alice, "alice@provider")
	if got := whoami(t, cs); got != "alice@provider" {
		t.Fatalf("whoami = %q", got)
	}
	_ = cs.Close()
	seen := s.Notes.Requests()
	upstreamToken, _ := strings.CutPrefix(seen[len(seen)-1].Header.Get("Authorization"), "Bearer ")
	if _, _, ok := s.Provider.Verify(upstreamToken); !ok {
		t.Fatalf("the upstream's last request carried no valid token")
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.ProviderURL+"/revoke", strings.NewReader("token="+upstreamToken))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(s.ProviderClientID, s.ProviderClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke at the provider: %v %v", resp, err)
	}
	resp.Body.Close()
	if _, _, ok := s.Provider.Verify(upstreamToken); ok {
		t.Fatal("the upstream token is still valid")
	}

	s.Notes.Reset()
	resp, body := rawPost(t, s.RouteURL(stacktest.NotesRoute), http.Header{"Authorization": {"Bearer " + gatewayToken(t, h)}}, initializeBody)
	want := `Bearer resource_metadata="` + s.PRMURL(stacktest.NotesRoute) + `", scope="notes.read notes.write"`
	if www := resp.Header.Values("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || len(www) != 1 || www[0] != want {
		t.Errorf("after upstream revocation: %d %q %s, want 401 %q", resp.StatusCode, www, body, want)
	}
	if n := len(s.Notes.Requests()); n != 1 {
		t.Errorf("the upstream saw %d requests, want the one it refused", n)
	}
	resp, body = rawPost(t, s.RouteURL(stacktest.NotesRoute), http.Header{"Authorization": {"Bearer " + gatewayToken(t, h)}}, initializeBody)
	// The grant is now unusable: the next request is challenged without
	// reaching the upstream.
	if www := resp.Header.Values("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || len(www) != 1 || www[0] != want {
		t.Errorf("next request: %d %q %s, want 401 %q", resp.StatusCode, www, body, want)
	}
	if n := len(s.Notes.Requests()); n != 1 {
		t.Errorf("the upstream saw %d requests, want still 1", n)
	}
}
