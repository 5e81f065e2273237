package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// Sign-in with an identity provider (OpenID Connect relying party).
//
// The sign-in page links to /oauth/idp/start?idp=<name>, which discovers
// the provider (go-oidc, cached), and redirects the browser to it with the
// authorization code flow, PKCE S256, a nonce and a state. Nothing is
// stored before the person signed in: the state, nonce, PKCE verifier and
// the pending MCP authorization request travel sealed with the vault
// keyring in a 10-minute cookie bound to this browser (SameSite=Lax, so it
// comes back on the provider's top-level redirect). The callback
// (/oauth/idp/callback, relayed by data planes like every /oauth/ path)
// checks the state against the cookie, exchanges the code, verifies the ID
// token (signature through the provider's JWKS, which go-oidc refetches on
// an unknown key id, issuer, audience, expiry) and its nonce, and only then
// writes a single-use marker of the state (a replayed callback finds it),
// maps the principal claim to a principal, records the asserted groups and
// starts the same browser session as a key sign-in, whose source is the
// provider.

// IdPCallbackPath is where identity providers send people back.
const IdPCallbackPath = wire.IdPCallbackPath

const (
	idpStartPath  = "/oauth/idp/start"
	idpStateTTL   = 10 * time.Minute
	idpDiscoverOK = time.Hour // a discovered provider is reused this long
	// maxIdPCookie bounds the sealed sign-in cookie (browsers keep about 4 KiB).
	maxIdPCookie = 3900
)

var idpStateAD = []byte("mcpgate/idp-signin/v1")

// Fixed pages of the IdP sign-in.
const (
	msgIdPUnknown   = "This identity provider is not configured on this gateway."
	msgIdPDown      = "The identity provider is not reachable right now. Try again in a moment, or sign in another way."
	msgIdPExpired   = "This sign-in has expired or was already used. Start again from the sign-in page."
	msgIdPRefused   = "The identity provider did not sign you in."
	msgIdPInvalid   = "The identity provider's answer could not be verified. Start again from the sign-in page."
	msgIdPTokenOld  = "The identity provider's answer has expired. Start again from the sign-in page."
	msgIdPNoName    = "The identity provider did not tell the gateway who you are (no usable, verified principal claim)."
	msgIdPDomain    = "People from your email domain may not sign in to this gateway."
	msgIdPNotMember = "You are not registered with this gateway. Ask an administrator to add you."
	msgIdPTooLarge  = "This authorization request is too large to sign in with an identity provider."
)

func idpCookieName(pub string) string {
	if strings.HasPrefix(pub, "https://") {
		return "__Host-mcpgate_idp"
	}
	return "mcpgate_idp"
}

// providers caches discovered OpenID providers by issuer.
type providers struct {
	mu     sync.Mutex
	byIss  map[string]cachedProvider
	failed map[string]time.Time // issuer → last failed discovery
	flight singleflight.Group
}

// idpDownFor is how long the sign-in page says a provider whose discovery
// failed is not reachable.
const idpDownFor = time.Minute

// down reports whether discovering iss failed within idpDownFor.
func (s *Server) idpDown(iss string) bool {
	s.idps.mu.Lock()
	defer s.idps.mu.Unlock()
	at, ok := s.idps.failed[iss]
	return ok && s.now().Sub(at) < idpDownFor
}

type cachedProvider struct {
	p  *oidc.Provider
	at time.Time
}

// jwksURI is the jwks_uri of issuer from its cached discovery (provider):
// the ID-JAG key sets (keySets) use the discovery the sign-in uses.
func (s *Server) jwksURI(ctx context.Context, issuer string) (string, error) {
	p, err := s.provider(ctx, &configv1.IdentityProvider{Issuer: issuer})
	if err != nil {
		return "", err
	}
	var disc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&disc); err != nil {
		return "", err
	}
	return disc.JWKSURI, nil
}

