package stacktest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/stacktest"
)

func do(t *testing.T, method, url string, h http.Header, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		if k == "Host" {
			req.Host = vs[0]
			continue
		}
		req.Header[k] = vs
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestGatewaySurface checks, on the real stack, the public surface around
// the MCP routes: metadata documents served through the control plane,
// CORS, Host and Origin checks, the trailing-slash route and unknown routes.
func TestGatewaySurface(t *testing.T) {
	s := stacktest.Start(t)
	alice := s.AddUser("alice", stacktest.EchoRoute, stacktest.NotesRoute)
	jsonRPC := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}}
	with := func(h http.Header, kv ...string) http.Header {
		c := h.Clone()
		for i := 0; i < len(kv); i += 2 {
			c.Set(kv[i], kv[i+1])
		}
		return c
	}
	challenge := `Bearer resource_metadata="` + s.PRMURL(stacktest.NotesRoute) + `", scope="notes.read notes.write"`

	t.Run("protected resource metadata", func(t *testing.T) {
		resp, body := do(t, http.MethodGet, s.PRMURL(stacktest.NotesRoute), nil, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
			ScopesSupported      []string `json:"scopes_supported"`
			BearerMethods        []string `json:"bearer_methods_supported"`
		}
		if err := json.Unmarshal([]byte(body), &prm); err != nil {
			t.Fatal(err)
		}
		if prm.Resource != s.RouteURL(stacktest.NotesRoute) || !slices.Equal(prm.AuthorizationServers, []string{s.PublicURL}) ||
			prm.ScopesSupported != nil || !slices.Equal(prm.BearerMethods, []string{"header"}) {
			t.Errorf("metadata %+v", prm)
		}
		// Unknown routes get the same document (issue 8 item 16).
		if resp, body := do(t, http.MethodGet, s.PRMURL("nosuch"), nil, ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, s.RouteURL("nosuch")) {
			t.Errorf("unknown route metadata: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("authorization server metadata", func(t *testing.T) {
		for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"} {
			resp, body := do(t, http.MethodGet, s.PublicURL+path, nil, "")
			var md map[string]any
			if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &md) != nil {
				t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
			}
			if md["issuer"] != s.PublicURL || md["registration_endpoint"] != s.PublicURL+"/register" ||
				md["authorization_response_iss_parameter_supported"] != true {
				t.Errorf("%s: %v", path, md)
			}
		}
	})

	for _, tc := range []struct {
		name         string
		method, path string
		header       http.Header
		body         string
		status       int
		www          string
	}{
		{"trailing slash is the route, not a redirect", http.MethodPost, "/notes/mcp/", with(jsonRPC, "X-MCPGate-API-Key", alice), initializeBody, http.StatusUnauthorized, challenge},
		{"unknown route", http.MethodPost, "/nosuch/mcp", with(jsonRPC, "X-MCPGate-API-Key", alice), initializeBody, http.StatusNotFound, ""},
		{"foreign Origin", http.MethodPost, "/echo/mcp", with(jsonRPC, "X-MCPGate-API-Key", alice, "Origin", "https://evil.example"), initializeBody, http.StatusForbidden, ""},
		{"foreign Host", http.MethodPost, "/echo/mcp", with(jsonRPC, "X-MCPGate-API-Key", alice, "Host", "rebind.example:80"), initializeBody, http.StatusForbidden, ""},
		{"own Origin", http.MethodPost, "/echo/mcp", with(jsonRPC, "X-MCPGate-API-Key", alice, "Origin", s.PublicURL), initializeBody, http.StatusOK, ""},
		{"preflight without credentials", http.MethodOptions, "/notes/mcp", http.Header{"Origin": {s.PublicURL}, "Access-Control-Request-Method": {"POST"}}, "", http.StatusNoContent, ""},
		// Just over the 4 MiB limit, so the gateway has read almost all of
		// it when it answers.
		{"body too large", http.MethodPost, "/echo/mcp", with(jsonRPC, "X-MCPGate-API-Key", alice), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("x", 4<<20) + `"}}}`, http.StatusRequestEntityTooLarge, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.method, s.PublicURL+tc.path, tc.header, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.www {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.www)
			}
			if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
				t.Errorf("Access-Control-Expose-Headers %q", resp.Header.Get("Access-Control-Expose-Headers"))
			}
		})
	}
	if n := len(s.Notes.Requests()); n != 0 {
		t.Errorf("the notes upstream saw %d requests", n)
	}
}
