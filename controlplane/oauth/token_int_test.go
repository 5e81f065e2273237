package oauth_test

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/controlplane/oauth"
)

// tokenEnv has alice signed in with consent for client C on the plain
// GitHub route and the Gmail route (upstream grant stored), so that codes
// come straight from /authorize.
type tokenEnv struct {
	*env
	b      *browser
	c, c2  string
	secret string // confidential client's secret
	conf   string // confidential client's id
}

func newTokenEnv(t *testing.T) *tokenEnv {
	e := newEnv(t, nil)
	te := &tokenEnv{env: e, b: newBrowser(t)}
	te.c = e.publicClient("Client C")
	te.c2 = e.publicClient("Client C2")
	m := e.registerClient(`{"redirect_uris":["` + loopbackCB + `"],"token_endpoint_auth_method":"client_secret_basic","grant_types":["authorization_code","refresh_token"],"client_name":"Confidential"}`)
	te.conf, te.secret = m["client_id"].(string), m["client_secret"].(string)
	e.signIn(te.b, aliceKey)
	for _, id := range []string{te.c, te.c2, te.conf} {
		e.code(te.b, e.authQuery(id), "alice")
	}
	return te
}

// newCode returns a fresh code for client id on the Gmail route.
func (te *tokenEnv) newCode(id string) string {
	te.t.Helper()
	r := te.b.get(te.authorizeURL(te.authQuery(id)))
	if r.status != http.StatusFound {
		te.t.Fatalf("%d %s", r.status, r.body)
	}
	return r.location(te.t).Query().Get("code")
}

func wantTokenHeaders(t *testing.T, r response) {
	t.Helper()
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Errorf("Cache-Control %q Pragma %q", r.header.Get("Cache-Control"), r.header.Get("Pragma"))
	}
}

