// Package idjagtest is a test identity provider that issues Identity
// Assertion JWT Authorization Grants (ID-JAGs): a real signer (go-jose,
// RS256) behind an httptest server serving OpenID discovery and the JWKS.
// The demo IdP (internal/oidcdemo) issues real ID-JAGs; this one signs any
// claims asked for (wrong typ, foreign key, rotated key, odd lifetimes), for
// the gateway's refusal tests.
package idjagtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Typ is the typ header of an ID-JAG.
const Typ = "oauth-id-jag+jwt"

// IdP is a running test identity provider.
type IdP struct {
	// Issuer is its issuer URL (the server's base URL).
	Issuer string

	mu      sync.Mutex
	key     *rsa.PrivateKey
	kid     string
	gen     int
	fetches atomic.Int64
}

// Start runs an IdP until tb ends.
func Start(tb testing.TB) *IdP {
	tb.Helper()
	p := &IdP{}
	p.Rotate()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.Issuer, "jwks_uri": p.Issuer + "/jwks",
			"token_endpoint": p.Issuer + "/token", "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: string(jose.RS256), Use: "sig"}}}
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	})
	mux.HandleFunc("POST /token", p.exchange)
	ts := httptest.NewServer(mux)
	tb.Cleanup(ts.Close)
	p.Issuer = ts.URL
	return p
}

// Token exchange constants (RFC 8693, ID-JAG).
const (
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeIDJAG     = "urn:ietf:params:oauth:token-type:id-jag"
	TokenTypeIDToken   = "urn:ietf:params:oauth:token-type:id_token"
)

// SubjectToken is the identity token the test IdP accepts as the subject of
// an exchange for the person sub with email (a real IdP would have issued
// an ID token at sign-in; this one trusts the form).
func SubjectToken(sub, email string) string { return "person:" + sub + ":" + email }

// exchange is the IdP's token endpoint issuing ID-JAGs by RFC 8693 token
// exchange: subject_token (SubjectToken) with type id_token,
// requested_token_type id-jag, audience (the gateway's issuer), resource
// and the requesting client's client_id.
func (p *IdP) exchange(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f := r.PostForm
	fail := func(code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	if f.Get("grant_type") != GrantTokenExchange || f.Get("requested_token_type") != TokenTypeIDJAG || f.Get("subject_token_type") != TokenTypeIDToken {
		fail("unsupported_grant_type")
		return
	}
	var sub, email string
	if parts := strings.SplitN(f.Get("subject_token"), ":", 3); len(parts) == 3 && parts[0] == "person" {
		sub, email = parts[1], parts[2]
	} else {
		fail("invalid_grant")
		return
	}
	jag := p.Issue(Grant{Subject: sub, Email: email, Audience: f.Get("audience"), ClientID: f.Get("client_id"), Resource: f.Get("resource"), Scope: f.Get("scope")})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": jag, "issued_token_type": TokenTypeIDJAG, "token_type": "N_A", "expires_in": 300,
	})
}

// Rotate replaces the signing key with a new one under a new key id; the
// JWKS then lists only the new key.
func (p *IdP) Rotate() {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	p.key, p.kid = k, fmt.Sprintf("key-%d", p.gen)
}

// KeyID is the current signing key's id.
func (p *IdP) KeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kid
}

// JWKSFetches counts the key-set requests served.
func (p *IdP) JWKSFetches() int64 { return p.fetches.Load() }

// Grant describes an ID-JAG to issue.
type Grant struct {
	Subject, Email, Audience, ClientID, Resource, Scope, JTI string
	// IssuedAt defaults to now; Lifetime to 5 minutes.
	IssuedAt time.Time
	Lifetime time.Duration
	// Extra claims, set last (a nil value deletes a claim).
	Extra map[string]any
}

// Claims are the claims of g as issued by p.
func (p *IdP) Claims(g Grant) map[string]any {
	iat := g.IssuedAt
	if iat.IsZero() {
		iat = time.Now()
	}
	life := g.Lifetime
	if life == 0 {
		life = 5 * time.Minute
	}
	jti := g.JTI
	if jti == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		jti = fmt.Sprintf("%x", b)
	}
	c := map[string]any{
		"iss": p.Issuer, "sub": g.Subject, "aud": g.Audience, "client_id": g.ClientID,
		"resource": g.Resource, "jti": jti, "iat": iat.Unix(), "exp": iat.Add(life).Unix(),
	}
	if g.Email != "" {
		c["email"] = g.Email
	}
	if g.Scope != "" {
		c["scope"] = g.Scope
	}
	for k, v := range g.Extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// Issue signs g with the current key as an ID-JAG.
func (p *IdP) Issue(g Grant) string {
	p.mu.Lock()
	key, kid := p.key, p.kid
	p.mu.Unlock()
	return Sign(key, kid, Typ, p.Claims(g))
}

// Sign signs claims with key (RS256) under kid and typ: for assertions a
// real IdP would not issue (wrong typ, foreign key).
func Sign(key *rsa.PrivateKey, kid, typ string, claims map[string]any) string {
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		panic(err)
	}
	b, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	obj, err := sig.Sign(b)
	if err != nil {
		panic(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		panic(err)
	}
	return s
}

// SigningKey returns the current private key and its id (to forge
// assertions with a known kid in tests).
func (p *IdP) SigningKey() (*rsa.PrivateKey, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.key, p.kid
}
