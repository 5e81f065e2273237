// Package oauth is the gateway's OAuth 2.1 authorization server for MCP
// clients: metadata (RFC 8414), dynamic registration (RFC 7591) and client ID
// metadata documents, /authorize with sign-in and per-client consent, the
// brokered upstream sign-in (/oauth/callback), /token with audience-bound
// opaque tokens and rotating refresh tokens, /revoke (RFC 7009) and the
// connections page.
//
// Data planes relay these paths to the control plane with the public base URL
// of the data plane in X-MCPGate-Public-URL and the client's own
// Authorization header moved to X-MCPGate-Client-Authorization (api/wire). Every URL the
// server emits, the issuer included, is built from that public URL. All state
// lives in etcd through the store, short-lived records on leases.
//
// Policies:
//   - Redirect URIs: https anywhere, http only on loopback (127.0.0.1, [::1],
//     localhost; any port at /authorize, everything else compared exactly),
//     RFC 8252 private-use schemes named by a reversed domain name
//     (com.example.app:/cb); never fragments, user info, control or format
//     characters, javascript:, data:, file: or any other scheme.
//   - Client metadata (registrations and metadata documents): no control,
//     format (bidi, zero-width), private-use or separator characters in any
//     text field, displayed or stored; every value has a size cap.
//   - Resources: every request names one existing route, <public>/<server>/mcp
//     (scheme and host compared case-insensitively, default port, one
//     trailing slash and any query dropped); the token's audience is that
//     URL at the public base the authorization ran on (a data plane with
//     another public base refuses it). A missing resource is
//     invalid_target: there are no all-routes tokens.
//   - Scopes: a subset of the server's scopes; none requested means all.
//     Before sign-in /authorize checks only the form of resource and scope:
//     whether the route exists and which scopes it offers is told only to a
//     signed-in principal that may use it; one that may not gets
//     access_denied for a missing route and a forbidden one alike.
//   - Sign-in: a gateway API key pasted into a form creates a random session
//     id kept on an etcd lease (12 h), valid while the key is. The cookie is
//     __Host-mcpgate_session (Secure, HttpOnly, SameSite=Lax, Path=/) on https
//     public URLs and mcpgate_session without Secure on http ones, because
//     browsers drop __Host- cookies that are not Secure.
//   - Consent is remembered per (principal, client, route, exact redirect
//     URI) and covers the scopes approved; a new client, another redirect URI
//     (another loopback port included) or wider scopes ask again.
//   - The upstream leg (oauth2 authorization_code routes without a usable
//     grant) uses the server's own client id and secret, PKCE S256 and a
//     single-use state on a 10-minute lease bound to the browser session. The
//     optional RFC 8707 resource parameter is not sent upstream.
//   - Anonymous requests cannot grow etcd: /authorize stores nothing (the
//     pending request travels sealed with the vault keyring through the
//     sign-in and consent pages, see request.go), every authorization
//     parameter and the whole query are capped (fixed 400 page), and a
//     failed sign-in writes nothing.
//   - /authorize, /signin and /register are rate limited per client
//     address (X-MCPGate-Client-Address from the authenticated relay; IPv6
//     per /64) by golang.org/x/time/rate token buckets in a bounded map,
//     per control-plane replica (N replicas allow N times the rate);
//     over the limit: 429 with Retry-After.
//   - Registrations carry at most MaxRegisterBytes, a replica accepts
//     RegisterPerHour of them from all addresses together, and a new one
//     lives an hour until a signed-in person first approves the client;
//     then it expires after 30 idle days (a lease renewed at most daily on
//     use). Client ID metadata documents are fetched at /authorize only,
//     from public addresses (checked on the dialed address), without
//     redirects, within 5 s and 64 KiB.
//   - Tokens: opaque, stored only as hashes; codes live 5 minutes, access
//     tokens 1 hour, refresh tokens rotate and their family ends 30 days after
//     the authorization. Replaying a code or a rotated refresh token revokes
//     the family. A token request that fails a check proving possession of a
//     code (client, redirect_uri, PKCE verifier, resource) leaves the code
//     usable and counts against it; the fifth such failure deletes it.
//     Every token records its source, the API key the person
//     signed in with and the principal's uid: Authorize and the refresh
//     grant refuse it once the key is revoked or expired or the principal
//     deleted (re-created under the same name it has another uid), and the
//     admin API deletes the families derived from a revoked key, a deleted
//     principal or a revoked connection (RevokeTokens), as does
//     disconnecting on the connections page.
//   - Enterprise-managed authorization (idjag.go): /token accepts
//     grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer with an ID-JAG
//     (typ oauth-id-jag+jwt) from a configured identity provider with
//     trust_id_jag, for a client that registered the grant. Signature by the
//     provider's JWKS (OpenID discovery; cached an hour, refetched on an
//     unknown kid at most every 30 s, the cached keys kept while the
//     provider is down), iss exactly, aud = the gateway's issuer, resource =
//     one route, client_id = the authenticated client, exp/iat/nbf with 30 s
//     of skew and at most an hour of lifetime, jti single use (a record on a
//     lease until the assertion expires). The subject maps to a principal
//     by principal_claim (email or sub), allowed_domains and
//     create_principals (PrincipalName). The answer is an access token for
//     the route whose source is the provider (no API key; usable while the
//     provider is configured) and no refresh token: each new token needs a
//     new ID-JAG, so the IdP's current policy applies. No browser, no
//     consent; each grant is audited. Every refusal is a 400 with a fixed
//     description; an unreachable provider is a 503.
package oauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// Kinds of the records the server keeps (through the store's typed
// accessors, e.g. store.OAuthCodes).
const (
	KindClient   = store.KindOAuthClient
	KindRequest  = store.KindOAuthRequest // markers of answered (used) sealed requests
	KindCode     = store.KindOAuthCode
	KindUsedCode = store.KindOAuthUsedCode
	KindFamily   = store.KindOAuthFamily
	KindRefresh  = store.KindOAuthRefresh
	KindConsent  = store.KindOAuthConsent
	KindState    = store.KindOAuthState
	KindSession  = store.KindOAuthSession
)

