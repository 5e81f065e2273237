package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/grants"
)

// TestAggregateTokens: /authorize and /token accept the aggregate routes'
// resource URLs (<base>/mcp, <base>/<virtual>/mcp); the consent page names
// the aggregate; no upstream sign-in is asked for (members are connected
// from the connect page); the token's audience is the aggregate's resource
// URL, so it is accepted on that aggregate only, and a per-server token is
// refused on an aggregate.
func TestAggregateTokens(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	const vicKey = "mcpg_vic__000000000000000000000000"
	rev, err := e.st.PutVirtualServer(ctx, &configv1.VirtualServer{Name: "team", Scopes: []string{"team.use"},
		Members: []*configv1.VirtualServerMember{{Server: "Gmail"}, {Server: "GitHub"}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	e.putPrincipal("vic", "team")
	e.putKey("vic", vicKey)
	c := e.publicClient("Aggregate client")
	q := func(resource, scope string) url.Values {
		v := e.authQuery(c)
		v.Set("resource", resource)
		v.Set("scope", scope)
		return v
	}
	token := func(b *browser, resource, scope, user string) (string, string) {
		t.Helper()
		loc := e.code(b, q(resource, scope), user)
		tr := e.exchange(c, loc.Query().Get("code"), url.Values{"resource": {resource}})
		if tr.status != http.StatusOK {
			t.Fatalf("token for %s: %d %s", resource, tr.status, tr.body)
		}
		m := tr.json(t)
		return m["access_token"].(string), m["refresh_token"].(string)
	}
	decide := func(route, tok string) *authorizev1.AuthorizeResponse {
		t.Helper()
		e.sync()
		d, err := authorize.Decide(e.st, e.clock.Now(), &authorizev1.AuthorizeRequest{
			Route: route, RootAggregate: route == "", Credentials: &authorizev1.Credentials{BearerToken: tok},
			HttpMethod: "POST", JsonrpcMethod: "tools/list", PublicBaseUrl: e.pub,
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := grants.Obtainer{Grants: grants.StoreGrants{Source: e.st, Now: e.clock.Now}, Machine: &grants.ClientCredentials{Now: e.clock.Now}}.Complete(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	wrongAudience := func(r *authorizev1.AuthorizeResponse) bool {
		return r.GetDecision() == authorizev1.Decision_DECISION_CHALLENGE && r.GetReason() == authorize.ReasonWrongAudience
	}

	// The root aggregate, for alice (granted "*").
	alice := newBrowser(t)
	e.signIn(alice, aliceKey)
	page := e.consentPage(alice, q(e.pub+"/mcp", ""))
	if !strings.Contains(page.body, "to use all your servers?") || !strings.Contains(page.body, "<dd>"+e.pub+"/mcp</dd>") || strings.Contains(page.body, "Sign-in at") {
		t.Fatalf("root consent page: %s", page.body)
	}
	rootTok, rootRefresh := token(alice, e.pub+"/mcp", "", "alice")
	rec, ok := e.accessRecord(rootTok)
	if !ok || rec.GetRoute() != "" || rec.GetAudience() != e.pub+"/mcp" || rec.GetPrincipal() != "alice" {
		t.Fatalf("root token record %v", rec)
	}
	if got := decide("", rootTok); got.GetDecision() != authorizev1.Decision_DECISION_ALLOW || len(got.GetAggregate().GetMembers()) != 2 {
		t.Fatalf("root token on /mcp: %v", got)
	}
	for _, route := range []string{"Gmail", "GitHub"} {
		if got := decide(route, rootTok); !wrongAudience(got) {
			t.Fatalf("root token on /%s/mcp: %v", route, got)
		}
	}
	if e.up.Stats().AuthorizationCodeGrants != 0 {
		t.Fatal("the root aggregate's sign-in went through a member's upstream sign-in")
	}
	rr := call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {rootRefresh}, "client_id": {c}, "resource": {e.pub + "/mcp"},
	}.Encode())
	if rr.status != http.StatusOK {
		t.Fatalf("refresh of the root aggregate's token: %d %s", rr.status, rr.body)
	}
	// A per-server token is refused on the aggregate.
	githubTok, _ := token(alice, e.pub+"/GitHub/mcp", "repo", "alice")
	if got := decide("", githubTok); !wrongAudience(got) {
		t.Fatalf("GitHub token on /mcp: %v", got)
	}
	if got := decide("GitHub", githubTok); got.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
		t.Fatalf("GitHub token on its route: %v", got)
	}

	// A virtual server, for vic (granted only it).
	vic := newBrowser(t)
	e.signIn(vic, vicKey)
	page = e.consentPage(vic, q(e.pub+"/team/mcp", ""))
	if !strings.Contains(page.body, "to use team (a virtual server)?") || !strings.Contains(page.body, "team.use") {
		t.Fatalf("virtual consent page: %s", page.body)
	}
	wantRedirectError(t, e, vic.get(e.authorizeURL(q(e.pub+"/team/mcp", "repo"))), "invalid_scope")
	// vic is granted no server: the root aggregate is refused like any
	// route it may not use.
	wantRedirectError(t, e, vic.get(e.authorizeURL(q(e.pub+"/mcp", ""))), "access_denied")
	teamTok, _ := token(vic, e.pub+"/team/mcp", "team.use", "vic")
	rec, ok = e.accessRecord(teamTok)
	if !ok || rec.GetRoute() != "team" || rec.GetAudience() != e.pub+"/team/mcp" {
		t.Fatalf("team token record %v", rec)
	}
	got := decide("team", teamTok)
	if got.GetDecision() != authorizev1.Decision_DECISION_ALLOW || got.GetAggregate().GetName() != "team" {
		t.Fatalf("team token on /team/mcp: %v", got)
	}
	// Its members decide as on their routes: Gmail needs vic's connection.
	if m := got.GetAggregate().GetMembers()[0]; m.GetServer() != "Gmail" || m.GetDecision().GetDecision() != authorizev1.Decision_DECISION_CHALLENGE ||
		m.GetDecision().GetChallenge().GetConnectUrl() != e.pub+"/connections?connect=Gmail" {
		t.Fatalf("team's Gmail member: %v", m)
	}
	for _, route := range []string{"", "Gmail"} {
		if got := decide(route, teamTok); !wrongAudience(got) {
			t.Fatalf("team token on %q: %v", route, got)
		}
	}
	// mallory (GitHub only) may not use team.
	mallory := newBrowser(t)
	e.signIn(mallory, malloryKey)
	wantRedirectError(t, e, mallory.get(e.authorizeURL(q(e.pub+"/team/mcp", ""))), "access_denied")

	// The connect URL: the connections page pointing at the server, whose
	// connect button is the page's CSRF-protected POST.
	r := vic.get(e.pub + "/connections?connect=Gmail")
	if r.status != http.StatusOK || !strings.Contains(r.body, "Connect Gmail to use its tools through the gateway.") {
		t.Fatalf("connect page: %d %s", r.status, r.body)
	}
	r = newBrowser(t).get(e.pub + "/connections?connect=Gmail")
	if r.status != http.StatusFound || !strings.HasSuffix(r.header.Get("Location"), "/signin?next=connections") {
		t.Fatalf("connect page without a session: %d %s", r.status, r.header.Get("Location"))
	}
}

// TestIDJAGAggregate: an ID-JAG for the root aggregate's resource URL
// yields a token for /mcp (audience <base>/mcp, route ""), for a virtual
// server's a token for it with its scopes only.
func TestIDJAGAggregate(t *testing.T) {
	e := newIDJAGEnv(t)
	rev, err := e.st.PutVirtualServer(t.Context(), &configv1.VirtualServer{Name: "team", Scopes: []string{"team.use"},
		Members: []*configv1.VirtualServerMember{{Server: "GitHub"}}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	for _, c := range []struct{ resource, route, scope string }{{e.pub + "/mcp", "", ""}, {e.pub + "/team/mcp", "team", "team.use"}} {
		g := e.grant()
		g.Resource = c.resource
		r := e.redeem(e.corp.Issue(g))
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", c.resource, r.status, r.body)
		}
		rec, ok := e.accessRecord(r.json(t)["access_token"].(string))
		if !ok || rec.GetRoute() != c.route || rec.GetAudience() != c.resource || strings.Join(rec.GetScopes(), " ") != c.scope {
			t.Fatalf("%s: token record %v", c.resource, rec)
		}
	}
	g := e.grant()
	g.Resource, g.Scope = e.pub+"/team/mcp", "repo"
	wantBody(t, e.redeem(e.corp.Issue(g)), http.StatusBadRequest, "invalid_scope", "the assertion's scope exceeds the route's scopes")
}
