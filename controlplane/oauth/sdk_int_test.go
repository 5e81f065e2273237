package oauth_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

// TestGoSDKClient runs the official Go SDK's authorization code handler
// against the gateway: discovery, DCR, /authorize with a scripted browser
// (sign-in, consent, upstream consent), iss check and token exchange with
// the resource indicator.
func TestGoSDKClient(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ name, method, user, key string }{
		{"public client", "none", "alice", aliceKey},
		{"default auth method (client secret)", "", "bob", bobKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBrowser(t)
			redirect := "http://127.0.0.1:53682/callback"
			fetch := func(_ context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
				r := b.get(args.URL)
				if r.status != http.StatusFound {
					t.Fatalf("authorize: %d %s", r.status, r.body)
				}
				page := b.get(r.location(t).String())
				r = b.post(e.pub+"/signin", url.Values{"key": {tc.key}, "request": {formValue(t, page.body, "request")}})
				consent := b.get(r.location(t).String())
				if !strings.Contains(consent.body, "mcpgate SDK test") {
					t.Fatalf("consent page: %s", consent.body)
				}
				r = e.approve(b, consent, "approve")
				cb := e.upstreamApprove(b, r.location(t), tc.user)
				r = b.get(cb.String())
				loc := r.location(t)
				if !strings.HasPrefix(loc.String(), redirect+"?") {
					t.Fatalf("client redirect %s", loc)
				}
				q := loc.Query()
				return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
			}
			h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
				DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
					RedirectURIs: []string{redirect}, ClientName: "mcpgate SDK test", TokenEndpointAuthMethod: tc.method,
					GrantTypes: []string{"authorization_code", "refresh_token"},
				}},
				AuthorizationCodeFetcher: fetch,
			})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodPost, e.pub+"/Gmail/mcp", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("stand-in resource: %d", resp.StatusCode)
			}
			if err := h.Authorize(t.Context(), req, resp); err != nil {
				t.Fatalf("Authorize: %v", err)
			}
			ts, err := h.TokenSource(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			tok, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			rec, ok := e.accessRecord(tok.AccessToken)
			if !ok || rec.GetPrincipal() != tc.user || rec.GetRoute() != "Gmail" || strings.Join(rec.GetScopes(), " ") != "notes.read" {
				t.Fatalf("token record %v", rec)
			}
			if tok.RefreshToken == "" {
				t.Errorf("no refresh token")
			}
		})
	}
}