// provider discovers (or returns the cached) provider of def.
func (s *Server) provider(ctx context.Context, def *configv1.IdentityProvider) (*oidc.Provider, error) {
	iss := def.GetIssuer()
	s.idps.mu.Lock()
	c, ok := s.idps.byIss[iss]
	s.idps.mu.Unlock()
	if ok && s.now().Sub(c.at) < idpDiscoverOK {
		return c.p, nil
	}
	v, err, _ := s.idps.flight.Do(iss, func() (any, error) {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		p, err := oidc.NewProvider(oidc.ClientContext(dctx, s.cfg.IdPClient), iss)
		if err != nil {
			s.idps.mu.Lock()
			if s.idps.failed == nil {
				s.idps.failed = map[string]time.Time{}
			}
			s.idps.failed[iss] = s.now()
			s.idps.mu.Unlock()
			return nil, err
		}
		s.idps.mu.Lock()
		delete(s.idps.failed, iss)
		if s.idps.byIss == nil {
			s.idps.byIss = map[string]cachedProvider{}
		}
		s.idps.byIss[iss] = cachedProvider{p: p, at: s.now()}
		s.idps.mu.Unlock()
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*oidc.Provider), nil
}

// idpOAuthConfig is the relying party's oauth2 configuration.
func idpOAuthConfig(pub string, idp *store.IdentityProvider, p *oidc.Provider) *oauth2.Config {
	scopes := []string{oidc.ScopeOpenID}
	req := idp.Def.GetScopes()
	if len(req) == 0 {
		req = []string{"email", "profile", "groups", "offline_access"}
	}
	for _, sc := range req {
		if sc != oidc.ScopeOpenID {
			scopes = append(scopes, sc)
		}
	}
	return &oauth2.Config{
		ClientID:     idp.Def.GetClientId(),
		ClientSecret: idp.ClientSecret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  pub + IdPCallbackPath,
		Scopes:       scopes,
	}
}

// idpStart handles GET /oauth/idp/start: it redirects the browser to the
// identity provider.
func (s *Server) idpStart(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	if s.limited(w, r, s.signinLimit) {
		return
	}
	q := r.URL.Query()
	reqV := q.Get("request")
	if len(reqV) > maxSealedRequest {
		s.requestGone(w, r)
		return
	}
	idp, ok := s.st.IdentityProvider(q.Get("idp"))
	if !ok {
		s.errorPage(w, r, http.StatusNotFound, "Unknown identity provider", msgIdPUnknown)
		return
	}
	p, err := s.provider(r.Context(), idp.Def)
	if err != nil {
		s.log.WarnContext(r.Context(), "identity provider discovery failed", "idp", idp.Def.GetName(), "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Identity provider unavailable", msgIdPDown)
		return
	}
	st := &storev1.IdPSignInState{
		Idp:          idp.Def.GetName(),
		State:        random(24),
		Nonce:        random(24),
		CodeVerifier: oauth2.GenerateVerifier(),
		Request:      reqV,
		Next:         nextPage(q.Get("next")),
		ExpireTime:   timestamppb.New(s.now().Add(idpStateTTL)),
	}
	b, err := proto.Marshal(st)
	if err != nil {
		s.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", "Signing in is temporarily unavailable. Try again in a moment.")
		return
	}
	ct, err := s.st.Seal(b, idpStateAD)
	if err != nil {
		s.log.ErrorContext(r.Context(), "seal idp sign-in", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", "Signing in is temporarily unavailable. Try again in a moment.")
		return
	}
	v := base64.RawURLEncoding.EncodeToString(ct)
	if len(v) > maxIdPCookie {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", msgIdPTooLarge)
		return
	}
	pub := issuer(r)
	http.SetCookie(w, &http.Cookie{
		Name:     idpCookieName(pub),
		Value:    v,
		Path:     "/",
		MaxAge:   int(idpStateTTL / time.Second),
		Secure:   strings.HasPrefix(pub, "https://"),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	cfg := idpOAuthConfig(pub, idp, p)
	to := cfg.AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.CodeVerifier))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to, http.StatusFound)
}

// openIdPState opens the sign-in cookie.
func (s *Server) openIdPState(r *http.Request) (*storev1.IdPSignInState, string, bool) {
	ck, err := r.Cookie(idpCookieName(issuer(r)))
	if err != nil || ck.Value == "" || len(ck.Value) > maxIdPCookie {
		return nil, "", false
	}
	ct, err := base64.RawURLEncoding.Strict().DecodeString(ck.Value)
	if err != nil {
		return nil, "", false
	}
	b, err := s.st.Open(ct, idpStateAD)
	if err != nil {
		return nil, "", false
	}
	var st storev1.IdPSignInState
	if proto.Unmarshal(b, &st) != nil || !s.now().Before(st.GetExpireTime().AsTime()) {
		return nil, "", false
	}
	return &st, ck.Value, true
}

// clearIdPCookie ends the sign-in cookie.
func clearIdPCookie(w http.ResponseWriter, pub string) {
	http.SetCookie(w, &http.Cookie{Name: idpCookieName(pub), Value: "", Path: "/", MaxAge: -1,
		Secure: strings.HasPrefix(pub, "https://"), HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// idpCallback handles GET /oauth/idp/callback.
func (s *Server) idpCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	if s.limited(w, r, s.signinLimit) {
		return
	}
	ctx := r.Context()
	pub := issuer(r)
	q := r.URL.Query()
	st, cookie, ok := s.openIdPState(r)
	if !ok || q.Get("state") == "" || q.Get("state") != st.GetState() {
		s.errorPage(w, r, http.StatusBadRequest, "Sign-in expired", msgIdPExpired)
		return
	}
	// From here on the sign-in is audited: which provider, who, the
	// outcome and a fixed reason (never a code or a token).
	ev := audit.IdP{Event: audit.IdPSignIn, IdP: st.GetIdp()}
	refuse := func(status int, title, msg, reason string) {
		ev.Outcome, ev.Reason = audit.IdPRefused, reason
		if status >= http.StatusInternalServerError {
			ev.Outcome = audit.IdPFailed
		}
		s.auditIdP(ev)
		s.errorPage(w, r, status, title, msg)
	}
	if q.Get("error") != "" {
		clearIdPCookie(w, pub)
		refuse(http.StatusForbidden, "Not signed in", msgIdPRefused, "idp_error")
		return
	}
	idp, ok := s.st.IdentityProvider(st.GetIdp())
	if !ok {
		clearIdPCookie(w, pub)
		refuse(http.StatusNotFound, "Unknown identity provider", msgIdPUnknown, "idp_unknown")
		return
	}
	p, err := s.provider(ctx, idp.Def)
	if err != nil {
		s.log.WarnContext(ctx, "identity provider discovery failed", "idp", idp.Def.GetName(), "err", err)
		refuse(http.StatusServiceUnavailable, "Identity provider unavailable", msgIdPDown, "idp_unreachable")
		return
	}
	cfg := idpOAuthConfig(pub, idp, p)
	code := q.Get("code")
	if code == "" || len(code) > 2048 {
		refuse(http.StatusBadRequest, "Not signed in", msgIdPInvalid, "invalid_answer")
		return
	}
	xctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, s.cfg.IdPClient), 15*time.Second)
	defer cancel()
	tok, err := cfg.Exchange(xctx, code, oauth2.VerifierOption(st.GetCodeVerifier()))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			s.log.InfoContext(ctx, "identity provider refused the code", "idp", idp.Def.GetName(), "error", re.ErrorCode)
			clearIdPCookie(w, pub)
			refuse(http.StatusForbidden, "Not signed in", msgIdPRefused, "code_refused")
			return
		}
		s.log.WarnContext(ctx, "identity provider token endpoint failed", "idp", idp.Def.GetName(), "err", redactNetErr(err))
		refuse(http.StatusServiceUnavailable, "Identity provider unavailable", msgIdPDown, "idp_unreachable")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		clearIdPCookie(w, pub)
		refuse(http.StatusBadRequest, "Not signed in", msgIdPInvalid, "invalid_id_token")
		return
	}
	vctx := oidc.ClientContext(ctx, s.cfg.IdPClient)
	idt, err := p.VerifierContext(vctx, &oidc.Config{ClientID: idp.Def.GetClientId(), Now: s.now}).Verify(vctx, raw)
	if err != nil {
		clearIdPCookie(w, pub)
		var te *oidc.TokenExpiredError
		if errors.As(err, &te) {
			refuse(http.StatusBadRequest, "Not signed in", msgIdPTokenOld, "id_token_expired")
			return
		}
		s.log.InfoContext(ctx, "ID token refused", "idp", idp.Def.GetName(), "err", err)
		refuse(http.StatusBadRequest, "Not signed in", msgIdPInvalid, "invalid_id_token")
		return
	}
	if idt.Nonce == "" || idt.Nonce != st.GetNonce() {
		clearIdPCookie(w, pub)
		refuse(http.StatusBadRequest, "Not signed in", msgIdPInvalid, "nonce_mismatch")
		return
	}
	// The person signed in: from now on the state is single use.
	ct, _ := base64.RawURLEncoding.Strict().DecodeString(cookie)
	ttl := st.GetExpireTime().AsTime().Sub(s.now()) + time.Second
	if _, err := s.st.MarkOAuthRequestUsed(ctx, "idp-"+secretID(string(ct)), ttl); err != nil {
		clearIdPCookie(w, pub)
		if errors.Is(err, store.ErrConflict) {
			refuse(http.StatusBadRequest, "Sign-in expired", msgIdPExpired, "replayed")
			return
		}
		refuse(http.StatusServiceUnavailable, "Temporarily unavailable", "Signing in is temporarily unavailable. Try again in a moment.", "unavailable")
		return
	}
	clearIdPCookie(w, pub)
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		refuse(http.StatusBadRequest, "Not signed in", msgIdPInvalid, "invalid_id_token")
		return
	}
	id, status, msg := mapIdentity(idp.Def, claims)
	ev.Subject = id.claim
	if msg != "" {
		s.log.InfoContext(ctx, "identity provider sign-in refused", "idp", idp.Def.GetName(), "reason", msg)
		refuse(status, "Not signed in", msg, signinReason(msg))
		return
	}
	p2, created, prev, status, msg := s.idpPrincipal(ctx, idp.Def, id)
	if msg != "" {
		refuse(status, "Not signed in", msg, signinReason(msg))
		return
	}
	if tok.RefreshToken != "" {
		// Kept sealed so that a gateway refresh re-asserts the groups.
		if _, err := s.st.PutIdPGrant(ctx, &store.IdPGrant{Principal: p2.GetName(), PrincipalUID: p2.GetUid(),
			IdP: idp.Def.GetName(), RefreshToken: tok.RefreshToken, UpdateTime: s.now()}, -1); err != nil {
			s.log.WarnContext(ctx, "store identity provider grant", "err", err)
		}
	}
	s.saveIdPToken(ctx, p2, idp.Def.GetName(), raw, idt.Expiry)
	rec := &storev1.OAuthSessionRecord{
		Principal:    p2.GetName(),
		Idp:          idp.Def.GetName(),
		IdpSubject:   idt.Subject,
		PrincipalUid: p2.GetUid(),
	}
	s.log.InfoContext(ctx, "signed in with identity provider", "principal", p2.GetName(), "idp", idp.Def.GetName(), "groups", len(id.groups))
	ev.Principal, ev.Outcome, ev.Created = p2.GetName(), audit.IdPOK, created
	ev.GroupsAdded, ev.GroupsRemoved = groupChanges(prev, assertedBy(p2, idp.Def.GetName()))
	s.auditIdP(ev)
	s.startSession(w, r, rec, st.GetRequest(), st.GetNext())
}