// Token prefixes.
const (
	AccessTokenPrefix  = "mcpgt_"
	RefreshTokenPrefix = "mcpgr_"
	CodePrefix         = "mcpgc_"
)

// Defaults of Config's durations and limits.
const (
	DefaultAccessTokenTTL  = time.Hour
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
	DefaultCodeTTL         = 5 * time.Minute
	DefaultRequestTTL      = 10 * time.Minute
	DefaultStateTTL        = 10 * time.Minute
	DefaultClientIdleTTL   = 30 * 24 * time.Hour
	// DefaultUnconfirmedClientTTL is how long a registration lives until a
	// signed-in person first approves the client.
	DefaultUnconfirmedClientTTL = time.Hour
	// DefaultRegisterPerHour bounds registrations per replica, whatever
	// their addresses.
	DefaultRegisterPerHour = 200
	DefaultSessionTTL      = 12 * time.Hour
	DefaultConsentTTL      = 90 * 24 * time.Hour
	DefaultRegisterPerMin  = 20
	DefaultAuthorizePerMin = 60
	DefaultSigninPerMin    = 30
	DefaultLookupPerMin    = 300
	// MaxBodyBytes bounds every request body.
	MaxBodyBytes = 64 << 10
	// MaxRegisterBytes bounds a registration request body, and so the
	// record an anonymous registration stores (at most this plus about
	// 200 bytes of ids, secret hash and times).
	MaxRegisterBytes = 8 << 10
)

