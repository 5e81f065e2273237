package stacktest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// seenReply is one gateway answer the client got.
type seenReply struct {
	status int
	www    []string
}

// replyRecorder records the status and WWW-Authenticate of every answer.
type replyRecorder struct {
	mu   sync.Mutex
	seen []seenReply
}

func (r *replyRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.seen = append(r.seen, seenReply{resp.StatusCode, resp.Header.Values("WWW-Authenticate")})
		r.mu.Unlock()
	}
	return resp, err
}

func (r *replyRecorder) all() []seenReply {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// TestGoSDK_StepUp (issue 11, scopes and step-up): the notes route grants
// notes.read by default; add_note needs the gateway scope notes.add and
// the upstream scope notes.write. The official Go SDK client (v1.8.0,
// whose AuthorizationCodeHandler re-authorizes on 403 insufficient_scope
// with the union of the scopes it was granted and the challenged ones,
// then retries the request once) connects with notes.read, calls add_note,
// gets the 403 step-up challenge, re-authorizes through the scripted
// browser (the consent page shows notes.add as new, notes.read as already
// granted; the upstream grant is upgraded to notes.write at the provider)
// and the retried call succeeds.
//
// Run twice: with dynamic registration, which the SDK repeats at every
// authorization (a new client each time, so the step-up consent is a first
// consent for that client and lists every scope), and with a client
// registered once (pre-registered in the SDK), whose step-up consent lists
// only notes.add as new.
func TestGoSDK_StepUp(t *testing.T) {
	for _, prereg := range []bool{false, true} {
		name := "dynamic registration"
		if prereg {
			name = "pre-registered client"
		}
		t.Run(name, func(t *testing.T) { stepUp(t, prereg) })
	}
}

func stepUp(t *testing.T, prereg bool) {
	s := stacktest.Start(t)
	notes, sec := s.Provider.McpServer(stacktest.NotesRoute, s.NotesURL)
	notes.ClientSecret = sec.GetClientSecret()
	notes.Scopes = []string{"notes.read"}
	notes.ToolScopes = []*configv1.ToolScopes{{Tool: "add_*", Scopes: []string{"notes.add"}, UpstreamScopes: []string{"notes.write"}}}
	s.PutServer(notes)
	alice := s.AddUser("alice", stacktest.NotesRoute)
	// The authorization server offers the tool scope; the route's
	// protected-resource metadata still names no scope (it is the same for
	// every route path, configured or not).
	resp, err := http.Get(s.PublicURL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var asm struct {
		ScopesSupported []string `json:"scopes_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&asm); err != nil || !slices.Contains(asm.ScopesSupported, "notes.add") || !slices.Contains(asm.ScopesSupported, "notes.read") {
		t.Errorf("AS metadata scopes_supported %q (%v)", asm.ScopesSupported, err)
	}
	resp.Body.Close()
	resp, err = http.Get(s.PRMURL(stacktest.NotesRoute))
	if err != nil {
		t.Fatal(err)
	}
	var prm map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&prm); err != nil || prm["scopes_supported"] != nil {
		t.Errorf("PRM %v (%v)", prm, err)
	}
	resp.Body.Close()

	redirect := "http://127.0.0.1:53682/callback"
	b := stacktest.NewBrowser(alice, "alice@provider")
	meta := &oauthex.ClientRegistrationMetadata{
		RedirectURIs: []string{redirect}, ClientName: "stacktest step-up client", TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code", "refresh_token"},
	}
	cfg := &auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: meta},
		RedirectURL:                     redirect,
		AuthorizationCodeFetcher:        b.Fetcher(redirect),
	}
	if prereg {
		meta.TokenEndpointAuthMethod = "client_secret_post"
		reg, err := oauthex.RegisterClient(t.Context(), s.PublicURL+"/register", meta, nil)
		if err != nil {
			t.Fatalf("register: %v", err)
		}
		cfg.DynamicClientRegistrationConfig = nil
		cfg.PreregisteredClient = &oauthex.ClientCredentials{ClientID: reg.ClientID, Issuer: s.PublicURL,
			ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: reg.ClientSecret}}
	}
	h, err := auth.NewAuthorizationCodeHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &replyRecorder{}
	client := mcp.NewClient(&mcp.Implementation{Name: "stacktest-stepup", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: s.RouteURL(stacktest.NotesRoute), OAuthHandler: h,
		HTTPClient: &http.Client{Transport: rec}}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	tok1 := gatewayToken(t, h)
	if r, ok := accessToken(t, s, tok1); !ok || !slices.Equal(r, []string{"notes.read"}) {
		t.Fatalf("first token scopes %q (found %v), want [notes.read]", r, ok)
	}
	if got := whoami(t, cs); got != "alice@provider" {
		t.Fatalf("whoami = %q", got)
	}
	if sc := connectionScopes(t, s, "alice"); !slices.Equal(sc, []string{"notes.read"}) {
		t.Fatalf("first upstream grant scopes %q", sc)
	}
	pagesBefore := len(b.Pages)

	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "add_note", Arguments: map[string]any{"text": "ship it"}})
	if err != nil {
		t.Fatalf("add_note: %v", err)
	}
	if res.IsError || !strings.Contains(textOf(t, res), "ship it") {
		t.Fatalf("add_note result: error=%v %s", res.IsError, textOf(t, res))
	}

	// The client saw exactly one 403, the step-up challenge.
	want := `Bearer error="insufficient_scope", scope="notes.add notes.read", resource_metadata="` + s.PRMURL(stacktest.NotesRoute) + `"`
	var forbidden []seenReply
	for _, r := range rec.all() {
		if r.status == http.StatusForbidden {
			forbidden = append(forbidden, r)
		}
	}
	if len(forbidden) != 1 || len(forbidden[0].www) != 1 || forbidden[0].www[0] != want {
		t.Errorf("403 answers %v, want one with %q", forbidden, want)
	}
	// The re-authorization showed the gateway consent with the new scope
	// apart from the held one, then the provider's consent (the upgrade).
	var consent, upstream bool
	for _, p := range b.Pages[pagesBefore:] {
		if !strings.Contains(p.Body, `name="csrf"`) {
			// Not the gateway's consent page.
		} else if prereg {
			consent = true
			i := strings.Index(p.Body, `id="new-scopes"`)
			if i < 0 {
				t.Fatalf("step-up consent page without new scopes: %s", p.Body)
			}
			newPart, heldPart, _ := strings.Cut(p.Body[i:], `id="held-scopes"`)
			if !strings.Contains(newPart, "<code>notes.add</code>") || strings.Contains(newPart, "<code>notes.read</code>") ||
				!strings.Contains(heldPart, "<code>notes.read</code>") {
				t.Errorf("step-up consent page lists new/held scopes wrongly: %s", p.Body)
			}
		} else {
			// A new client: a first consent, every scope listed.
			consent = !strings.Contains(p.Body, `id="new-scopes"`) &&
				strings.Contains(p.Body, "<code>notes.add</code>") && strings.Contains(p.Body, "<code>notes.read</code>")
		}
		if strings.HasPrefix(p.URL, s.ProviderURL) {
			upstream = true
			if !strings.Contains(p.Body, "notes.write") {
				t.Errorf("provider consent does not ask for notes.write: %s", p.Body)
			}
		}
	}
	if !consent || !upstream {
		t.Errorf("step-up pages: gateway consent %v, provider consent %v", consent, upstream)
	}
	tok2 := gatewayToken(t, h)
	if r, ok := accessToken(t, s, tok2); tok2 == tok1 || !ok || !slices.Equal(r, []string{"notes.add", "notes.read"}) {
		t.Errorf("stepped-up token scopes %q (found %v, new %v), want [notes.add notes.read]", r, ok, tok2 != tok1)
	}
	if sc := connectionScopes(t, s, "alice"); !slices.Equal(sc, []string{"notes.read", "notes.write"}) {
		t.Errorf("upgraded upstream grant scopes %q, want [notes.read notes.write]", sc)
	}
	// The stepped-up token keeps what the first one could do.
	if got := whoami(t, cs); got != "alice@provider" {
		t.Errorf("whoami after step-up = %q", got)
	}
}

// accessToken returns the scopes of a gateway access token, sorted.
func accessToken(t *testing.T, s *stacktest.Stack, tok string) ([]string, bool) {
	t.Helper()
	r, ok := s.Store.AccessToken(store.HashKey(tok))
	if !ok {
		ctx, cancel := context.WithTimeout(t.Context(), 5e9)
		defer cancel()
		_ = s.Store.CatchUp(ctx)
		r, ok = s.Store.AccessToken(store.HashKey(tok))
	}
	sc := slices.Clone(r.GetScopes())
	slices.Sort(sc)
	return sc, ok
}

func connectionScopes(t *testing.T, s *stacktest.Stack, principal string) []string {
	t.Helper()
	res, err := s.Connections.ListConnections(t.Context(), &vaultv1.ListConnectionsRequest{Principal: principal, Server: stacktest.NotesRoute})
	if err != nil || len(res.GetConnections()) != 1 {
		t.Fatalf("connections of %s: %v %v", principal, res, err)
	}
	sc := slices.Clone(res.GetConnections()[0].GetScopes())
	slices.Sort(sc)
	return sc
}

// TestGoSDK_UpstreamScopeUpgrade: a person connected before the admin said
// add_* needs the upstream scope notes.write (no gateway scope). Her call
// of add_note gets the upstream sign-in challenge (401, scope = her
// token's), the Go SDK client authorizes again, the gateway sends her
// through the provider for notes.read and notes.write (the union), saves
// the upgraded grant, and the retried call succeeds.
func TestGoSDK_UpstreamScopeUpgrade(t *testing.T) {
	s := stacktest.Start(t)
	notes, sec := s.Provider.McpServer(stacktest.NotesRoute, s.NotesURL)
	notes.ClientSecret = sec.GetClientSecret()
	notes.Scopes = []string{"notes.read"}
	s.PutServer(notes)
	alice := s.AddUser("alice", stacktest.NotesRoute)
	redirect := "http://127.0.0.1:53682/callback"
	b := stacktest.NewBrowser(alice, "alice@provider")
	h, err := auth.NewAuthorizationCodeHandler(&auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{redirect}, ClientName: "stacktest upgrade client", TokenEndpointAuthMethod: "none",
			GrantTypes: []string{"authorization_code", "refresh_token"},
		}},
		RedirectURL:              redirect,
		AuthorizationCodeFetcher: b.Fetcher(redirect),
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := &replyRecorder{}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "stacktest-upgrade", Version: "1"}, nil).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: s.RouteURL(stacktest.NotesRoute), OAuthHandler: h, HTTPClient: &http.Client{Transport: rec}}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	if sc := connectionScopes(t, s, "alice"); !slices.Equal(sc, []string{"notes.read"}) {
		t.Fatalf("first grant scopes %q", sc)
	}
	notes.ToolScopes = []*configv1.ToolScopes{{Tool: "add_*", UpstreamScopes: []string{"notes.write"}}}
	s.PutServer(notes)
	before := len(rec.all())
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "add_note", Arguments: map[string]any{"text": "upgraded"}})
	if err != nil || res.IsError {
		t.Fatalf("add_note: %v %v", res, err)
	}
	want := `Bearer resource_metadata="` + s.PRMURL(stacktest.NotesRoute) + `", scope="notes.read"`
	var challenges []seenReply
	for _, r := range rec.all()[before:] {
		if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
			challenges = append(challenges, r)
		}
	}
	if len(challenges) != 1 || challenges[0].status != http.StatusUnauthorized || len(challenges[0].www) != 1 || challenges[0].www[0] != want {
		t.Errorf("challenges %v, want one 401 %q", challenges, want)
	}
	if sc := connectionScopes(t, s, "alice"); !slices.Equal(sc, []string{"notes.read", "notes.write"}) {
		t.Errorf("upgraded grant scopes %q", sc)
	}
}