// saveIdPToken keeps the verified ID token the person p signed in (or
// refreshed) with at idp, sealed, as the subject token of the RFC 8693
// exchanges of token_exchange upstreams on their behalf
// (store.SaveIdPToken; grants.TokenTypeIDToken). A failure is logged: the
// sign-in stands, and such an upstream then asks the person to sign in
// again.
func (s *Server) saveIdPToken(ctx context.Context, p *configv1.Principal, idp, rawIDToken string, exp time.Time) {
	tok := &storev1.IdPToken{SubjectToken: rawIDToken, SubjectTokenType: grants.TokenTypeIDToken}
	if !exp.IsZero() {
		tok.Expiry = timestamppb.New(exp)
	}
	if _, err := s.st.SaveIdPToken(ctx, p.GetName(), p.GetUid(), idp, tok); err != nil {
		s.log.WarnContext(ctx, "keep identity provider token for token exchange", "idp", idp, "principal", p.GetName(), "err", err)
	}
}

// auditIdP writes an identity-provider event to the audit log.
func (s *Server) auditIdP(ev audit.IdP) {
	ev.Time = s.now()
	if err := s.cfg.Audit.IdP(ev); err != nil {
		s.log.Error("audit identity provider event", "err", err)
	}
}

// signinReason is the audit reason of a refused sign-in's fixed message.
func signinReason(msg string) string {
	switch msg {
	case msgIdPNoName:
		return "no_principal_claim"
	case msgIdPDomain:
		return "domain_not_allowed"
	case msgIdPNotMember:
		return "not_registered"
	}
	return "unavailable"
}