// Grants saves and revokes upstream grants in the vault; grants.Grants
// implements it. Store replaces any previous grant; Revoke reports whether
// the upstream accepted the revocation and fails with an error matching
// store.ErrNotFound when there is no grant. When Config.Grants is nil the
// server saves grants with grants.Save (the one way a grant is saved) and
// revokes them only in the store.
type Grants interface {
	Store(ctx context.Context, principal, server string, tok *oauth2.Token, scopes []string, clientID string) error
	Revoke(ctx context.Context, principal, server string) (bool, error)
}

// Config configures a Server. Zero values take the defaults.
type Config struct {
	// Grants stores upstream grants; see Grants.
	Grants Grants
	// HTTPClient calls upstream token endpoints; a client with a 15 s
	// timeout when nil.
	HTTPClient *http.Client
	// CIMDClient fetches client ID metadata documents. When nil a client
	// that refuses loopback, private, link-local and other non-global
	// addresses (checked on the resolved address it dials), redirects, and
	// answers over 64 KiB or 5 s. Tests replace it; production must not.
	CIMDClient *http.Client
	// RegisterPerMinute is how many registrations one client address may
	// make per minute (a token bucket per control-plane replica).
	RegisterPerMinute int
	// RegisterPerHour is how many registrations one replica accepts per
	// hour from all addresses together (a token bucket of that size).
	// With UnconfirmedClientTTL it bounds what anonymous registrations
	// can keep in etcd: about 2×RegisterPerHour×UnconfirmedClientTTL/1h
	// records of at most MaxRegisterBytes, per replica.
	RegisterPerHour int
	// UnconfirmedClientTTL is the lease of a new registration; the first
	// approval by a signed-in person extends it to ClientIdleTTL.
	UnconfirmedClientTTL time.Duration
	// AuthorizePerMinute and SigninPerMinute are how many /authorize and
	// /signin requests (GET or POST) one client address may make per
	// minute (a token bucket per control-plane replica and address; IPv6
	// addresses count per /64).
	AuthorizePerMinute int
	SigninPerMinute    int
	// LookupPerMinute is how many requests one client address may make
	// per minute to the other endpoints that look a presented secret up in
	// etcd (/token, /revoke, /consent, /oauth/callback, /connections...).
	LookupPerMinute int
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	CodeTTL         time.Duration
	ClientIdleTTL   time.Duration
	SessionTTL      time.Duration
	ConsentTTL      time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Audit records the ID-JAG grants (who, which identity provider,
	// which grant type); nil discards.
	Audit *audit.Logger
	// IdPClient calls identity providers: discovery documents, key sets
	// (ID-JAG and ID-token signatures), token and userinfo endpoints;
	// HTTPClient when nil.
	IdPClient *http.Client
	// KeySigninOff hides the API-key form of the sign-in page and refuses
	// key sign-ins (signin.api_key: false): people sign in only with a
	// configured identity provider.
	KeySigninOff bool
}

// Server is the authorization server. It is an http.Handler for the paths
// listed in the package documentation, without any relay prefix.
type Server struct {
	st          *store.Store
	cfg         Config
	log         *slog.Logger
	grants      Grants
	limit       *addrLimiter  // /register
	regLimit    *rate.Limiter // /register, all addresses
	lookupLimit *addrLimiter  // /token, /revoke, /consent, /oauth/callback, /connections
	authzLimit  *addrLimiter  // /authorize
	signinLimit *addrLimiter  // /signin, /oauth/idp/start, /oauth/idp/callback
	idps        providers     // discovered identity providers
	mux         *http.ServeMux
	keys        *keySets // identity providers' JWKS, by issuer
}

// New returns a Server over st.
func New(st *store.Store, cfg Config, log *slog.Logger) *Server {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.AccessTokenTTL, DefaultAccessTokenTTL)
	def(&cfg.RefreshTokenTTL, DefaultRefreshTokenTTL)
	def(&cfg.CodeTTL, DefaultCodeTTL)
	def(&cfg.ClientIdleTTL, DefaultClientIdleTTL)
	def(&cfg.UnconfirmedClientTTL, DefaultUnconfirmedClientTTL)
	def(&cfg.SessionTTL, DefaultSessionTTL)
	def(&cfg.ConsentTTL, DefaultConsentTTL)
	if cfg.RegisterPerMinute <= 0 {
		cfg.RegisterPerMinute = DefaultRegisterPerMin
	}
	if cfg.RegisterPerHour <= 0 {
		cfg.RegisterPerHour = DefaultRegisterPerHour
	}
	if cfg.AuthorizePerMinute <= 0 {
		cfg.AuthorizePerMinute = DefaultAuthorizePerMin
	}
	if cfg.SigninPerMinute <= 0 {
		cfg.SigninPerMinute = DefaultSigninPerMin
	}
	if cfg.LookupPerMinute <= 0 {
		cfg.LookupPerMinute = DefaultLookupPerMin
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if cfg.IdPClient == nil {
		cfg.IdPClient = cfg.HTTPClient
	}
	if cfg.CIMDClient == nil {
		cfg.CIMDClient = safeClient()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{st: st, cfg: cfg, log: log, grants: cfg.Grants}
	if s.grants == nil {
		s.grants = storeGrants{st: st, now: cfg.Now}
	}
	s.keys = newKeySets(cfg.IdPClient, cfg.Now, s.jwksURI)
	s.limit = newAddrLimiter(cfg.RegisterPerMinute, cfg.Now)
	s.regLimit = rate.NewLimiter(rate.Limit(float64(cfg.RegisterPerHour)/3600), cfg.RegisterPerHour)
	s.authzLimit = newAddrLimiter(cfg.AuthorizePerMinute, cfg.Now)
	s.signinLimit = newAddrLimiter(cfg.SigninPerMinute, cfg.Now)
	s.lookupLimit = newAddrLimiter(cfg.LookupPerMinute, cfg.Now)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", s.metadata)
	mux.HandleFunc("/.well-known/openid-configuration", s.metadata)
	mux.HandleFunc("/register", s.register)
	mux.HandleFunc("/authorize", s.authorize)
	mux.HandleFunc("/signin", s.signin)
	mux.HandleFunc("/consent", s.consent)
	mux.HandleFunc("/oauth/callback", s.callback)
	mux.HandleFunc(idpStartPath, s.idpStart)
	mux.HandleFunc(IdPCallbackPath, s.idpCallback)
	mux.HandleFunc("/token", s.token)
	mux.HandleFunc("/revoke", s.revoke)
	mux.HandleFunc("/connections", s.connections)
	mux.HandleFunc("/connections/connect", s.connect)
	mux.HandleFunc("/connections/disconnect", s.disconnect)
	s.mux = mux
	return s
}

type ctxKey struct{}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pub, err := wire.PublicBase(r.Header.Get(wire.HeaderPublicURL))
	if err != nil {
		http.Error(w, "missing or invalid public URL", http.StatusBadRequest)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, pub))
	if corsPaths[r.URL.Path] {
		// Browser-based MCP clients (MCP Inspector) call these from their
		// own origin. They use no cookies, so any origin may call them.
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Expose-Headers", "WWW-Authenticate, Retry-After")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, MCP-Protocol-Version")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	if s.limitedSecretLookup(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// corsPaths are the endpoints a client calls from script.
var corsPaths = map[string]bool{
	"/.well-known/oauth-authorization-server": true,
	"/.well-known/openid-configuration":       true,
	"/register":                               true,
	"/token":                                  true,
	"/revoke":                                 true,
}

// issuer is the public base URL of the relaying data plane
// (wire.PublicBase of its wire.HeaderPublicURL).
func issuer(r *http.Request) string { return r.Context().Value(ctxKey{}).(string) }

func (s *Server) now() time.Time { return s.cfg.Now() }

// random returns n random bytes, base64url without padding.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// secretID is the name a secret's record is stored under: the KeyID of its
// SHA-256, so etcd never holds the secret itself.
func secretID(secret string) string { return store.KeyID(store.HashKey(secret)) }

// isNotFound reports a missing record.
func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
