// Package oauthdemo is a small but real OAuth 2.1 authorization server and an
// MCP server protected by it. `mcpgate dev` uses them for its demo route and
// the tests use them as the upstream a gateway signs people in to. Everything
// lives in memory; every method is safe for concurrent use.
package oauthdemo

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config is the provider's static setup.
type Config struct {
	// ClientID and ClientSecret are the gateway's static registration.
	ClientID, ClientSecret string
	// RedirectURIs are the allowed redirect URIs, compared exactly. Empty
	// allows any http URI on 127.0.0.1 or localhost.
	RedirectURIs []string
	// AccessTokenTTL is the lifetime of access tokens; 5 minutes when zero.
	AccessTokenTTL time.Duration
	// Scopes are the scopes the provider knows, e.g. notes.read notes.write.
	// A request without scope gets all of them.
	Scopes []string
}

// Stats counts what the token and revocation endpoints did.
type Stats struct {
	// AuthorizationCodeGrants and RefreshGrants count successful grants.
	AuthorizationCodeGrants int
	RefreshGrants           int
	// Revocations counts authenticated revocation requests.
	Revocations int
	// FailedTokenRequests counts every token request answered with an error.
	FailedTokenRequests int
}

const (
	codeTTL    = time.Minute
	requestTTL = 10 * time.Minute
	refreshTTL = 30 * 24 * time.Hour
)

// Provider is the demo authorization server.
type Provider struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	issuer     string
	requests   map[string]*authRequest // pending consent, by request id
	codes      map[string]*authCode
	access     map[string]*accessToken
	refresh    map[string]*refreshToken
	stats      Stats
	failStatus int
	noRotation bool
}

type authRequest struct {
	clientID, redirectURI, state, challenge, resource string
	scopes                                            []string
	expires                                           time.Time
}

type authCode struct {
	authRequest
	user    string
	used    bool
	issued  []string // tokens issued from this code, revoked on replay
	expires time.Time
}

type accessToken struct {
	user, clientID, resource string
	scopes                   []string
	expires                  time.Time
	refresh                  string // the refresh token it came with
}

type refreshToken struct {
	user, clientID, resource string
	scopes                   []string
	expires                  time.Time
}

// New returns a provider. Call SetIssuer once its URL is known.
func New(cfg Config, log *slog.Logger) *Provider {
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = 5 * time.Minute
	}
	return &Provider{
		cfg:      cfg,
		log:      log,
		requests: map[string]*authRequest{},
		codes:    map[string]*authCode{},
		access:   map[string]*accessToken{},
		refresh:  map[string]*refreshToken{},
	}
}

// SetIssuer sets the provider's base URL (its issuer identifier).
func (p *Provider) SetIssuer(issuer string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issuer = strings.TrimSuffix(issuer, "/")
}

// Issuer returns the issuer set by SetIssuer.
func (p *Provider) Issuer() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issuer
}

// Stats returns the counters so far.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// FailTokenEndpoint makes every following token request answer status with
// an OAuth error body (invalid_grant for 400, invalid_client for 401,
// server_error otherwise). 0 restores normal operation.
func (p *Provider) FailTokenEndpoint(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failStatus = status
}

// SetRefreshRotation chooses whether a refresh grant returns a new refresh
// token (the default) or none, in which case the client keeps the old one.
func (p *Provider) SetRefreshRotation(rotate bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noRotation = !rotate
}

// Verify reports whose the access token is and its scopes, if it is valid.
func (p *Provider) Verify(token string) (user string, scopes []string, ok bool) {
	at, ok := p.lookup(token)
	if !ok {
		return "", nil, false
	}
	return at.user, slices.Clone(at.scopes), true
}

func (p *Provider) lookup(token string) (accessToken, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.access[token]
	if !ok {
		return accessToken{}, false
	}
	if !time.Now().Before(at.expires) {
		delete(p.access, token)
		return accessToken{}, false
	}
	return *at, true
}

