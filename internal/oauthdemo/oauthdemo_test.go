package oauthdemo_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/internal/oauthdemo"
)

const redirectURI = "http://127.0.0.1:1/callback"

type fixture struct {
	p    *oauthdemo.Provider
	srv  *httptest.Server
	conf *oauth2.Config
}

func newFixture(t *testing.T, cfg oauthdemo.Config) *fixture {
	t.Helper()
	if cfg.ClientID == "" {
		cfg.ClientID, cfg.ClientSecret = "gateway", "s3cret/+&="
	}
	if cfg.Scopes == nil {
		cfg.Scopes = []string{"notes.read", "notes.write"}
	}
	log := slog.New(slog.DiscardHandler)
	p := oauthdemo.New(cfg, log)
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	p.SetIssuer(srv.URL)
	return &fixture{p: p, srv: srv, conf: &oauth2.Config{
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		Endpoint:    oauth2.Endpoint{AuthURL: srv.URL + "/authorize", TokenURL: srv.URL + "/token"},
		RedirectURL: redirectURI,
		Scopes:      cfg.Scopes,
	}}
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

// consent opens authURL like a browser, submits the consent form as user
// with action, and returns the redirect's query.
func consent(t *testing.T, authURL, user, action string) url.Values {
	t.Helper()
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET authorize: %d %s", resp.StatusCode, body)
	}
	m := requestField.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no request id in consent page: %s", body)
	}
	u, _ := url.Parse(authURL)
	resp, err = noRedirect.PostForm(u.Scheme+"://"+u.Host+"/authorize", url.Values{"request": {string(m[1])}, "user": {user}, "action": {action}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST authorize: %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirectURI {
		t.Fatalf("redirected to %s, want %s", got, redirectURI)
	}
	return loc.Query()
}

func (f *fixture) signIn(t *testing.T, user string) *oauth2.Token {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := consent(t, f.conf.AuthCodeURL("st-1", oauth2.S256ChallengeOption(verifier)), user, "approve")
	if q.Get("state") != "st-1" || q.Get("iss") != f.srv.URL || q.Get("code") == "" {
		t.Fatalf("authorization response %v", q)
	}
	tok, err := f.conf.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func oauthErrorCode(t *testing.T, err error) string {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a RetrieveError", err)
	}
	if cc := re.Response.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("error Cache-Control = %q, want no-store", cc)
	}
	return re.ErrorCode
}

func TestProvider_CodeRefreshRevoke(t *testing.T) {
	f := newFixture(t, oauthdemo.Config{})
	ctx := t.Context()
	tok := f.signIn(t, "carol")
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("token %+v", tok)
	}
	if user, scopes, ok := f.p.Verify(tok.AccessToken); !ok || user != "carol" || !slices.Equal(scopes, []string{"notes.read", "notes.write"}) {
		t.Fatalf("Verify = %q %v %v", user, scopes, ok)
	}

	// Refresh rotates the refresh token; the old one stops working.
	ts := f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)})
	tok2, err := ts.Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if tok2.AccessToken == tok.AccessToken || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh did not rotate: %+v", tok2)
	}
	_, err = f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token()
	if code := oauthErrorCode(t, err); code != "invalid_grant" {
		t.Fatalf("old refresh token: %q", code)
	}

	// Without rotation the response has no refresh token.
	f.p.SetRefreshRotation(false)
	resp, err := http.PostForm(f.srv.URL+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2.RefreshToken}, "client_id": {f.conf.ClientID}, "client_secret": {f.conf.ClientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	if _, has := raw["refresh_token"]; resp.StatusCode != http.StatusOK || has || raw["access_token"] == "" {
		t.Fatalf("no-rotation refresh: %d %v", resp.StatusCode, raw)
	}
	f.p.SetRefreshRotation(true)

	// Revoking the refresh token revokes its access tokens too.
	rresp, err := http.PostForm(f.srv.URL+"/revoke", url.Values{"token": {tok2.RefreshToken}, "client_id": {f.conf.ClientID}, "client_secret": {f.conf.ClientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	rresp.Body.Close()
	if rresp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", rresp.StatusCode)
	}
	if _, _, ok := f.p.Verify(tok2.AccessToken); ok {
		t.Fatal("access token still valid after revoking its refresh token")
	}
	if _, _, ok := f.p.Verify(raw["access_token"].(string)); ok {
		t.Fatal("access token of the unrotated refresh still valid")
	}
	_, err = f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok2.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token()
	if code := oauthErrorCode(t, err); code != "invalid_grant" {
		t.Fatalf("revoked refresh token: %q", code)
	}
	st := f.p.Stats()
	if st.AuthorizationCodeGrants != 1 || st.RefreshGrants != 2 || st.Revocations != 1 || st.FailedTokenRequests != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestProvider_TokenErrors(t *testing.T) {
	f := newFixture(t, oauthdemo.Config{})
	ctx := t.Context()

	t.Run("wrong verifier", func(t *testing.T) {
		q := consent(t, f.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "approve")
		_, err := f.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
		if code := oauthErrorCode(t, err); code != "invalid_grant" {
			t.Fatalf("got %q", code)
		}
	})
	t.Run("replayed code revokes", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		q := consent(t, f.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "alice", "approve")
		tok, err := f.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(v))
		if code := oauthErrorCode(t, err); code != "invalid_grant" {
			t.Fatalf("got %q", code)
		}
		if _, _, ok := f.p.Verify(tok.AccessToken); ok {
			t.Fatal("token issued from a replayed code still valid")
		}
	})
	t.Run("redirect mismatch", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		q := consent(t, f.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "alice", "approve")
		c := *f.conf
		c.RedirectURL = "http://127.0.0.1:2/callback"
		_, err := c.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(v))
		if code := oauthErrorCode(t, err); code != "invalid_grant" {
			t.Fatalf("got %q", code)
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		q := consent(t, f.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "alice", "approve")
		c := *f.conf
		c.ClientSecret = "nope"
		_, err := c.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(v))
		if code := oauthErrorCode(t, err); code != "invalid_client" {
			t.Fatalf("got %q", code)
		}
	})
	t.Run("unsupported grant", func(t *testing.T) {
		resp, err := http.PostForm(f.srv.URL+"/token", url.Values{"grant_type": {"password"}, "client_id": {f.conf.ClientID}, "client_secret": {f.conf.ClientSecret}})
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || body["error"] != "unsupported_grant_type" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%d %v %v", resp.StatusCode, body, resp.Header)
		}
	})
	t.Run("injected failure", func(t *testing.T) {
		tok := f.signIn(t, "alice")
		for _, status := range []int{http.StatusBadRequest, http.StatusServiceUnavailable} {
			f.p.FailTokenEndpoint(status)
			_, err := f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token()
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != status {
				t.Fatalf("status %d: err %v", status, err)
			}
		}
		f.p.FailTokenEndpoint(0)
		if _, err := f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token(); err != nil {
			t.Fatalf("after reset: %v", err)
		}
	})
}

