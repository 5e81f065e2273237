package oidcdemo_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/internal/oidcdemo"
)

const redirect = "http://127.0.0.1:1/cb"

// signIn runs the code flow with PKCE and nonce as user and returns the
// verified ID token's claims.
func signIn(t *testing.T, p *oidcdemo.Provider, user, password string) (map[string]any, int) {
	t.Helper()
	_, claims, status := signInToken(t, p, user, password)
	return claims, status
}

// signInToken is signIn that also returns the raw ID token.
func signInToken(t *testing.T, p *oidcdemo.Provider, user, password string) (string, map[string]any, int) {
	t.Helper()
	ctx := context.Background()
	prov, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	cfg := &oauth2.Config{ClientID: "rp", ClientSecret: "rp-secret", Endpoint: prov.Endpoint(), RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "email", "profile", "groups", "offline_access"}}
	verifier := oauth2.GenerateVerifier()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(cfg.AuthCodeURL("st", oidc.Nonce("n0nce"), oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	login, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
	resp, err = c.Get(login.String())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="id" value="([^"]*)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("login page: %s", page)
	}
	resp, err = c.PostForm(p.Issuer()+"/login", url.Values{"id": {string(m[1])}, "username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", nil, resp.StatusCode
	}
	for range 5 {
		loc, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if strings.HasPrefix(loc.String(), redirect) {
			if loc.Query().Get("state") != "st" {
				t.Fatalf("state: %s", loc)
			}
			tok, err := cfg.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			if tok.RefreshToken == "" {
				t.Error("no refresh token with offline_access")
			}
			raw := tok.Extra("id_token").(string)
			idt, err := prov.Verifier(&oidc.Config{ClientID: "rp"}).Verify(ctx, raw)
			if err != nil || idt.Nonce != "n0nce" {
				t.Fatalf("ID token: %v nonce %q", err, idt.Nonce)
			}
			var claims map[string]any
			_ = idt.Claims(&claims)
			return raw, claims, http.StatusOK
		}
		if resp, err = c.Get(loc.String()); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	t.Fatal("no redirect to the client")
	return "", nil, 0
}

func TestProvider_SignInGroups(t *testing.T) {
	p, err := oidcdemo.Start(oidcdemo.Config{Clients: []oidcdemo.Client{{ID: "rp", Secret: "rp-secret", RedirectURIs: []string{redirect}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	groups := func(c map[string]any) []string {
		var out []string
		for _, g := range c["groups"].([]any) {
			out = append(out, g.(string))
		}
		return out
	}
	c, _ := signIn(t, p, oidcdemo.Ada, oidcdemo.Password)
	if c["email"] != oidcdemo.Ada || c["email_verified"] != true || !slices.Equal(groups(c), []string{"release"}) {
		t.Fatalf("ada's claims: %v", c)
	}
	c, _ = signIn(t, p, oidcdemo.Bob, oidcdemo.Password)
	if c["email"] != oidcdemo.Bob || !slices.Equal(groups(c), []string{"readers"}) {
		t.Fatalf("bob's claims: %v", c)
	}
	p.SetGroups(oidcdemo.Bob, []string{"readers", "release"})
	if c, _ = signIn(t, p, oidcdemo.Bob, oidcdemo.Password); !slices.Equal(groups(c), []string{"readers", "release"}) {
		t.Fatalf("bob after SetGroups: %v", c)
	}
	if _, status := signIn(t, p, oidcdemo.Ada, "wrong"); status != http.StatusForbidden {
		t.Fatalf("wrong password: %d", status)
	}
}