// assertedBy lists the groups idp asserts for p (sorted, as stored).
func assertedBy(p *configv1.Principal, idp string) []string {
	var out []string
	for _, a := range p.GetAssertedGroups() {
		if a.GetIdentityProvider() == idp {
			out = append(out, a.GetGroup())
		}
	}
	return out
}

// groupChanges is what turned the asserted groups prev into cur.
func groupChanges(prev, cur []string) (added, removed []string) {
	for _, g := range cur {
		if !slices.Contains(prev, g) {
			added = append(added, g)
		}
	}
	for _, g := range prev {
		if !slices.Contains(cur, g) {
			removed = append(removed, g)
		}
	}
	return added, removed
}

// redactNetErr keeps a network error's kind, not its URL (which may carry
// a code).
func redactNetErr(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + errors.Unwrap(ue).Error()
	}
	return "token request failed"
}

// identity is what an ID token says about a person.
type identity struct {
	claim  string // the principal claim's value, lowercased
	name   string // the principal name derived from it
	groups []string
}

// mapIdentity applies an identity provider's claim mapping to verified
// ID token claims: the principal claim (default email, which must then be
// verified: email_verified true), the allowed email domains and the group
// claim (default groups). A refusal is a status and a fixed message (with
// the claim's value, when it was read, for the audit log).
func mapIdentity(def *configv1.IdentityProvider, claims map[string]any) (identity, int, string) {
	pc := def.GetPrincipalClaim()
	if pc == "" {
		pc = "email"
	}
	v, _ := claims[pc].(string)
	v = strings.ToLower(strings.TrimSpace(v))
	if v == "" || len(v) > 256 {
		return identity{}, http.StatusForbidden, msgIdPNoName
	}
	if pc == "email" && !claimTrue(claims["email_verified"]) {
		return identity{claim: v}, http.StatusForbidden, msgIdPNoName
	}
	if len(def.GetAllowedDomains()) > 0 {
		email, _ := claims["email"].(string)
		if pc == "email" {
			email = v
		}
		_, domain, ok := strings.Cut(strings.ToLower(email), "@")
		allowed := false
		for _, d := range def.GetAllowedDomains() {
			if ok && domain == strings.ToLower(strings.TrimPrefix(d, "@")) {
				allowed = true
			}
		}
		if !allowed || (pc != "email" && !claimTrue(claims["email_verified"])) {
			return identity{claim: v}, http.StatusForbidden, msgIdPDomain
		}
	}
	name, ok := PrincipalName(v)
	if !ok {
		return identity{claim: v}, http.StatusForbidden, msgIdPNoName
	}
	groups, _ := claimGroups(def, claims)
	return identity{claim: v, name: name, groups: groups}, 0, ""
}

