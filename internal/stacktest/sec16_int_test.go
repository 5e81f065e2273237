package stacktest_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// Issue 8 item 16b, on the real stack: a caller without a usable credential
// gets the same answer on every route, configured or not (401 with the
// requested route's metadata URL and no scopes; the same metadata document),
// and a principal gets 404 alike for a missing route and for one it is not
// granted, so no one learns a route they may not use.
func TestSec16RouteEnumeration(t *testing.T) {
	s := stacktest.Start(t)
	alice := s.AddUser("alice", stacktest.EchoRoute) // not granted notes
	const unknown = "nosuch"
	jsonRPC := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}}
	with := func(kv ...string) http.Header {
		h := jsonRPC.Clone()
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	// answer is what a caller can observe, with the route's name replaced.
	type answer struct {
		status                  int
		www, ctype, cache, body string
	}
	observe := func(t *testing.T, method, route string, h http.Header, body string) answer {
		t.Helper()
		resp, b := do(t, method, s.RouteURL(route), h, body)
		norm := func(v string) string { return strings.ReplaceAll(v, "/"+route+"/", "/ROUTE/") }
		return answer{resp.StatusCode, norm(resp.Header.Get("WWW-Authenticate")), resp.Header.Get("Content-Type"),
			resp.Header.Get("Cache-Control"), norm(b)}
	}

	anonymous := []struct {
		name   string
		header http.Header
		www    string // after the metadata URL
	}{
		{"no credential", with(), ``},
		{"unknown key", with("X-MCPGate-API-Key", "mcpg_"+strings.Repeat("x", 40)), `, error="invalid_token", error_description="The credential is unknown revoked or expired."`},
		{"unknown token", with("Authorization", "Bearer mcpgt_"+strings.Repeat("y", 43)), `, error="invalid_token", error_description="The credential is unknown revoked or expired."`},
		{"malformed", with("Authorization", "Bearer"), `, error="invalid_token", error_description="The Authorization header is not a usable Bearer credential."`},
	}
	for _, a := range anonymous {
		for _, m := range []struct{ method, body string }{{http.MethodPost, initializeBody}, {http.MethodGet, ""}, {http.MethodDelete, ""}} {
			t.Run(a.name+" "+m.method, func(t *testing.T) {
				h := a.header.Clone()
				if m.method == http.MethodDelete {
					h.Set("Mcp-Session-Id", "x")
				}
				want := observe(t, m.method, unknown, h, m.body)
				if want.status != http.StatusUnauthorized {
					t.Fatalf("unknown route: %+v, want 401", want)
				}
				wantWWW := `Bearer resource_metadata="` + s.PublicURL + `/.well-known/oauth-protected-resource/ROUTE/mcp"` + a.www
				if want.www != wantWWW {
					t.Errorf("WWW-Authenticate %q, want %q", want.www, wantWWW)
				}
				for _, route := range []string{stacktest.EchoRoute, stacktest.NotesRoute} {
					if got := observe(t, m.method, route, h, m.body); got != want {
						t.Errorf("%s answers\n %+v\nunknown route answers\n %+v", route, got, want)
					}
				}
			})
		}
	}

	t.Run("metadata document", func(t *testing.T) {
		get := func(route string) (int, string) {
			resp, body := do(t, http.MethodGet, s.PRMURL(route), nil, "")
			return resp.StatusCode, strings.ReplaceAll(body, "/"+route+"/", "/ROUTE/")
		}
		status, want := get(unknown)
		if status != http.StatusOK || want != `{"resource":"`+s.PublicURL+`/ROUTE/mcp","authorization_servers":["`+s.PublicURL+`"],"bearer_methods_supported":["header"]}` {
			t.Fatalf("unknown route: %d %s", status, want)
		}
		for _, route := range []string{stacktest.EchoRoute, stacktest.NotesRoute} {
			if st, got := get(route); st != status || got != want {
				t.Errorf("%s: %d %s, want %d %s", route, st, got, status, want)
			}
		}
	})

	t.Run("principal learns only its routes", func(t *testing.T) {
		h := with("X-MCPGate-API-Key", alice)
		missing := observe(t, http.MethodPost, unknown, h, initializeBody)
		if missing.status != http.StatusNotFound || missing.www != "" {
			t.Fatalf("unknown route: %+v", missing)
		}
		if got := observe(t, http.MethodPost, stacktest.NotesRoute, h, initializeBody); got != missing {
			t.Errorf("route not granted answers\n %+v\nmissing route answers\n %+v", got, missing)
		}
		if got := observe(t, http.MethodPost, stacktest.EchoRoute, h, initializeBody); got.status != http.StatusOK {
			t.Errorf("granted route: %+v", got)
		}
	})
	if n := len(s.Notes.Requests()); n != 0 {
		t.Errorf("the notes upstream saw %d requests", n)
	}
}
