package oauth_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/grants"
)

// TestConnectKeepsUpgradedScopes: reconnecting a server from the
// connections page asks the upstream for the server's scopes plus the
// tool upstream scopes the person's grant was upgraded to (nothing more:
// not the tool scopes the grant never had), in that order.
func TestConnectKeepsUpgradedScopes(t *testing.T) {
	e := newEnv(t, nil)
	gm, ok := e.st.Server("Gmail")
	if !ok {
		t.Fatal("no Gmail")
	}
	def := proto.CloneOf(gm.Def) // never modify the cache's copy
	def.Scopes = []string{"notes.read"}
	def.ToolScopes = []*configv1.ToolScopes{
		{Tool: "add_*", Scopes: []string{"gmail.add"}, UpstreamScopes: []string{"notes.write"}},
		{Tool: "del_*", Scopes: []string{"gmail.del"}, UpstreamScopes: []string{"notes.delete"}},
	}
	rev, err := e.st.PutServer(t.Context(), def, &storev1.ServerSecrets{ClientSecret: "gw-secret"}, def.GetRevision())
	if err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	b := newBrowser(t)
	e.signIn(b, aliceKey)
	csrf := formValue(t, b.get(e.pub+"/connections").body, "csrf")
	scopeOf := func() string {
		t.Helper()
		r := b.post(e.pub+"/connections/connect", url.Values{"server": {"Gmail"}, "csrf": {csrf}})
		if r.status != http.StatusFound {
			t.Fatalf("connect: %d %s", r.status, r.body)
		}
		return r.location(t).Query().Get("scope")
	}
	if got := scopeOf(); got != "notes.read" {
		t.Errorf("first connect asks for %q, want notes.read", got)
	}
	tok := &oauth2.Token{AccessToken: "up-access", RefreshToken: "up-refresh", Expiry: time.Now().Add(time.Hour)}
	rev, err = grants.Save(t.Context(), e.st, time.Now(), "alice", "Gmail", tok, []string{"notes.read", "notes.write", "other"}, "gw-client")
	if err != nil {
		t.Fatal(err)
	}
	e.wait(rev)
	if got := scopeOf(); got != "notes.read notes.write" {
		t.Errorf("reconnect asks for %q, want \"notes.read notes.write\"", got)
	}
}