// claimGroups reads the group names in def's groups claim (default
// "groups") of verified claims: a list of strings, or one string as some
// providers send it; at most 256 names of at most 256 bytes. present is
// false when the claim is absent.
func claimGroups(def *configv1.IdentityProvider, claims map[string]any) (groups []string, present bool) {
	gc := def.GetGroupsClaim()
	if gc == "" {
		gc = "groups"
	}
	raw, present := claims[gc]
	switch g := raw.(type) {
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok && s != "" && len(groups) < 256 && len(s) <= 256 {
				groups = append(groups, s)
			}
		}
	case string:
		if g != "" && len(g) <= 256 {
			groups = []string{g}
		}
	}
	return groups, present
}

func claimTrue(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b == "true"
	}
	return false
}

// PrincipalName maps an identity claim (an email address, a subject) to
// a principal name (the api/wire server-name grammar), for both IdP
// sign-in and ID-JAG: lowercased; letters, digits, '_' and '-' kept, '@'
// becomes '_' and every other character '-' (alice@example.com →
// alice_example-com; a claim that is a lowercase name already is kept).
// ok is false when the result is not a valid name (too long, or not
// starting with a letter or digit). Different claims may map to the same
// name, so a sign-in matches an existing principal only when its
// display_name is the claim value (see idpPrincipal).
func PrincipalName(claim string) (string, bool) {
	var b strings.Builder
	for _, c := range strings.ToLower(claim) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteRune(c)
		case c == '@':
			b.WriteByte('_')
		default:
			b.WriteByte('-')
		}
	}
	n := b.String()
	return n, wire.ValidServerName(n)
}