// Handler serves the metadata (RFC 8414, also at
// /.well-known/openid-configuration), /authorize, /token and /revoke
// (RFC 7009).
//
// GET /authorize renders a consent page whose form POSTs back to /authorize
// with the fields request (hidden, single use), user (the provider identity,
// "alice" by default) and action ("approve" or "deny"); the answer is a 303
// to the redirect URI with code, state and iss, or error=access_denied.
// Errors before the client and redirect URI are trusted render a 400 page
// and never redirect.
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", p.metadata)
	mux.HandleFunc("GET /.well-known/openid-configuration", p.metadata)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /authorize", p.consent)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("POST /revoke", p.revoke)
	return mux
}

func (p *Provider) metadata(w http.ResponseWriter, _ *http.Request) {
	iss := p.Issuer()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                         iss,
		"authorization_endpoint":                         iss + "/authorize",
		"token_endpoint":                                 iss + "/token",
		"revocation_endpoint":                            iss + "/revoke",
		"response_types_supported":                       []string{"code"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":     []string{"client_secret_basic", "client_secret_post"},
		"scopes_supported":                               p.cfg.Scopes,
		"authorization_response_iss_parameter_supported": true,
	})
}

// ---- /authorize

var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Demo provider: authorize</title></head>
<body>
<h1>Demo provider</h1>
<p>The application <b>{{.ClientID}}</b> asks for access to your notes
({{range $i, $s := .Scopes}}{{if $i}}, {{end}}{{$s}}{{end}}) and will be sent back to <b>{{.RedirectHost}}</b>.</p>
<form method="post" action="authorize">
<input type="hidden" name="request" value="{{.Request}}">
<label>Sign in as <input type="text" name="user" value="alice"></label>
<button type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
</body></html>
`))

var errorPage = template.Must(template.New("error").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Demo provider: error</title></head>
<body><h1>Authorization error</h1><p>{{.}}</p></body></html>
`))

func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	if clientID == "" || clientID != p.cfg.ClientID {
		p.errorPage(w, "unknown client_id")
		return
	}
	if !p.redirectAllowed(redirectURI) {
		p.errorPage(w, "redirect_uri is not registered for this client")
		return
	}
	// From here on errors go back to the client.
	state := q.Get("state")
	fail := func(code, desc string) { p.redirectError(w, r, redirectURI, state, code, desc) }
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "response_type must be code")
		return
	case q.Get("code_challenge") == "":
		fail("invalid_request", "code_challenge is required")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case state == "":
		fail("invalid_request", "state is required")
		return
	}
	scopes := p.cfg.Scopes
	if s := q.Get("scope"); s != "" {
		scopes = strings.Fields(s)
		for _, sc := range scopes {
			if !slices.Contains(p.cfg.Scopes, sc) {
				fail("invalid_scope", "unknown scope")
				return
			}
		}
	}
	id := randomString(18)
	p.mu.Lock()
	p.sweepLocked()
	p.requests[id] = &authRequest{
		clientID: clientID, redirectURI: redirectURI, state: state,
		challenge: q.Get("code_challenge"), resource: q.Get("resource"),
		scopes: slices.Clone(scopes), expires: time.Now().Add(requestTTL),
	}
	p.mu.Unlock()
	host := redirectURI
	if u, err := url.Parse(redirectURI); err == nil && u.Host != "" {
		host = u.Host
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "frame-ancestors 'none'")
	_ = consentPage.Execute(w, map[string]any{"ClientID": clientID, "Scopes": scopes, "RedirectHost": host, "Request": id})
}