// Checklist F 54-65.
func TestToken(t *testing.T) {
	te := newTokenEnv(t)
	e := te.env

	var access, refresh string
	t.Run("54 code exchange", func(t *testing.T) {
		r := e.exchange(te.c, te.newCode(te.c), nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%d %s", r.status, r.body)
		}
		wantTokenHeaders(t, r)
		m := r.json(t)
		access, _ = m["access_token"].(string)
		refresh, _ = m["refresh_token"].(string)
		if !strings.HasPrefix(access, oauth.AccessTokenPrefix) || !strings.HasPrefix(refresh, oauth.RefreshTokenPrefix) ||
			m["token_type"] != "Bearer" || m["scope"] != "notes.read" {
			t.Fatalf("body %s", r.body)
		}
		if n, _ := m["expires_in"].(float64); n < 3500 || n > 3600 {
			t.Errorf("expires_in %v", m["expires_in"])
		}
		rec, ok := e.accessRecord(access)
		if !ok || rec.GetRoute() != "Gmail" || rec.GetPrincipal() != "alice" || rec.GetClientId() != te.c ||
			strings.Join(rec.GetScopes(), " ") != "notes.read" || rec.GetFamily() == "" {
			t.Fatalf("record %v", rec)
		}
		if time.Until(rec.GetExpireTime().AsTime()) > time.Hour {
			t.Errorf("expiry %v", rec.GetExpireTime().AsTime())
		}
		// The cache that Authorize reads sees the token (read your writes).
		if _, ok := e.st.AccessToken(sha(access)); !ok {
			// The cache follows etcd asynchronously; wait for its revision.
			_, rev, err := e.st.Get(t.Context(), "accesstokens", idOf(access))
			if err != nil {
				t.Fatal(err)
			}
			e.wait(rev)
			if _, ok := e.st.AccessToken(sha(access)); !ok {
				t.Errorf("cache lacks the token")
			}
		}
	})

	t.Run("56 replay revokes", func(t *testing.T) {
		code := te.newCode(te.c)
		r := e.exchange(te.c, code, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		at, rt := r.json(t)["access_token"].(string), r.json(t)["refresh_token"].(string)
		again := e.exchange(te.c, code, nil)
		wantJSONError(t, again, http.StatusBadRequest, "invalid_grant")
		wantTokenHeaders(t, again)
		if _, ok := e.accessRecord(at); ok {
			t.Errorf("the access token issued from the replayed code is still stored")
		}
		r = call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {te.c}}.Encode())
		wantJSONError(t, r, http.StatusBadRequest, "invalid_grant")
	})

	badCodes := []struct {
		name, code string
		extra      func(code string) url.Values
		client     string
	}{
		{"55 wrong verifier", "invalid_grant", func(string) url.Values {
			return url.Values{"code_verifier": {"wrong-verifier-wrong-verifier-wrong-verifier-0000"}}
		}, ""},
		{"57 other redirect_uri", "invalid_grant", func(string) url.Values { return url.Values{"redirect_uri": {"http://127.0.0.1:5000/cb"}} }, ""},
		{"58 other client", "invalid_grant", func(string) url.Values { return nil }, "c2"},
		{"60 other resource", "invalid_target", func(string) url.Values { return url.Values{"resource": {e.pub + "/GitHub/mcp"}} }, ""},
		{"60 unknown resource", "invalid_target", func(string) url.Values { return url.Values{"resource": {e.pub + "/Nope/mcp"}} }, ""},
		{"61 no verifier", "invalid_request", func(string) url.Values { return url.Values{"code_verifier": nil} }, ""},
		{"no code", "invalid_request", func(string) url.Values { return url.Values{"code": nil} }, ""},
		{"no redirect_uri", "invalid_request", func(string) url.Values { return url.Values{"redirect_uri": nil} }, ""},
		{"unknown code", "invalid_grant", func(string) url.Values { return url.Values{"code": {"mcpgc_nope"}} }, ""},
		{"repeated parameter", "invalid_request", func(c string) url.Values { return url.Values{"code": {c, c}} }, ""},
	}
	for _, tc := range badCodes {
		t.Run(tc.name, func(t *testing.T) {
			code := te.newCode(te.c)
			client := te.c
			if tc.client == "c2" {
				client = te.c2
			}
			r := e.exchange(client, code, tc.extra(code))
			wantJSONError(t, r, http.StatusBadRequest, tc.code)
			wantTokenHeaders(t, r)
		})
	}

	t.Run("59 expired code", func(t *testing.T) {
		code := te.newCode(te.c)
		e.clock.Advance(oauth.DefaultCodeTTL + time.Second)
		defer e.clock.Advance(-oauth.DefaultCodeTTL - time.Second)
		wantJSONError(t, e.exchange(te.c, code, nil), http.StatusBadRequest, "invalid_grant")
	})

	t.Run("62 refresh rotation and reuse", func(t *testing.T) {
		r1 := refresh
		r := call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r1}, "client_id": {te.c}}.Encode())
		if r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		wantTokenHeaders(t, r)
		m := r.json(t)
		a2, r2 := m["access_token"].(string), m["refresh_token"].(string)
		if r2 == "" || r2 == r1 || a2 == access || m["token_type"] != "Bearer" || m["scope"] != "notes.read" {
			t.Fatalf("body %s", r.body)
		}
		if rec, ok := e.accessRecord(a2); !ok || rec.GetRoute() != "Gmail" {
			t.Fatalf("new access token record %v", rec)
		}
		// Reusing r1 fails and revokes the family: r2 and both access tokens.
		r = call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r1}, "client_id": {te.c}}.Encode())
		wantJSONError(t, r, http.StatusBadRequest, "invalid_grant")
		r = call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r2}, "client_id": {te.c}}.Encode())
		wantJSONError(t, r, http.StatusBadRequest, "invalid_grant")
		for _, at := range []string{access, a2} {
			if _, ok := e.accessRecord(at); ok {
				t.Errorf("access token of the revoked family still stored")
			}
		}
	})

	t.Run("63 refresh by another client", func(t *testing.T) {
		m := e.exchange(te.c, te.newCode(te.c), nil).json(t)
		rt := m["refresh_token"].(string)
		r := call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {te.c2}}.Encode())
		wantJSONError(t, r, http.StatusBadRequest, "invalid_grant")
		// Narrowing scope works; widening is invalid_scope; resource must match.
		for _, tc := range []struct {
			extra url.Values
			code  string
		}{
			{url.Values{"scope": {"notes.write"}}, "invalid_scope"},
			{url.Values{"resource": {e.pub + "/GitHub/mcp"}}, "invalid_target"},
		} {
			f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {te.c}}
			for k, v := range tc.extra {
				f[k] = v
			}
			wantJSONError(t, call(t, http.MethodPost, e.pub+"/token", formHeader(), f.Encode()), http.StatusBadRequest, tc.code)
		}
	})

	t.Run("64 confidential client", func(t *testing.T) {
		basic := func(id, secret string) string {
			return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
		}
		form := func(code string) url.Values {
			return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {loopbackCB}}
		}
		h := formHeader()
		h.Set("Authorization", basic(te.conf, "wrong"))
		r := call(t, http.MethodPost, e.pub+"/token", h, form(te.newCode(te.conf)).Encode())
		wantJSONError(t, r, http.StatusUnauthorized, "invalid_client")
		wantTokenHeaders(t, r)
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
		}
		// Wrong secret in the body: 401 without a Basic challenge.
		f := form(te.newCode(te.conf))
		f.Set("client_id", te.conf)
		f.Set("client_secret", "wrong")
		r = call(t, http.MethodPost, e.pub+"/token", formHeader(), f.Encode())
		wantJSONError(t, r, http.StatusUnauthorized, "invalid_client")
		if r.header.Get("WWW-Authenticate") != "" {
			t.Errorf("WWW-Authenticate without Basic: %q", r.header.Get("WWW-Authenticate"))
		}
		// No secret at all.
		f.Del("client_secret")
		wantJSONError(t, call(t, http.MethodPost, e.pub+"/token", formHeader(), f.Encode()), http.StatusUnauthorized, "invalid_client")
		// The right secret, by Basic and by post.
		h.Set("Authorization", basic(te.conf, te.secret))
		if r := call(t, http.MethodPost, e.pub+"/token", h, form(te.newCode(te.conf)).Encode()); r.status != http.StatusOK {
			t.Errorf("basic: %d %s", r.status, r.body)
		}
		f = form(te.newCode(te.conf))
		f.Set("client_id", te.conf)
		f.Set("client_secret", te.secret)
		if r := call(t, http.MethodPost, e.pub+"/token", formHeader(), f.Encode()); r.status != http.StatusOK {
			t.Errorf("post: %d %s", r.status, r.body)
		}
		// An unknown client.
		h.Set("Authorization", basic("nobody", "x"))
		r = call(t, http.MethodPost, e.pub+"/token", h, form("mcpgc_x").Encode())
		wantJSONError(t, r, http.StatusUnauthorized, "invalid_client")
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
		}
	})

	t.Run("65 grant types and methods", func(t *testing.T) {
		for _, tc := range []struct {
			body, code string
		}{
			{url.Values{"grant_type": {"password"}, "username": {"a"}, "password": {"b"}, "client_id": {te.c}}.Encode(), "unsupported_grant_type"},
			{url.Values{"grant_type": {"client_credentials"}, "client_id": {te.c}}.Encode(), "unsupported_grant_type"},
			{url.Values{"client_id": {te.c}}.Encode(), "invalid_request"},
			{url.Values{"grant_type": {"refresh_token"}, "client_id": {te.c}}.Encode(), "invalid_request"},
		} {
			r := call(t, http.MethodPost, e.pub+"/token", formHeader(), tc.body)
			wantJSONError(t, r, http.StatusBadRequest, tc.code)
			wantTokenHeaders(t, r)
		}
		r := call(t, http.MethodGet, e.pub+"/token", nil, "")
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
			t.Errorf("GET: %d %v", r.status, r.header)
		}
		r = call(t, http.MethodPost, e.pub+"/token", jsonHeader(), `{"grant_type":"authorization_code"}`)
		wantJSONError(t, r, http.StatusBadRequest, "invalid_request")
		r = call(t, http.MethodPost, e.pub+"/token", formHeader(), "grant_type=authorization_code&code="+strings.Repeat("a", 70<<10))
		wantJSONError(t, r, http.StatusRequestEntityTooLarge, "invalid_request")
	})

	t.Run("unauthorized_client", func(t *testing.T) {
		m := e.registerClient(`{"redirect_uris":["` + loopbackCB + `"],"token_endpoint_auth_method":"none","client_name":"No refresh"}`)
		id := m["client_id"].(string)
		loc := e.code(te.b, e.authQuery(id), "alice")
		r := e.exchange(id, loc.Query().Get("code"), nil)
		if r.status != http.StatusOK || r.json(t)["refresh_token"] != nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		r = call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"mcpgr_x"}, "client_id": {id}}.Encode())
		wantJSONError(t, r, http.StatusBadRequest, "unauthorized_client")
	})
}