// idpPrincipal finds or (create_principals) creates the principal of a
// verified identity and records the groups the provider asserted. The
// principal returned is current in the cache; created says the sign-in
// created it, prev lists the groups the provider asserted before.
func (s *Server) idpPrincipal(ctx context.Context, def *configv1.IdentityProvider, id identity) (p *configv1.Principal, created bool, prev []string, status int, msg string) {
	unavailable := func(err error) (*configv1.Principal, bool, []string, int, string) {
		s.log.ErrorContext(ctx, "identity provider sign-in", "err", err)
		return nil, false, nil, http.StatusServiceUnavailable, "Signing in is temporarily unavailable. Try again in a moment."
	}
	notMember := func() (*configv1.Principal, bool, []string, int, string) {
		return nil, false, nil, http.StatusForbidden, msgIdPNotMember
	}
	mismatch := func(p *configv1.Principal) bool {
		// A service account never signs in as a person; a principal whose
		// display_name is not this claim is someone else's.
		return p.GetKind() == configv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT ||
			!strings.EqualFold(p.GetDisplayName(), id.claim)
	}
	caughtUp := func() error {
		rev, err := s.st.HeadRevision(ctx)
		if err == nil {
			err = s.st.WaitRevision(ctx, rev)
		}
		return err
	}
	p, ok := s.st.Principal(id.name)
	if !ok {
		if !def.GetCreatePrincipals() {
			return notMember()
		}
		_, err := s.st.PutPrincipal(ctx, &configv1.Principal{
			Name:        id.name,
			Kind:        configv1.PrincipalKind_PRINCIPAL_KIND_USER,
			Role:        configv1.Role_ROLE_MEMBER,
			DisplayName: id.claim,
		}, 0)
		switch {
		case err == nil:
			created = true
		case !errors.Is(err, store.ErrConflict):
			return unavailable(err)
		}
		if err := caughtUp(); err != nil {
			return unavailable(err)
		}
		if p, ok = s.st.Principal(id.name); !ok {
			return notMember()
		}
	}
	if mismatch(p) {
		return notMember()
	}
	prev = assertedBy(p, def.GetName())
	if err := s.st.SetAssertedGroups(ctx, id.name, def.GetName(), id.groups, s.now()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return notMember()
		}
		return unavailable(err)
	}
	if err := caughtUp(); err != nil {
		return unavailable(err)
	}
	if p, ok = s.st.Principal(id.name); !ok || mismatch(p) {
		return notMember()
	}
	return p, created, prev, 0, ""
}