func (p *Provider) consent(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		p.errorPage(w, "bad form")
		return
	}
	id := r.PostForm.Get("request")
	p.mu.Lock()
	req, ok := p.requests[id]
	delete(p.requests, id)
	p.mu.Unlock()
	if !ok || !time.Now().Before(req.expires) {
		p.errorPage(w, "unknown or expired authorization request")
		return
	}
	if r.PostForm.Get("action") != "approve" {
		p.redirectError(w, r, req.redirectURI, req.state, "access_denied", "the user denied the request")
		return
	}
	user := strings.TrimSpace(r.PostForm.Get("user"))
	if user == "" {
		user = "alice"
	}
	code := randomString(24)
	p.mu.Lock()
	p.codes[code] = &authCode{authRequest: *req, user: user, expires: time.Now().Add(codeTTL)}
	iss := p.issuer
	p.mu.Unlock()
	v := url.Values{"code": {code}, "state": {req.state}, "iss": {iss}}
	http.Redirect(w, r, withQuery(req.redirectURI, v), http.StatusSeeOther)
}

func (p *Provider) redirectAllowed(uri string) bool {
	if len(p.cfg.RedirectURIs) > 0 {
		return slices.Contains(p.cfg.RedirectURIs, uri)
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || u.Fragment != "" {
		return false
	}
	h := u.Hostname()
	return h == "127.0.0.1" || h == "localhost" || h == "::1"
}

func (p *Provider) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state, code, desc string) {
	v := url.Values{"error": {code}, "error_description": {desc}, "iss": {p.Issuer()}}
	if state != "" {
		v.Set("state", state)
	}
	http.Redirect(w, r, withQuery(redirectURI, v), http.StatusSeeOther)
}

func (p *Provider) errorPage(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	_ = errorPage.Execute(w, msg)
}

func withQuery(base string, v url.Values) string {
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + v.Encode()
}

// sweepLocked drops expired requests, codes and tokens.
func (p *Provider) sweepLocked() {
	now := time.Now()
	for k, v := range p.requests {
		if !now.Before(v.expires) {
			delete(p.requests, k)
		}
	}
	for k, v := range p.codes {
		if !now.Before(v.expires) {
			delete(p.codes, k)
		}
	}
	for k, v := range p.access {
		if !now.Before(v.expires) {
			delete(p.access, k)
		}
	}
}

// ---- /token

type tokenError struct {
	status     int
	code, desc string
	basic      bool
}

