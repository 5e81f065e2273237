package stacktest_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/internal/oidcdemo"
	"github.com/mcpgate/mcpgate/internal/stacktest"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// lockedBuffer is an audit destination tests read while servers write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// idpGroupsTTL is the gateway's access-token lifetime in
// TestIdPGroupChangeAtRefresh. golang.org/x/oauth2 (the Go SDK's token
// source) treats a token as expired 10 s before its expiry, so a lifetime
// above that lets the SDK use its token before refreshing it.
const idpGroupsTTL = 15 * time.Second

// TestIdPGroupChangeAtRefresh: removing a person from a group at the
// identity provider takes effect at their next gateway refresh, so after at
// most one access-token lifetime (issue 9, "Done when"). Ada signs in with
// the demo IdP (group release: notes) through the Go SDK client, calls a
// notes tool, and signs in a second client on notes; the IdP moves her to
// readers. Her access token keeps working (nothing asked the IdP yet). The
// second client's refresh makes the gateway re-assert her groups at the
// IdP (now readers, audited) and is refused (invalid_grant: notes is no
// longer granted); from then on her first token, still valid, gets exactly
// the answer of a route that does not exist (404, issue 8 item 16). Once
// it has expired the data plane challenges it (401), the SDK's refresh is
// refused, and the SDK client's next call authorizes again and ends in
// access_denied; echo (readers) still answers her. Bob (group readers) is
// refused notes the same way and lists exactly echo's tools.
func TestIdPGroupChangeAtRefresh(t *testing.T) {
	auditLog := &lockedBuffer{}
	s := stacktest.Start(t, stacktest.WithControlPlaneConfig(func(c *controlplane.Config) {
		c.OAuth.AccessTokenTTL = idpGroupsTTL
		c.OAuth.Audit = audit.New(auditLog)
	}))
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
	assertedGroups := func(principal string) []string {
		t.Helper()
		p, ok := s.Store.Principal(principal)
		if !ok {
			t.Fatalf("no principal %s", principal)
		}
		var out []string
		for _, g := range p.GetAssertedGroups() {
			out = append(out, g.GetIdentityProvider()+":"+g.GetGroup())
		}
		return out
	}
	type answer struct {
		status                      int
		ctype, cache, wwwAuth, body string
	}
	call := func(route string, h http.Header) answer {
		t.Helper()
		resp, b := rawPost(t, s.RouteURL(route), h, initializeBody)
		return answer{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"),
			resp.Header.Get("WWW-Authenticate"), strings.ReplaceAll(b, "/"+route+"/", "/ROUTE/")}
	}
	bearerH := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	keyH := func(key string) http.Header { return http.Header{"X-Mcpgate-Api-Key": {key}} }

	// Ada signs in (created just in time, group release) and calls notes.
	cs, h, _, err := idpClient(t, s, oidcdemo.Ada, "ada@provider")
	if err != nil {
		t.Fatalf("connect as ada through the IdP: %v", err)
	}
	defer cs.Close()
	if got := whoami(t, cs); got != "ada@provider" {
		t.Fatalf("whoami = %q", got)
	}
	ts, err := h.TokenSource(t.Context())
	if err != nil || ts == nil {
		t.Fatalf("token source: %v", err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	if got, want := assertedGroups("ada_demo-example"), []string{"demo:release"}; !slices.Equal(got, want) {
		t.Fatalf("ada's asserted groups = %v, want %v", got, want)
	}

	// A second client of Ada's on notes (another token family), e.g. her
	// second editor.
	cs2, h2, _, err := idpClient(t, s, oidcdemo.Ada, "ada@provider")
	if err != nil {
		t.Fatalf("second client: %v", err)
	}
	defer cs2.Close()
	ts2, err := h2.TokenSource(t.Context())
	if err != nil || ts2 == nil {
		t.Fatalf("token source: %v", err)
	}
	tok2, err := ts2.Token()
	if err != nil || tok2.RefreshToken == "" {
		t.Fatalf("second client's token: %v %v", tok2, err)
	}
	rec2, ok := s.Store.AccessToken(store.HashKey(tok2.AccessToken))
	if !ok {
		t.Fatal("second client's access token is not in the store")
	}

	// The IdP moves Ada to readers. Her access token keeps working until a
	// refresh asks the IdP (at most one access-token lifetime).
	idp.SetGroups(oidcdemo.Ada, []string{"readers"})
	if got := call(stacktest.NotesRoute, bearerH(tok.AccessToken)); got.status != http.StatusOK || !strings.Contains(got.body, `"protocolVersion"`) {
		t.Fatalf("notes before expiry: %+v, want 200 with an initialize result", got)
	}
	if got, want := assertedGroups("ada_demo-example"), []string{"demo:release"}; !slices.Equal(got, want) {
		t.Fatalf("before the refresh ada's asserted groups = %v, want %v", got, want)
	}
	unknown := call("nosuch", keyH(s.NewKey("ada_demo-example")))
	if unknown.status != http.StatusNotFound {
		t.Fatalf("unknown route: %+v, want 404", unknown)
	}

	// The second client refreshes early (the refresh_token grant over HTTP,
	// relayed by the data plane): the gateway re-asserts her groups at the
	// IdP and refuses a notes token. From then on her first client's token,
	// still valid, gets the answer of a route that does not exist.
	code, body := postForm(t, s.PublicURL+"/token", url.Values{"grant_type": {"refresh_token"},
		"refresh_token": {tok2.RefreshToken}, "client_id": {rec2.GetClientId()}}, "", "")
	if code != http.StatusBadRequest || len(body) != 2 || body["error"] != "invalid_grant" ||
		body["error_description"] != "the refresh token is invalid, expired or revoked" {
		t.Fatalf("second client's refresh: %d %v, want 400 invalid_grant", code, body)
	}
	if got, want := assertedGroups("ada_demo-example"), []string{"demo:readers"}; !slices.Equal(got, want) {
		t.Fatalf("after the refresh ada's asserted groups = %v, want %v", got, want)
	}
	if got := call(stacktest.NotesRoute, bearerH(tok.AccessToken)); got != unknown {
		t.Fatalf("ada's valid token on notes after the re-assertion:\n %+v\nunknown route answers\n %+v", got, unknown)
	}

	// After one lifetime the data plane challenges the expired token (a
	// credential that is not valid learns nothing about routes).
	deadline := time.Now().Add(idpGroupsTTL + 30*time.Second)
	var expired answer
	for {
		expired = call(stacktest.NotesRoute, bearerH(tok.AccessToken))
		if expired != unknown || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	wantChallenge := `Bearer resource_metadata="` + s.PRMURL(stacktest.NotesRoute) + `", error="invalid_token", error_description="The credential is unknown revoked or expired."`
	if expired.status != http.StatusUnauthorized || expired.wwwAuth != wantChallenge ||
		expired.body != `{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"authentication required"}}` {
		t.Fatalf("notes after expiry: %+v\nwant 401 with WWW-Authenticate %s", expired, wantChallenge)
	}

	// The SDK's token source refreshes: the gateway re-asserts Ada's groups
	// at the IdP (still readers) and refuses a notes token.
	_, err = ts.Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusBadRequest || re.ErrorCode != "invalid_grant" ||
		re.ErrorDescription != "the refresh token is invalid, expired or revoked" {
		t.Fatalf("refresh after the group change: %v, want 400 invalid_grant", err)
	}
	if got, want := assertedGroups("ada_demo-example"), []string{"demo:readers"}; !slices.Equal(got, want) {
		t.Fatalf("after the refresh ada's asserted groups = %v, want %v", got, want)
	}
	// The control plane's audit log has her two sign-ins and the
	// re-assertion that changed her groups (re-assertions that changed
	// nothing are left out: the SDK's refresh, and on a slow machine one
	// before the change).
	unchanged := `:"idp","event":"reassert","idp":"demo","principal":"ada_demo-example","subject":"ada@demo.example","outcome":"ok"}`
	var adaEvents []string
	for line := range strings.Lines(auditLog.String()) {
		if _, rest, _ := strings.Cut(line, `"kind"`); strings.TrimSpace(rest) == unchanged {
			continue
		}
		if strings.Contains(line, `"principal":"ada_demo-example"`) {
			_, rest, _ := strings.Cut(line, `"kind"`) // without the time
			adaEvents = append(adaEvents, strings.TrimSpace(rest))
		}
	}
	if want := []string{
		`:"idp","event":"signin","idp":"demo","principal":"ada_demo-example","subject":"ada@demo.example","outcome":"ok","created":true,"groups_added":["release"]}`,
		`:"idp","event":"signin","idp":"demo","principal":"ada_demo-example","subject":"ada@demo.example","outcome":"ok"}`,
		`:"idp","event":"reassert","idp":"demo","principal":"ada_demo-example","subject":"ada@demo.example","outcome":"ok","groups_added":["readers"],"groups_removed":["release"]}`,
	}; !slices.Equal(adaEvents, want) {
		t.Fatalf("ada's audit events:\n%s\nwant\n%s", strings.Join(adaEvents, "\n"), strings.Join(want, "\n"))
	}
	// The SDK client's next notes call fails: without a usable token it
	// authorizes again in its browser (a fresh IdP sign-in, readers), and
	// the gateway refuses notes at the authorization step.
	_, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "whoami"})
	if err == nil || !strings.Contains(err.Error(), "authorization error access_denied: this account may not use this server") {
		t.Fatalf("ada's SDK notes call after the refresh: %v, want access_denied", err)
	}

	// With a credential still valid (an API key an admin creates for her),
	// notes answers Ada like an unknown route; echo, granted to readers,
	// answers.
	adaKey := s.NewKey("ada_demo-example")
	if got := call(stacktest.NotesRoute, keyH(adaKey)); got != unknown {
		t.Fatalf("ada on notes after the refresh:\n %+v\nunknown route answers\n %+v", got, unknown)
	}
	if got := call(stacktest.EchoRoute, keyH(adaKey)); got.status != http.StatusOK || !strings.Contains(got.body, `"protocolVersion"`) {
		t.Fatalf("ada on echo after the refresh: %+v, want 200", got)
	}

	// Bob (readers) signs in on echo with the SDK client: he lists exactly
	// echo's tools, and notes answers him like an unknown route.
	bcs, _, _, err := idpClientOn(t, s, stacktest.EchoRoute, oidcdemo.Bob, "bob@provider")
	if err != nil {
		t.Fatalf("connect as bob on echo: %v", err)
	}
	defer bcs.Close()
	if got, want := assertedGroups("bob_demo-example"), []string{"demo:readers"}; !slices.Equal(got, want) {
		t.Fatalf("bob's asserted groups = %v, want %v", got, want)
	}
	direct, err := mcp.NewClient(&mcp.Implementation{Name: "direct", Version: "1"}, nil).Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: s.EchoURL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	toolNames := func(cs *mcp.ClientSession) []string {
		t.Helper()
		res, err := cs.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tl := range res.Tools {
			names = append(names, tl.Name)
		}
		slices.Sort(names)
		return names
	}
	if got, want := toolNames(bcs), toolNames(direct); len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("bob's echo tools/list = %v, want echo's tools %v", got, want)
	}
	bobKey := s.NewKey("bob_demo-example")
	if got := call(stacktest.NotesRoute, keyH(bobKey)); got != unknown {
		t.Fatalf("bob on notes:\n %+v\nunknown route answers\n %+v", got, unknown)
	}
	if got := call(stacktest.EchoRoute, keyH(bobKey)); got.status != http.StatusOK {
		t.Fatalf("bob on echo: %+v, want 200", got)
	}
}