func TestProvider_AuthorizeErrors(t *testing.T) {
	f := newFixture(t, oauthdemo.Config{})
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	base := url.Values{
		"response_type": {"code"}, "client_id": {"gateway"}, "redirect_uri": {redirectURI},
		"state": {"xyz"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
	tests := []struct {
		name      string
		change    map[string]string
		wantPage  bool   // 400 error page, no redirect
		wantError string // error= in the redirect
	}{
		{name: "unknown client", change: map[string]string{"client_id": "other"}, wantPage: true},
		{name: "unregistered redirect", change: map[string]string{"redirect_uri": "https://evil.example/cb"}, wantPage: true},
		{name: "plain pkce", change: map[string]string{"code_challenge_method": "plain"}, wantError: "invalid_request"},
		{name: "no pkce", change: map[string]string{"code_challenge": "", "code_challenge_method": ""}, wantError: "invalid_request"},
		{name: "no state", change: map[string]string{"state": ""}, wantError: "invalid_request"},
		{name: "token response type", change: map[string]string{"response_type": "token"}, wantError: "unsupported_response_type"},
		{name: "unknown scope", change: map[string]string{"scope": "notes.read admin"}, wantError: "invalid_scope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{}
			for k, v := range base {
				q[k] = v
			}
			for k, v := range tc.change {
				q.Set(k, v)
			}
			resp, err := noRedirect.Get(f.srv.URL + "/authorize?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if tc.wantPage {
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
					t.Fatalf("got %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
				}
				return
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("error") != tc.wantError || loc.Query().Get("iss") != f.srv.URL {
				t.Fatalf("got %d %s", resp.StatusCode, loc)
			}
		})
	}
	t.Run("deny", func(t *testing.T) {
		q := consent(t, f.conf.AuthCodeURL("st-d", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "deny")
		if q.Get("error") != "access_denied" || q.Get("state") != "st-d" || q.Get("code") != "" {
			t.Fatalf("deny: %v", q)
		}
	})
	t.Run("metadata", func(t *testing.T) {
		resp, err := http.Get(f.srv.URL + "/.well-known/oauth-authorization-server")
		if err != nil {
			t.Fatal(err)
		}
		var md map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if md["issuer"] != f.srv.URL || md["revocation_endpoint"] != f.srv.URL+"/revoke" || md["authorization_response_iss_parameter_supported"] != true {
			t.Fatalf("metadata %v", md)
		}
		if m, _ := md["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
			t.Fatalf("code_challenge_methods_supported %v", m)
		}
	})
}

func TestNotesServer(t *testing.T) {
	f := newFixture(t, oauthdemo.Config{})
	var notes http.Handler
	ns := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { notes.ServeHTTP(w, r) }))
	t.Cleanup(ns.Close)
	resource := ns.URL + "/mcp"
	notes = oauthdemo.NotesServer(f.p, resource, slog.New(slog.DiscardHandler))

	t.Run("challenge", func(t *testing.T) {
		for _, authz := range []string{"", "Bearer nope"} {
			req, _ := http.NewRequest(http.MethodPost, resource, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
			req.Header.Set("Content-Type", "application/json")
			if authz != "" {
				req.Header.Set("Authorization", authz)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := `Bearer resource_metadata="` + ns.URL + `/.well-known/oauth-protected-resource/mcp"`
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
				t.Fatalf("%q: %d %q", authz, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
	})
	t.Run("metadata", func(t *testing.T) {
		resp, err := http.Get(ns.URL + "/.well-known/oauth-protected-resource/mcp")
		if err != nil {
			t.Fatal(err)
		}
		var md map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		as, _ := md["authorization_servers"].([]any)
		if md["resource"] != resource || len(as) != 1 || as[0] != f.srv.URL {
			t.Fatalf("PRM %v", md)
		}
	})

	connect := func(t *testing.T, tok *oauth2.Token) *mcp.ClientSession {
		t.Helper()
		hc := oauth2.NewClient(t.Context(), oauth2.StaticTokenSource(tok))
		c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
		cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: resource, HTTPClient: hc}, nil)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		t.Cleanup(func() { _ = cs.Close() })
		return cs
	}
	call := func(t *testing.T, cs *mcp.ClientSession, tool string, args any) map[string]any {
		t.Helper()
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: args})
		if err != nil || res.IsError {
			t.Fatalf("%s: %v %+v", tool, err, res)
		}
		b, _ := json.Marshal(res.StructuredContent)
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return out
	}

	alice := connect(t, f.signIn(t, "alice"))
	bob := connect(t, f.signIn(t, "bob"))
	if got := call(t, alice, "whoami", map[string]any{}); got["user"] != "alice" {
		t.Fatalf("whoami: %v", got)
	}
	if got := call(t, bob, "whoami", map[string]any{}); got["user"] != "bob" {
		t.Fatalf("whoami: %v", got)
	}
	call(t, alice, "add_note", map[string]any{"text": "milk"})
	if got := call(t, alice, "list_notes", map[string]any{}); len(got["notes"].([]any)) != 1 {
		t.Fatalf("alice notes: %v", got)
	}
	if got := call(t, bob, "list_notes", map[string]any{}); len(got["notes"].([]any)) != 0 {
		t.Fatalf("bob sees: %v", got)
	}
}

// The provider must be usable from many goroutines (go test -race).
func TestProvider_Concurrent(t *testing.T) {
	f := newFixture(t, oauthdemo.Config{AccessTokenTTL: time.Minute})
	tok := f.signIn(t, "alice")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, _, _ = f.p.Verify(tok.AccessToken)
			_, err := f.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token()
			errs <- err
		}()
	}
	ok := 0
	for range 8 {
		if <-errs == nil {
			ok++
		}
	}
	// Rotation makes the refresh token single use: exactly one wins.
	if ok != 1 || f.p.Stats().RefreshGrants != 1 {
		t.Fatalf("%d refreshes succeeded, stats %+v", ok, f.p.Stats())
	}
}

