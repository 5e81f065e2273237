package oidcdemo_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpgate/mcpgate/internal/oidcdemo"
)

const (
	gatewayIssuer = "https://gw.example"
	route         = "https://gw.example/notes/mcp"
)

// exchange posts a token exchange to the provider's token endpoint with
// basic client credentials and returns the status, headers and JSON body.
func exchange(t *testing.T, p *oidcdemo.Provider, id, secret string, form url.Values) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Issuer()+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	return resp.StatusCode, resp.Header, m
}

func jagForm(subject string) url.Values {
	return url.Values{
		"grant_type": {oidcdemo.GrantTokenExchange}, "requested_token_type": {oidcdemo.TokenTypeIDJAG},
		"subject_token": {subject}, "subject_token_type": {oidcdemo.TokenTypeIDToken},
		"audience": {gatewayIssuer}, "resource": {route}, "scope": {"notes.read"},
	}
}

// TestProvider_IDJAG: an ID token the provider issued to client rp is
// exchanged by rp for an ID-JAG signed with the key the provider's JWKS
// publishes, with typ oauth-id-jag+jwt and the claims the gateway checks.
func TestProvider_IDJAG(t *testing.T) {
	p, err := oidcdemo.Start(oidcdemo.Config{Clients: []oidcdemo.Client{
		{ID: "rp", Secret: "rp-secret", RedirectURIs: []string{redirect}},
		{ID: "other", Secret: "other-secret", RedirectURIs: []string{redirect}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	idToken, _, status := signInToken(t, p, oidcdemo.Ada, oidcdemo.Password)
	if status != http.StatusOK {
		t.Fatalf("sign in: %d", status)
	}

	before := time.Now().Add(-time.Second)
	status, hdr, body := exchange(t, p, "rp", "rp-secret", jagForm(idToken))
	if status != http.StatusOK || hdr.Get("Cache-Control") != "no-store" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("exchange: %d %v %v", status, hdr, body)
	}
	if body["issued_token_type"] != oidcdemo.TokenTypeIDJAG || body["token_type"] != "N_A" || body["expires_in"] != float64(300) ||
		body["scope"] != "notes.read" || body["refresh_token"] != nil {
		t.Fatalf("exchange body: %v", body)
	}

	// The JWKS the gateway discovers verifies it.
	resp, err := http.Get(p.Issuer() + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	var jwks jose.JSONWebKeySet
	err = json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(body["access_token"].(string), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Headers[0]
	if h.ExtraHeaders[jose.HeaderType] != oidcdemo.TypIDJAG || h.Algorithm != string(jose.RS256) {
		t.Fatalf("header: %+v", h)
	}
	keys := jwks.Key(h.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q not in the JWKS %v", h.KeyID, jwks)
	}
	var claims map[string]any
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("signature: %v", err)
	}
	iat, exp := int64(claims["iat"].(float64)), int64(claims["exp"].(float64))
	if iat < before.Unix() || iat > time.Now().Unix() || exp-iat != 300 {
		t.Errorf("iat %d exp %d", iat, exp)
	}
	if jti, _ := claims["jti"].(string); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(jti) {
		t.Errorf("jti %q", jti)
	}
	delete(claims, "iat")
	delete(claims, "exp")
	delete(claims, "jti")
	want := map[string]any{
		"iss": p.Issuer(), "sub": "demo-ada", "aud": gatewayIssuer, "client_id": "rp", "resource": route,
		"scope": "notes.read", "email": oidcdemo.Ada, "email_verified": true, "groups": []any{"release"},
	}
	if a, b := mustJSON(t, claims), mustJSON(t, want); a != b {
		t.Errorf("claims\n got %s\nwant %s", a, b)
	}
	// Each exchange is a new assertion (the gateway uses the jti once);
	// the client may authenticate with client_secret_post too.
	form := jagForm(idToken)
	form.Set("client_id", "rp")
	form.Set("client_secret", "rp-secret")
	resp, err = http.PostForm(p.Issuer()+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	var again map[string]any
	err = json.NewDecoder(resp.Body).Decode(&again)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || again["issued_token_type"] != oidcdemo.TokenTypeIDJAG || again["access_token"] == body["access_token"] {
		t.Errorf("client_secret_post exchange: %d %v %v", resp.StatusCode, again, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestProvider_IDJAGRefused: every refused exchange is a fixed 4xx.
func TestProvider_IDJAGRefused(t *testing.T) {
	p, err := oidcdemo.Start(oidcdemo.Config{Clients: []oidcdemo.Client{
		{ID: "rp", Secret: "rp-secret", RedirectURIs: []string{redirect}},
		{ID: "other", Secret: "other-secret", RedirectURIs: []string{redirect}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	idToken, _, status := signInToken(t, p, oidcdemo.Ada, oidcdemo.Password)
	if status != http.StatusOK {
		t.Fatalf("sign in: %d", status)
	}
	key, err := p.SigningKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	forge := func(claims map[string]any) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: key.SignatureAlgorithm(), Key: &jose.JSONWebKey{Key: key.Key(), KeyID: key.ID()}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	now := time.Now()
	expired := forge(map[string]any{"iss": p.Issuer(), "sub": "demo-ada", "aud": "rp", "iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})
	stranger := forge(map[string]any{"iss": p.Issuer(), "sub": "demo-eve", "aud": "rp", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	foreign := forge(map[string]any{"iss": "https://idp.example", "sub": "demo-ada", "aud": "rp", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	with := func(k, v string) url.Values {
		f := jagForm(idToken)
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	twoResources := jagForm(idToken)
	twoResources.Add("resource", "https://gw.example/echo/mcp")
	for _, tc := range []struct {
		name, id, secret string
		form             url.Values
		status           int
		code, desc       string
	}{
		{"bad subject token", "rp", "rp-secret", jagForm("not-a-token"), 400, "invalid_grant", "subject_token is not a valid ID token of this provider"},
		{"forged issuer", "rp", "rp-secret", jagForm(foreign), 400, "invalid_grant", "subject_token is not a valid ID token of this provider"},
		{"tampered signature", "rp", "rp-secret", jagForm(idToken[:len(idToken)-4] + "AAAA"), 400, "invalid_grant", "subject_token is not a valid ID token of this provider"},
		{"expired subject token", "rp", "rp-secret", jagForm(expired), 400, "invalid_grant", "subject_token has expired"},
		{"unknown person", "rp", "rp-secret", jagForm(stranger), 400, "invalid_grant", "the subject is not a person of this provider"},
		{"wrong client", "other", "other-secret", jagForm(idToken), 400, "invalid_grant", "subject_token was issued to another client"},
		{"wrong secret", "rp", "nope", jagForm(idToken), 401, "invalid_client", "client authentication failed"},
		{"unknown client", "eve", "x", jagForm(idToken), 401, "invalid_client", "client authentication failed"},
		{"subject type", "rp", "rp-secret", with("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"), 400, "invalid_request", "subject_token_type must be urn:ietf:params:oauth:token-type:id_token"},
		{"actor token", "rp", "rp-secret", with("actor_token", idToken), 400, "invalid_request", "actor_token is not supported"},
		{"no audience", "rp", "rp-secret", with("audience", ""), 400, "invalid_target", "audience must be one absolute URL: the authorization server's issuer"},
		{"relative audience", "rp", "rp-secret", with("audience", "gw"), 400, "invalid_target", "audience must be one absolute URL: the authorization server's issuer"},
		{"no resource", "rp", "rp-secret", with("resource", ""), 400, "invalid_target", "resource must be one absolute URL"},
		{"two resources", "rp", "rp-secret", twoResources, 400, "invalid_target", "resource must be one absolute URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := exchange(t, p, tc.id, tc.secret, tc.form)
			if status != tc.status || body["error"] != tc.code || body["error_description"] != tc.desc || len(body) != 2 || hdr.Get("Cache-Control") != "no-store" {
				t.Errorf("%d %v %v", status, hdr, body)
			}
			if tc.status == 401 && hdr.Get("WWW-Authenticate") != `Basic realm="oidcdemo"` {
				t.Errorf("WWW-Authenticate %q", hdr.Get("WWW-Authenticate"))
			}
		})
	}
}
