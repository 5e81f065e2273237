package oauth

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// redirectSeeds are redirect URIs for both fuzz targets' seeds.
var redirectSeeds = []string{
	"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb", "http://[::1]:9999/cb", "http://localhost:8787/callback",
	"https://app.example/cb", "https://vscode.dev/redirect", "com.example.app:/oauth2redirect/provider",
	"com.example.app://callback", "cursor://anysphere.cursor-mcp/oauth/callback", "myapp:/cb",
	"javascript:alert(1)", "data:text/html,x", "file:///etc/passwd", "http://attacker.example/cb",
	"https://user:pw@app.example/cb", "http://127.0.0.1/cb#frag", "https://app.example/cb\u202e",
	"http://127.0.0.1/c\u200bb", "com..app:/cb", "/cb", "", "HTTP://LOCALHOST:1/cb", "http://127.0.0.1:0/cb?x=1",
}

// FuzzRedirectURI checks the redirect URI policy: it never panics, every
// accepted URI obeys the rules, and a request URI that matches an accepted
// registered one is itself acceptable.
func FuzzRedirectURI(f *testing.F) {
	for i, s := range redirectSeeds {
		f.Add(s, redirectSeeds[(i+1)%len(redirectSeeds)])
	}
	f.Add("http://127.0.0.1/cb", "http://127.0.0.1:6000/cb")
	f.Add("http://[::1]/cb", "http://[::1]:1/cb")
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if err := checkRedirectURI(registered); err == nil {
			wantRedirectAllowed(t, registered)
		} else if _, ok := err.(*regError); !ok {
			t.Fatalf("error of type %T", err)
		}
		if checkRedirectURI(registered) == nil && redirectMatches(registered, requested) {
			if err := checkRedirectURI(requested); err != nil {
				t.Fatalf("%q matches registered %q but is not acceptable: %v", requested, registered, err)
			}
		}
	})
}

// wantRedirectAllowed fails unless raw obeys the redirect URI rules.
func wantRedirectAllowed(t *testing.T, raw string) {
	t.Helper()
	if len(raw) > maxURILen || strings.Contains(raw, "#") || unsafeText(raw) {
		t.Fatalf("accepted %q: too long, fragment or unsafe text", raw)
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Fragment != "" {
		t.Fatalf("accepted %q: unparsable, user info or fragment", raw)
	}
	switch scheme := strings.ToLower(u.Scheme); {
	case scheme == "https":
		if u.Host == "" {
			t.Fatalf("accepted %q: https without host", raw)
		}
	case scheme == "http":
		if !isLoopbackHost(u.Hostname()) {
			t.Fatalf("accepted %q: http on a non-loopback host", raw)
		}
	case slices.Contains(knownClientSchemes, scheme): // a known client's own scheme
	default: // private-use: a reversed domain name
		if !strings.Contains(scheme, ".") || strings.Trim(scheme, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" ||
			strings.Contains(scheme, "..") || slices.Contains(forbiddenSchemes, scheme) {
			t.Fatalf("accepted %q: scheme %q", raw, scheme)
		}
	}
}

// FuzzClientMetadata checks registration request (dcr) and client ID
// metadata document parsing: it never panics, and anything accepted obeys
// the rules (redirect URIs, no unsafe text in any text field, size caps,
// supported methods and grant types).
func FuzzClientMetadata(f *testing.F) {
	for _, s := range []string{
		`{"redirect_uris":["http://127.0.0.1/","http://127.0.0.1:33418/","https://vscode.dev/redirect"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"],"response_types":["code"],"client_name":"Visual Studio Code","application_type":"native"}`,
		`{"redirect_uris":["com.cursor.app:/oauth/callback","https://www.cursor.com/agents/mcp/oauth/callback"],"token_endpoint_auth_method":"none","client_name":"Cursor","application_type":"web"}`,
		`{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_basic","client_name":"Web app","scope":"repo","logo_uri":"https://app.example/l.png","contacts":["a@app.example"]}`,
		`{"client_id":"https://client.example/meta.json","client_name":"Claude Code","redirect_uris":["http://localhost/callback"]}`,
		`{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"Good \u202eppA"}`,
		`{"redirect_uris":["http://127.0.0.1/cb"],"CLIENT_NAME":"x","client_name":"y","client_name":"z"}`,
		`{"redirect_uris":["myapp:/cb"]}`,
		`{"redirect_uris":null,"grant_types":["implicit"]}`,
		`[1,2]`, `null`, `{}`, "{\"client_name\":\"\xff\"}",
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, dcr bool) {
		md, err := parseClientMetadata(body, dcr)
		if err != nil {
			re, ok := err.(*regError)
			if !ok || (re.code != "invalid_client_metadata" && re.code != "invalid_redirect_uri") || re.desc == "" {
				t.Fatalf("error %#v", err)
			}
			return
		}
		if len(md.RedirectURIs) == 0 || len(md.RedirectURIs) > maxRedirectURIs {
			t.Fatalf("%d redirect URIs accepted", len(md.RedirectURIs))
		}
		for _, u := range md.RedirectURIs {
			wantRedirectAllowed(t, u)
		}
		if len(md.ClientName) > maxNameLen || len(md.ClientURI) > maxURILen || len(md.Scope) > maxScopeLen || len(md.ClientID) > maxURILen {
			t.Fatalf("oversized value accepted")
		}
		for _, v := range []string{md.ClientName, md.ClientURI, md.Scope, md.ClientID, md.ApplicationType, md.TokenEndpointAuthMethod} {
			if unsafeText(v) {
				t.Fatalf("unsafe text accepted: %q", v)
			}
		}
		switch md.TokenEndpointAuthMethod {
		case "none":
		case "client_secret_basic", "client_secret_post":
			if !dcr {
				t.Fatalf("a metadata document client with %s", md.TokenEndpointAuthMethod)
			}
		default:
			t.Fatalf("auth method %q", md.TokenEndpointAuthMethod)
		}
		if !slices.Contains(md.GrantTypes, "authorization_code") {
			t.Fatalf("grant types %q", md.GrantTypes)
		}
		for _, g := range md.GrantTypes {
			if g != "authorization_code" && g != "refresh_token" {
				t.Fatalf("grant types %q", md.GrantTypes)
			}
		}
		for _, r := range md.ResponseTypes {
			if r != "code" {
				t.Fatalf("response types %q", md.ResponseTypes)
			}
		}
		if md.ApplicationType != "" && md.ApplicationType != "web" && md.ApplicationType != "native" {
			t.Fatalf("application type %q", md.ApplicationType)
		}
		var disp displayMetadata
		if err := json.Unmarshal(body, &disp); err != nil {
			t.Fatalf("accepted, but the display fields do not decode: %v", err)
		}
		if len(disp.Contacts) > maxContacts {
			t.Fatalf("%d contacts accepted", len(disp.Contacts))
		}
		for _, v := range append([]string{disp.LogoURI, disp.TOSURI, disp.PolicyURI, disp.JWKSURI, disp.SoftwareID, disp.SoftwareVersion}, disp.Contacts...) {
			if unsafeText(v) || len(v) > maxURILen {
				t.Fatalf("display value accepted: %q", v)
			}
		}
		// What the registration response echoes re-encodes to valid JSON.
		if _, err := json.Marshal(md); err != nil {
			t.Fatal(err)
		}
	})
}