func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	resp, terr := p.tokenResponse(r)
	if terr != nil {
		p.mu.Lock()
		p.stats.FailedTokenRequests++
		p.mu.Unlock()
		if terr.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="demo"`)
		}
		p.log.InfoContext(r.Context(), "demo provider: token request refused", slog.String("error", terr.code), slog.Int("status", terr.status))
		writeJSON(w, terr.status, map[string]string{"error": terr.code, "error_description": terr.desc})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (p *Provider) tokenResponse(r *http.Request) (map[string]any, *tokenError) {
	p.mu.Lock()
	fail := p.failStatus
	p.mu.Unlock()
	if fail != 0 {
		code := "server_error"
		switch fail {
		case http.StatusBadRequest:
			code = "invalid_grant"
		case http.StatusUnauthorized:
			code = "invalid_client"
		}
		return nil, &tokenError{status: fail, code: code, desc: "failure injected by the test"}
	}
	if err := r.ParseForm(); err != nil {
		return nil, &tokenError{status: http.StatusBadRequest, code: "invalid_request", desc: "malformed body"}
	}
	if terr := p.authenticateClient(r); terr != nil {
		return nil, terr
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		return p.codeGrant(r.PostForm)
	case "refresh_token":
		return p.refreshGrant(r.PostForm)
	case "":
		return nil, &tokenError{status: http.StatusBadRequest, code: "invalid_request", desc: "grant_type is required"}
	default:
		return nil, &tokenError{status: http.StatusBadRequest, code: "unsupported_grant_type", desc: "unsupported grant_type"}
	}
}

// authenticateClient accepts client_secret_basic or client_secret_post.
func (p *Provider) authenticateClient(r *http.Request) *tokenError {
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: both are form-urlencoded inside Basic.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication failed", basic: true}
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != p.cfg.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(p.cfg.ClientSecret)) != 1 || secret == "" {
		return &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication failed", basic: basic}
	}
	return nil
}

func (p *Provider) codeGrant(f url.Values) (map[string]any, *tokenError) {
	invalid := &tokenError{status: http.StatusBadRequest, code: "invalid_grant", desc: "invalid authorization code"}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.codes[f.Get("code")]
	if !ok || !time.Now().Before(c.expires) {
		return nil, invalid
	}
	if c.used {
		// Replay: revoke everything the code issued (RFC 6749 section 4.1.2).
		for _, t := range c.issued {
			delete(p.access, t)
			delete(p.refresh, t)
		}
		delete(p.codes, f.Get("code"))
		return nil, invalid
	}
	c.used = true
	if c.clientID != p.cfg.ClientID || f.Get("redirect_uri") != c.redirectURI {
		return nil, invalid
	}
	sum := sha256.Sum256([]byte(f.Get("code_verifier")))
	if f.Get("code_verifier") == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		return nil, invalid
	}
	at, rt, resp := p.issueLocked(c.user, c.clientID, c.resource, c.scopes, true)
	c.issued = append(c.issued, at, rt)
	p.stats.AuthorizationCodeGrants++
	return resp, nil
}

func (p *Provider) refreshGrant(f url.Values) (map[string]any, *tokenError) {
	invalid := &tokenError{status: http.StatusBadRequest, code: "invalid_grant", desc: "invalid refresh token"}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := f.Get("refresh_token")
	rt, ok := p.refresh[old]
	if !ok || !time.Now().Before(rt.expires) || rt.clientID != p.cfg.ClientID {
		return nil, invalid
	}
	scopes := rt.scopes
	if s := f.Get("scope"); s != "" {
		scopes = strings.Fields(s)
		for _, sc := range scopes {
			if !slices.Contains(rt.scopes, sc) {
				return nil, &tokenError{status: http.StatusBadRequest, code: "invalid_scope", desc: "scope exceeds the grant"}
			}
		}
	}
	rotate := !p.noRotation
	at, _, resp := p.issueLocked(rt.user, rt.clientID, rt.resource, scopes, rotate)
	if rotate {
		delete(p.refresh, old)
	} else {
		p.access[at].refresh = old
	}
	p.stats.RefreshGrants++
	return resp, nil
}

// issueLocked mints an access token (and a refresh token when withRefresh).
func (p *Provider) issueLocked(user, clientID, resource string, scopes []string, withRefresh bool) (at, rt string, resp map[string]any) {
	at = "demo_at_" + randomString(24)
	now := time.Now()
	p.access[at] = &accessToken{user: user, clientID: clientID, resource: resource, scopes: slices.Clone(scopes), expires: now.Add(p.cfg.AccessTokenTTL)}
	resp = map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   int(p.cfg.AccessTokenTTL / time.Second),
		"scope":        strings.Join(scopes, " "),
	}
	if withRefresh {
		rt = "demo_rt_" + randomString(24)
		p.refresh[rt] = &refreshToken{user: user, clientID: clientID, resource: resource, scopes: slices.Clone(scopes), expires: now.Add(refreshTTL)}
		p.access[at].refresh = rt
		resp["refresh_token"] = rt
	}
	return at, rt, resp
}

// ---- /revoke

func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if terr := p.authenticateClient(r); terr != nil {
		if terr.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="demo"`)
		}
		writeJSON(w, terr.status, map[string]string{"error": terr.code, "error_description": terr.desc})
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "token is required"})
		return
	}
	p.mu.Lock()
	p.stats.Revocations++
	if _, ok := p.refresh[tok]; ok {
		delete(p.refresh, tok)
		// Revoking a refresh token revokes the access tokens it produced.
		for k, at := range p.access {
			if at.refresh == tok {
				delete(p.access, k)
			}
		}
	}
	delete(p.access, tok)
	p.mu.Unlock()
	// RFC 7009 section 2.2: 200 whether or not the token was known.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// ---- helpers

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