// reassert refreshes the person's grant at the identity provider a token
// family was signed in with and records the groups it asserts now, so a
// person removed from a group at the provider loses it at the next gateway
// refresh. Exactly once across replicas: an etcd lock per (principal,
// provider) and a compare-and-swap of the rotated refresh token. Without a
// provider refresh token (the provider issued none) the refresh is refused:
// the person signs in again, which asserts the groups afresh. A provider
// that refuses the refresh token, or now maps the person elsewhere, ends
// the family (errBadRefresh); one that is down is errTokenUnavailable.
func (s *Server) reassert(ctx context.Context, principal, uid, idpName string) (terr *tokenError) {
	// Audited: who, which provider, the outcome (a fixed reason when not
	// ok) and the groups added and removed.
	ev := audit.IdP{Event: audit.IdPReassert, IdP: idpName, Principal: principal}
	defer func() {
		switch terr {
		case nil:
			ev.Outcome = audit.IdPOK
		case errBadRefresh:
			ev.Outcome = audit.IdPRefused
		default:
			ev.Outcome = audit.IdPFailed
		}
		s.auditIdP(ev)
	}()
	fail := func(reason string, e *tokenError) *tokenError {
		ev.Reason = reason
		return e
	}
	idp, ok := s.st.IdentityProvider(idpName)
	if !ok {
		return fail("idp_unknown", errBadRefresh)
	}
	unlock, err := s.st.Lock(ctx, "idp-refresh/"+secretID(principal+"\x1f"+idpName))
	if err != nil {
		return fail("unavailable", errTokenUnavailable)
	}
	defer unlock()
	g, rev, err := s.st.IdPGrant(ctx, principal, idpName)
	switch {
	case isNotFound(err):
		return fail("no_idp_grant", errBadRefresh)
	case err != nil:
		return fail("unavailable", errTokenUnavailable)
	case g.PrincipalUID != uid || g.RefreshToken == "":
		return fail("no_idp_grant", errBadRefresh)
	}
	p, err := s.provider(ctx, idp.Def)
	if err != nil {
		return fail("idp_unreachable", errTokenUnavailable)
	}
	cfg := idpOAuthConfig("", idp, p)
	hctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, s.cfg.IdPClient), 15*time.Second)
	defer cancel()
	tok, err := cfg.TokenSource(hctx, &oauth2.Token{RefreshToken: g.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			s.log.InfoContext(ctx, "identity provider refused the refresh token", "idp", idpName, "principal", principal, "error", re.ErrorCode)
			_, _ = s.st.DeleteIdPGrant(ctx, principal, idpName, rev)
			return fail("refresh_refused", errBadRefresh)
		}
		s.log.WarnContext(ctx, "identity provider refresh failed", "idp", idpName, "err", redactNetErr(err))
		return fail("idp_unreachable", errTokenUnavailable)
	}
	var (
		claims map[string]any
		idt    *oidc.IDToken
	)
	rawIDT, _ := tok.Extra("id_token").(string)
	if rawIDT != "" {
		vctx := oidc.ClientContext(hctx, s.cfg.IdPClient)
		idt, err = p.VerifierContext(vctx, &oidc.Config{ClientID: idp.Def.GetClientId(), Now: s.now}).Verify(vctx, rawIDT)
		if err != nil || idt.Claims(&claims) != nil {
			s.log.InfoContext(ctx, "refreshed ID token refused", "idp", idpName, "err", err)
			return fail("invalid_id_token", errBadRefresh)
		}
	} else {
		ui, err := p.UserInfo(oidc.ClientContext(hctx, s.cfg.IdPClient), oauth2.StaticTokenSource(tok))
		if err != nil || ui.Claims(&claims) != nil {
			return fail("idp_unreachable", errTokenUnavailable)
		}
	}
	id, _, msg := mapIdentity(idp.Def, claims)
	ev.Subject = id.claim
	if msg != "" || id.name != principal {
		s.log.InfoContext(ctx, "identity provider no longer signs this person in", "idp", idpName, "principal", principal)
		return fail("identity_changed", errBadRefresh)
	}
	pr, ok := s.st.PrincipalBound(principal, uid)
	if !ok || !strings.EqualFold(pr.GetDisplayName(), id.claim) {
		return fail("identity_changed", errBadRefresh)
	}
	prev := assertedBy(pr, idpName)
	if err := s.st.SetAssertedGroups(ctx, principal, idpName, id.groups, s.now()); err != nil {
		return fail("unavailable", errTokenUnavailable)
	}
	if idt != nil {
		s.saveIdPToken(ctx, pr, idpName, rawIDT, idt.Expiry)
	}
	if tok.RefreshToken != "" && tok.RefreshToken != g.RefreshToken {
		g.RefreshToken, g.UpdateTime = tok.RefreshToken, s.now()
		if _, err := s.st.PutIdPGrant(ctx, g, rev); err != nil {
			s.log.WarnContext(ctx, "store rotated identity provider grant", "err", err)
		}
	}
	if rev, err := s.st.HeadRevision(ctx); err == nil {
		_ = s.st.WaitRevision(ctx, rev)
	}
	if cur, ok := s.st.Principal(principal); ok {
		ev.GroupsAdded, ev.GroupsRemoved = groupChanges(prev, assertedBy(cur, idpName))
	}
	s.log.InfoContext(ctx, "groups re-asserted at refresh", "idp", idpName, "principal", principal, "groups", len(id.groups))
	return nil
}
