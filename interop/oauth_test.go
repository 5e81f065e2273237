package interop

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/stacktest"
)

type oauthOutput struct {
	OK     bool     `json:"ok"`
	Error  string   `json:"error"`
	Steps  []string `json:"steps"`
	Result struct {
		User string `json:"user"`
	} `json:"result"`
	IsError            bool   `json:"isError"`
	AccessToken        string `json:"accessToken"`
	Iss                string `json:"iss"`
	ConsentNamedClient bool   `json:"consentNamedClient"`
}

// TestTypeScriptSDK_OAuth: the TypeScript SDK client's own OAuth flow
// through the data plane — 401 → discovery → DCR → authorize → sign-in →
// consent → upstream consent → token → tools/call with the person's
// upstream token; a second person gets their own; revoking a connection
// revokes that person's gateway token (401 invalid_token).
func TestTypeScriptSDK_OAuth(t *testing.T) {
	node(t) // skip (or fail) before starting a gateway
	s := stacktest.Start(t)
	people := []struct{ name, user string }{{"carol", "carol@provider"}, {"dave", "dave@provider"}}
	tokens := map[string]string{}
	for _, p := range people {
		key := s.AddUser(p.name, stacktest.NotesRoute)
		var out oauthOutput
		runScript(t, "oauth.mjs", map[string]string{
			"MCPGATE_URL": s.RouteURL(stacktest.NotesRoute), "MCPGATE_KEY": key, "MCPGATE_USER": p.user,
		}, &out)
		if !out.OK {
			t.Fatalf("%s: %s", p.name, out.Error)
		}
		if want := []string{"401", "register", "authorize", "token", "connected"}; !slices.Equal(sortedSteps(out.Steps), sortedSteps(want)) || out.Steps[len(out.Steps)-1] != "connected" {
			t.Errorf("%s: steps %v, want %v", p.name, out.Steps, want)
		}
		if out.IsError || out.Result.User != p.user {
			t.Errorf("%s: whoami %+v (isError %v), want %s", p.name, out.Result, out.IsError, p.user)
		}
		if out.Iss != s.PublicURL || !out.ConsentNamedClient {
			t.Errorf("%s: iss %q (want %q), consent named the client: %v", p.name, out.Iss, s.PublicURL, out.ConsentNamedClient)
		}
		t.Logf("%s: steps %v, whoami %q, iss %s", p.name, out.Steps, out.Result.User, out.Iss)
		tokens[p.name] = out.AccessToken
		for _, r := range s.Notes.Requests() {
			if bad := stacktest.AdmissionHeaders(r.Header, key, out.AccessToken, s.DataPlaneToken); len(bad) > 0 {
				t.Errorf("%s %s reached the upstream with %q", r.Method, r.RPCMethod, bad)
			}
		}
	}
	if tokens["carol"] == "" || tokens["carol"] == tokens["dave"] {
		t.Fatalf("gateway tokens %v", tokens)
	}

	s.RevokeConnection("carol", stacktest.NotesRoute)
	// Revoking the connection revoked carol's gateway tokens for the route
	// too (issue 8 item 6): the token itself is refused.
	want := `Bearer resource_metadata="` + s.PRMURL(stacktest.NotesRoute) + `", ` +
		`error="invalid_token", error_description="The credential is unknown revoked or expired."`
	for _, p := range people {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.RouteURL(stacktest.NotesRoute),
			strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`))
		req.Header.Set("Authorization", "Bearer "+tokens[p.name])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch p.name {
		case "carol":
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
				t.Errorf("carol after revocation: %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
			}
		default:
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s after carol's revocation: %d, want 200", p.name, resp.StatusCode)
			}
		}
	}
}

func sortedSteps(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
