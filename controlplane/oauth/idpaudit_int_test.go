package oauth_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/internal/oidcdemo"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// TestIdP_Audit: identity-provider sign-ins (who, which provider, the
// outcome with a fixed reason, whether the principal was created just in
// time, the groups asserted; a refused domain, an unregistered person)
// and the re-assertion of groups at a gateway refresh (groups added and
// removed) are written to the audit log, and no line holds a code, a
// token or a secret.
func TestIdP_Audit(t *testing.T) {
	buf := &syncBuffer{}
	e := newIdPEnv(t, func(c *oauth.Config) { c.Audit = audit.New(buf) })
	e.putIdP(&configv1.IdentityProvider{Name: "strict", DisplayName: "Strict", Issuer: e.idp.Issuer(), ClientId: "gw",
		CreatePrincipals: true, AllowedDomains: []string{"corp.example"}})
	e.putIdP(&configv1.IdentityProvider{Name: "closed", DisplayName: "Closed", Issuer: e.idp.Issuer(), ClientId: "gw"})
	clientID := e.publicClient("Claude Code")
	// events returns the audit lines written since the last call, each
	// without its time (checked to be RFC 3339 and recent).
	var seen int
	events := func() []string {
		t.Helper()
		all := buf.String()
		var out []string
		sc := bufio.NewScanner(strings.NewReader(all[seen:]))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("audit line %q: %v", sc.Text(), err)
			}
			at, err := time.Parse(time.RFC3339Nano, m["time"].(string))
			if err != nil || time.Since(at) > time.Minute || time.Since(at) < -time.Minute {
				t.Fatalf("audit time %v: %v", m["time"], err)
			}
			delete(m, "time")
			b, _ := json.Marshal(m)
			out = append(out, string(b))
		}
		seen = len(all)
		return out
	}
	wantEvents := func(step string, want ...string) {
		t.Helper()
		got := events()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s: audit events\n%s\nwant\n%s", step, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}

	// A successful sign-in: Bob is created just in time with his group.
	b := newBrowser(t)
	cb := e.idpLogin(b, e.startIdP(b, e.authQuery(clientID), "Demo IdP"), oidcdemo.Bob)
	if r := b.get(cb.String()); r.status != http.StatusSeeOther {
		t.Fatalf("bob callback: %d %s", r.status, r.body)
	}
	wantEvents("sign-in",
		`{"created":true,"event":"signin","groups_added":["readers"],"idp":"demo","kind":"idp","outcome":"ok","principal":"bob_demo-example","subject":"bob@demo.example"}`)

	// A refused domain: who the provider said, no principal, a fixed reason.
	b = newBrowser(t)
	cb = e.idpLogin(b, e.startIdP(b, e.authQuery(clientID), "Strict"), oidcdemo.Ada)
	if r := b.get(cb.String()); r.status != http.StatusForbidden || !strings.Contains(r.body, `<p class="error">`+msgIdPDomain+`</p>`) {
		t.Fatalf("strict callback: %d %s", r.status, r.body)
	}
	wantEvents("refused domain",
		`{"event":"signin","idp":"strict","kind":"idp","outcome":"refused","reason":"domain_not_allowed","subject":"ada@demo.example"}`)
	// An unknown person at a provider that creates nobody.
	b = newBrowser(t)
	cb = e.idpLogin(b, e.startIdP(b, e.authQuery(clientID), "Closed"), oidcdemo.Ada)
	if r := b.get(cb.String()); r.status != http.StatusForbidden || !strings.Contains(r.body, `<p class="error">`+msgIdPNotMember+`</p>`) {
		t.Fatalf("closed callback: %d %s", r.status, r.body)
	}
	wantEvents("not registered",
		`{"event":"signin","idp":"closed","kind":"idp","outcome":"refused","reason":"not_registered","subject":"ada@demo.example"}`)
	if _, ok := e.st.Principal("ada_demo-example"); ok {
		t.Fatal("a refused sign-in created ada")
	}

	// Ada (pre-created for SSO: not created again) signs in, gets tokens,
	// then the provider moves her from release to readers: the refresh
	// re-asserts her groups and records the change.
	rev, err := e.st.PutPrincipal(t.Context(), &configv1.Principal{Name: "ada_demo-example", DisplayName: oidcdemo.Ada,
		Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: []string{"GitHub"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	q := e.authQuery(clientID)
	q.Set("resource", e.pub+"/GitHub/mcp")
	q.Set("scope", "repo")
	b = newBrowser(t)
	cb = e.idpLogin(b, e.startIdP(b, q, "Demo IdP"), oidcdemo.Ada)
	idpCode := cb.Query().Get("code")
	if idpCode == "" {
		t.Fatalf("no code in %s", cb)
	}
	r := b.get(cb.String())
	if r.status != http.StatusSeeOther {
		t.Fatalf("ada callback: %d %s", r.status, r.body)
	}
	wantEvents("ada's sign-in",
		`{"event":"signin","groups_added":["release"],"idp":"demo","kind":"idp","outcome":"ok","principal":"ada_demo-example","subject":"ada@demo.example"}`)
	r = e.approve(b, b.get(r.location(t).String()), "approve")
	if r.status != http.StatusFound {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
	tok := e.exchange(clientID, r.location(t).Query().Get("code"), url.Values{"resource": {e.pub + "/GitHub/mcp"}})
	if tok.status != http.StatusOK {
		t.Fatalf("token: %d %s", tok.status, tok.body)
	}
	at, rt := tok.json(t)["access_token"].(string), tok.json(t)["refresh_token"].(string)
	refresh := func() response {
		return call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"},
			"refresh_token": {rt}, "client_id": {clientID}}.Encode())
	}
	// Unchanged groups: a re-assertion with nothing added or removed.
	if r = refresh(); r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	rt = r.json(t)["refresh_token"].(string)
	wantEvents("unchanged refresh",
		`{"event":"reassert","idp":"demo","kind":"idp","outcome":"ok","principal":"ada_demo-example","subject":"ada@demo.example"}`)
	e.idp.SetGroups(oidcdemo.Ada, []string{"readers", "writers"})
	if r = refresh(); r.status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	rt = r.json(t)["refresh_token"].(string)
	wantEvents("refresh after a group change",
		`{"event":"reassert","groups_added":["readers","writers"],"groups_removed":["release"],"idp":"demo","kind":"idp","outcome":"ok","principal":"ada_demo-example","subject":"ada@demo.example"}`)
	// The provider grant is gone: the refresh is refused, with its reason.
	g, _, err := e.st.IdPGrant(t.Context(), "ada_demo-example", "demo")
	if err != nil || g.RefreshToken == "" {
		t.Fatalf("ada's provider grant: %v %v", g, err)
	}
	if _, err := e.st.DeleteIdPGrant(t.Context(), "ada_demo-example", "demo", 0); err != nil {
		t.Fatal(err)
	}
	if r = refresh(); r.status != http.StatusBadRequest || r.json(t)["error"] != "invalid_grant" {
		t.Fatalf("refresh without a provider grant: %d %s", r.status, r.body)
	}
	wantEvents("refused refresh",
		`{"event":"reassert","idp":"demo","kind":"idp","outcome":"refused","principal":"ada_demo-example","reason":"no_idp_grant"}`)

	// No code, token or secret reached the audit log.
	all := buf.String()
	for _, secret := range []string{at, rt, g.RefreshToken, idpCode, "gw-secret", "eyJ"} {
		if strings.Contains(all, secret) {
			t.Fatalf("the audit log holds %q:\n%s", secret, all)
		}
	}
}