// RFC 7009 and checklist 11's precondition.
func TestRevoke(t *testing.T) {
	te := newTokenEnv(t)
	e := te.env
	issue := func() (string, string) {
		m := e.exchange(te.c, te.newCode(te.c), nil).json(t)
		return m["access_token"].(string), m["refresh_token"].(string)
	}
	revoke := func(client, token string) response {
		return call(t, http.MethodPost, e.pub+"/revoke", formHeader(), url.Values{"token": {token}, "client_id": {client}}.Encode())
	}
	t.Run("unknown token", func(t *testing.T) {
		r := revoke(te.c, "mcpgt_unknown")
		if r.status != http.StatusOK || r.body != "" {
			t.Errorf("%d %q", r.status, r.body)
		}
		wantTokenHeaders(t, r)
	})
	t.Run("access token", func(t *testing.T) {
		at, rt := issue()
		if r := revoke(te.c2, at); r.status != http.StatusOK {
			t.Fatalf("%d", r.status)
		}
		if _, ok := e.accessRecord(at); !ok {
			t.Fatalf("another client revoked the token")
		}
		if r := revoke(te.c, at); r.status != http.StatusOK {
			t.Fatalf("%d", r.status)
		}
		if _, ok := e.accessRecord(at); ok {
			t.Errorf("access token still stored")
		}
		// The refresh token still works.
		r := call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {te.c}}.Encode())
		if r.status != http.StatusOK {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("refresh token revokes the family", func(t *testing.T) {
		at, rt := issue()
		if r := revoke(te.c, rt); r.status != http.StatusOK {
			t.Fatalf("%d", r.status)
		}
		if _, ok := e.accessRecord(at); ok {
			t.Errorf("access token still stored")
		}
		r := call(t, http.MethodPost, e.pub+"/token", formHeader(), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {te.c}}.Encode())
		wantJSONError(t, r, http.StatusBadRequest, "invalid_grant")
	})
	t.Run("errors", func(t *testing.T) {
		wantJSONError(t, call(t, http.MethodPost, e.pub+"/revoke", formHeader(), url.Values{"client_id": {te.c}}.Encode()), http.StatusBadRequest, "invalid_request")
		wantJSONError(t, revoke("nobody", "x"), http.StatusUnauthorized, "invalid_client")
		if r := call(t, http.MethodGet, e.pub+"/revoke", nil, ""); r.status != http.StatusMethodNotAllowed {
			t.Errorf("GET: %d", r.status)
		}
	})
}