// The official Go SDK's OAuth client, as strict as real MCP clients (PRM
// resource match, AS metadata, PKCE, RFC 9207 iss), signs in to the notes
// server directly.
func TestNotesServer_SDKClient(t *testing.T) {
	f := newFixture(t, oauthdemo.Config{})
	var notes http.Handler
	ns := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { notes.ServeHTTP(w, r) }))
	t.Cleanup(ns.Close)
	resource := ns.URL + "/mcp"
	notes = oauthdemo.NotesServer(f.p, resource, slog.New(slog.DiscardHandler))

	fetched := 0
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		PreregisteredClient: &oauthex.ClientCredentials{ClientID: f.conf.ClientID, ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: f.conf.ClientSecret}},
		RedirectURL:         redirectURI,
		AuthorizationCodeFetcher: func(_ context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			fetched++
			q := consent(t, args.URL, "dave", "approve")
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		},
		RequestRefreshToken: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "sdk", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: resource, OAuthHandler: h}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("whoami: %v %+v", err, res)
	}
	if out, _ := res.StructuredContent.(map[string]any); out["user"] != "dave" {
		t.Fatalf("whoami = %v", res.StructuredContent)
	}
	if fetched != 1 || f.p.Stats().AuthorizationCodeGrants != 1 {
		t.Fatalf("fetched %d, stats %+v", fetched, f.p.Stats())
	}
}
