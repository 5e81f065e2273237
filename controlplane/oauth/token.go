package oauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// tokenError is an RFC 6749 section 5.2 error response.
type tokenError struct {
	status int
	code   string
	desc   string
	basic  bool // WWW-Authenticate: Basic (invalid_client after Basic auth)
}

func (e *tokenError) Error() string { return e.code }

func tokErr(code, desc string) *tokenError {
	return &tokenError{status: http.StatusBadRequest, code: code, desc: desc}
}

var errTokenUnavailable = &tokenError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "try again in a moment"}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

func writeTokenError(w http.ResponseWriter, e *tokenError) {
	noStore(w)
	if e.status == http.StatusUnauthorized {
		if e.basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="mcpgate"`)
		}
	}
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	writeJSON(w, e.status, oauthError{e.code, e.desc})
}

// issueCode stores a gateway authorization code for auth and sends it to
// the client.
func (s *Server) issueCode(w http.ResponseWriter, r *http.Request, auth *storev1.OAuthAuthorization) {
	code := CodePrefix + random(32)
	rec := &storev1.OAuthCodeRecord{
		Authorization: auth,
		Family:        random(16),
		ExpireTime:    timestamppb.New(s.now().Add(s.cfg.CodeTTL)),
		// The tokens are for the route at this public base only (RFC 8707):
		// a data plane with another public base refuses them.
		Audience: wire.ResourceURL(issuer(r), auth.GetServer()),
	}
	sum := store.HashKey(code)
	rec.Sha256 = sum[:]
	if _, err := s.st.OAuthCodes().Create(r.Context(), sum, rec, s.cfg.CodeTTL); err != nil {
		s.log.ErrorContext(r.Context(), "store authorization code", "err", err)
		redirectError(w, r, auth.GetRedirectUri(), auth.GetState(), "temporarily_unavailable", "try again in a moment")
		return
	}
	s.log.InfoContext(r.Context(), "authorization code issued", "principal", auth.GetPrincipal(), "client_id", auth.GetClientId(), "server", auth.GetServer())
	redirectClient(w, r, auth.GetRedirectUri(), auth.GetState(), url.Values{"code": {code}})
}

// readTokenForm reads a token or revocation request body.
func readTokenForm(r *http.Request) (url.Values, *tokenError) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return nil, tokErr("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &tokenError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", desc: "request body too large"}
		}
		return nil, tokErr("invalid_request", "the body could not be parsed")
	}
	for k, v := range r.PostForm {
		if len(v) > 1 {
			return nil, tokErr("invalid_request", "repeated parameter "+k)
		}
	}
	return r.PostForm, nil
}

// authenticateClient identifies the client of a token or revocation
// request: HTTP Basic (relayed in X-MCPGate-Client-Authorization),
// client_secret_post, or a public client's client_id.
func (s *Server) authenticateClient(ctx context.Context, r *http.Request, form url.Values) (*client, *tokenError) {
	var id, secret string
	basic := false
	if h := r.Header.Get(wire.HeaderClientAuthorization); h != "" {
		scheme, cred, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "unsupported client authentication", basic: true}
		}
		basic = true
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		u, p, ok := strings.Cut(string(raw), ":")
		if err != nil || !ok {
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "malformed client credentials", basic: true}
		}
		if id, err = url.QueryUnescape(u); err != nil {
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "malformed client credentials", basic: true}
		}
		if secret, err = url.QueryUnescape(p); err != nil {
			return nil, &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "malformed client credentials", basic: true}
		}
		if form.Get("client_secret") != "" {
			return nil, tokErr("invalid_request", "use only one client authentication method")
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return nil, tokErr("invalid_request", "client_id differs from the authenticated client")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	fail := &tokenError{status: http.StatusUnauthorized, code: "invalid_client", desc: "client authentication failed", basic: basic}
	if id == "" {
		return nil, fail
	}
	c, err := s.lookupClient(ctx, id, false)
	if err != nil {
		if errors.Is(err, errUnknownClient) {
			return nil, fail
		}
		s.log.ErrorContext(ctx, "look up client", "err", err)
		return nil, errTokenUnavailable
	}
	if len(c.secretSHA256) > 0 {
		sum := sha256.Sum256([]byte(secret))
		if secret == "" || subtle.ConstantTimeCompare(sum[:], c.secretSHA256) != 1 {
			return nil, fail
		}
	}
	s.touchClient(ctx, c)
	return c, nil
}

// token handles POST /token.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		noStore(w)
		methodNotAllowed(w, "POST")
		return
	}
	form, terr := readTokenForm(r)
	if terr != nil {
		writeTokenError(w, terr)
		return
	}
	grant := form.Get("grant_type")
	if grant == "" {
		writeTokenError(w, tokErr("invalid_request", "grant_type is required"))
		return
	}
	if grant != "authorization_code" && grant != "refresh_token" && grant != GrantJWTBearer {
		writeTokenError(w, tokErr("unsupported_grant_type", "only authorization_code, refresh_token and "+GrantJWTBearer+" are supported"))
		return
	}
	c, terr := s.authenticateClient(r.Context(), r, form)
	if terr != nil {
		writeTokenError(w, terr)
		return
	}
	if !slices.Contains(c.grantTypes, grant) {
		writeTokenError(w, tokErr("unauthorized_client", "the client did not register this grant type"))
		return
	}
	var resp *tokenResponse
	switch grant {
	case "authorization_code":
		resp, terr = s.exchangeCode(r.Context(), c, form)
	case GrantJWTBearer:
		resp, terr = s.jwtBearer(r, c, form)
	default:
		resp, terr = s.refresh(r.Context(), c, form)
	}
	if terr != nil {
		writeTokenError(w, terr)
		return
	}
	noStore(w)
	writeJSON(w, http.StatusOK, resp)
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

var errBadCode = tokErr("invalid_grant", "the authorization code is invalid, expired or already used")

// checkResource validates an optional resource parameter against the
// audience of the authorization: the canonical resource URL of its route at
// the public base it ran on.
func checkResource(form url.Values, audience string) *tokenError {
	raw, ok := form["resource"]
	if !ok {
		return nil
	}
	if res, valid := wire.CanonicalResource(raw[0]); !valid || res != audience {
		return tokErr("invalid_target", "resource does not match the authorization")
	}
	return nil
}

// principalUID is the uid of the principal called name ("" when it has
// none or does not exist).
func (s *Server) principalUID(name string) string {
	p, _ := s.st.Principal(name)
	return p.GetUid()
}

// sourceUsable reports whether the source an authorization, token family
// or session was obtained with (an API key or an identity provider) is
// still usable by its principal (see authorize.TokenSourceUsable).
func (s *Server) sourceUsable(keyID, idp, principal, uid string) bool {
	return authorize.TokenSourceUsable(s.st, keyID, idp, principal, uid, s.now())
}

func (s *Server) exchangeCode(ctx context.Context, c *client, form url.Values) (*tokenResponse, *tokenError) {
	code, verifier, redirectURI := form.Get("code"), form.Get("code_verifier"), form.Get("redirect_uri")
	switch {
	case code == "":
		return nil, tokErr("invalid_request", "code is required")
	case verifier == "":
		return nil, tokErr("invalid_request", "code_verifier is required")
	case redirectURI == "":
		return nil, tokErr("invalid_request", "redirect_uri is required")
	case len(code) > 200:
		return nil, errBadCode
	}
	rec, terr := s.redeemCode(ctx, c, store.HashKey(code), form)
	if terr != nil {
		return nil, terr
	}
	auth := rec.GetAuthorization()
	rd, ok := s.lookupRoute(auth.GetServer())
	if !ok {
		return nil, errBadCode
	}
	if rec.GetAudience() == "" || !s.sourceUsable(auth.GetKeyId(), auth.GetIdp(), auth.GetPrincipal(), auth.GetPrincipalUid()) {
		// The key the person signed in with was revoked (or its principal
		// deleted) since: nothing derives from it any more.
		return nil, errBadCode
	}
	if g, ok := s.st.Grant(auth.GetPrincipal(), auth.GetServer()); rd.needsUpstreamSignin() && (!ok || g.Conn.GetPrincipalUid() != auth.GetPrincipalUid()) {
		// The code was issued with the person's upstream grant, which was
		// disconnected since: a family started now would outlive that.
		return nil, errBadCode
	}
	fam := &storev1.OAuthFamilyRecord{
		Principal:    auth.GetPrincipal(),
		ClientId:     c.id,
		Server:       auth.GetServer(),
		Scopes:       auth.GetScopes(),
		ExpireTime:   timestamppb.New(s.now().Add(s.cfg.RefreshTokenTTL)),
		KeyId:        auth.GetKeyId(),
		Idp:          auth.GetIdp(),
		PrincipalUid: auth.GetPrincipalUid(),
		Audience:     rec.GetAudience(),
	}
	return s.issueTokens(ctx, c, rec.GetFamily(), fam, 0, auth.GetScopes())
}

// pkceOK verifies an S256 code verifier (RFC 7636).
func pkceOK(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	for _, ch := range verifier {
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || strings.ContainsRune("-._~", ch)) {
			return false
		}
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// issueTokens writes the new access token, claims a rotation of the family
// (create when rev is 0, else compare-and-swap) and then writes the new
// refresh token.
func (s *Server) issueTokens(ctx context.Context, c *client, famID string, fam *storev1.OAuthFamilyRecord, rev int64, scopes []string) (*tokenResponse, *tokenError) {
	now := s.now()
	access := AccessTokenPrefix + random(32)
	sum := store.HashKey(access) // what Authorize looks tokens up by
	exp := now.Add(s.cfg.AccessTokenTTL)
	if fexp := fam.GetExpireTime().AsTime(); exp.After(fexp) {
		exp = fexp
	}
	var refresh string
	var refreshSum [32]byte
	if slices.Contains(c.grantTypes, "refresh_token") {
		refresh = RefreshTokenPrefix + random(32)
		refreshSum = store.HashKey(refresh)
		fam.RefreshId = store.KeyID(refreshSum)
	}
	kept := fam.AccessTokens[:0]
	for _, t := range fam.GetAccessTokens() {
		if now.Before(t.GetExpireTime().AsTime()) {
			kept = append(kept, t)
		}
	}
	fam.AccessTokens = append(kept, &storev1.OAuthIssuedToken{Id: store.KeyID(sum), ExpireTime: timestamppb.New(exp)})
	// The access token is written before the family lists it: a revocation
	// of the family that reads it before this rotation's compare-and-swap
	// makes that swap fail (and the token is deleted below), one that reads
	// it after finds the token and deletes it. Either way no token outlives
	// its family.
	tokRev, err := s.st.PutAccessToken(ctx, sum, &storev1.AccessTokenRecord{
		Principal:    fam.GetPrincipal(),
		Route:        fam.GetServer(),
		ClientId:     c.id,
		Scopes:       scopes,
		ExpireTime:   timestamppb.New(exp),
		Family:       famID,
		KeyId:        fam.GetKeyId(),
		Idp:          fam.GetIdp(),
		PrincipalUid: fam.GetPrincipalUid(),
		Audience:     fam.GetAudience(),
	})
	if err != nil {
		s.log.ErrorContext(ctx, "store access token", "err", err)
		return nil, errTokenUnavailable
	}
	if rev == 0 {
		_, err = s.st.OAuthFamilies().PutLeased(ctx, famID, fam, fam.GetExpireTime().AsTime().Sub(now), 0)
	} else {
		_, err = s.st.OAuthFamilies().Put(ctx, famID, fam, rev)
	}
	if err != nil {
		if _, derr := s.st.AccessTokens().Delete(ctx, store.KeyID(sum), 0); derr != nil && !isNotFound(derr) {
			s.log.ErrorContext(ctx, "delete unissued access token", "err", derr)
		}
		if errors.Is(err, store.ErrConflict) {
			return nil, tokErr("invalid_grant", "the grant changed concurrently")
		}
		s.log.ErrorContext(ctx, "store token family", "err", err)
		return nil, errTokenUnavailable
	}
	if refresh != "" {
		rrec := &storev1.OAuthRefreshRecord{Family: famID, Sha256: refreshSum[:]}
		if _, err := s.st.OAuthRefreshTokens().Create(ctx, refreshSum, rrec, fam.GetExpireTime().AsTime().Sub(now)); err != nil {
			s.log.ErrorContext(ctx, "store refresh token", "err", err)
			return nil, errTokenUnavailable
		}
	}
	// The client uses the token at once: let this replica's Authorize see
	// it first (other replicas catch up on a miss, see authorizeapi).
	if err := s.st.WaitRevision(ctx, tokRev); err != nil {
		s.log.WarnContext(ctx, "access token not yet in the cache", "err", err)
	}
	s.log.InfoContext(ctx, "tokens issued", "principal", fam.GetPrincipal(), "client_id", c.id, "server", fam.GetServer(), "family", famID)
	return &tokenResponse{
		AccessToken:  access,
		TokenType:    "Bearer",
		ExpiresIn:    int64(exp.Sub(now).Seconds()),
		RefreshToken: refresh,
		Scope:        strings.Join(scopes, " "),
	}, nil
}

var errBadRefresh = tokErr("invalid_grant", "the refresh token is invalid, expired or revoked")

// refresh rotates a refresh token; presenting a rotated-away token revokes
// the whole family.
func (s *Server) refresh(ctx context.Context, c *client, form url.Values) (*tokenResponse, *tokenError) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, tokErr("invalid_request", "refresh_token is required")
	}
	if len(rt) > 200 {
		return nil, errBadRefresh
	}
	rsum := store.HashKey(rt)
	rid := store.KeyID(rsum)
	rrec, _, err := s.st.OAuthRefreshTokens().Find(ctx, rsum)
	if err != nil {
		if isNotFound(err) {
			return nil, errBadRefresh
		}
		return nil, errTokenUnavailable
	}
	fam, frev, err := s.st.OAuthFamilies().Get(ctx, rrec.GetFamily())
	if err != nil {
		if isNotFound(err) {
			return nil, errBadRefresh
		}
		return nil, errTokenUnavailable
	}
	if fam.GetClientId() != c.id {
		return nil, errBadRefresh
	}
	if fam.GetRefreshId() != rid {
		s.log.WarnContext(ctx, "rotated refresh token reused; revoking its family", "client_id", c.id, "principal", fam.GetPrincipal())
		s.revokeFamily(ctx, rrec.GetFamily())
		return nil, errBadRefresh
	}
	if !s.now().Before(fam.GetExpireTime().AsTime()) {
		return nil, errBadRefresh
	}
	if fam.GetAudience() == "" || !s.sourceUsable(fam.GetKeyId(), fam.GetIdp(), fam.GetPrincipal(), fam.GetPrincipalUid()) {
		// The key the family was obtained with was revoked, or its
		// principal deleted: the family is dead for good.
		s.log.InfoContext(ctx, "refresh of a family whose source is revoked; revoking the family", "client_id", c.id, "principal", fam.GetPrincipal())
		s.revokeFamily(ctx, rrec.GetFamily())
		return nil, errBadRefresh
	}
	if fam.GetIdp() != "" {
		// Signed in with an identity provider: ask it again, so groups
		// the person lost there are lost here too.
		if terr := s.reassert(ctx, fam.GetPrincipal(), fam.GetPrincipalUid(), fam.GetIdp()); terr != nil {
			if terr == errBadRefresh {
				s.revokeFamily(ctx, rrec.GetFamily())
			}
			return nil, terr
		}
	}
	if _, ok := s.lookupRoute(fam.GetServer()); !ok {
		return nil, errBadRefresh
	}
	if !s.mayUseRoute(fam.GetPrincipal(), fam.GetServer()) {
		return nil, errBadRefresh
	}
	if terr := checkResource(form, fam.GetAudience()); terr != nil {
		return nil, terr
	}
	scopes := fam.GetScopes()
	if sc := strings.Fields(form.Get("scope")); len(sc) > 0 {
		for _, x := range sc {
			if !slices.Contains(fam.GetScopes(), x) {
				return nil, tokErr("invalid_scope", "the requested scope exceeds the grant")
			}
		}
		scopes = sc
	}
	return s.issueTokens(ctx, c, rrec.GetFamily(), fam, frev, scopes)
}

// revokeFamily deletes a family's access tokens, its current refresh token
// and the family itself.
func (s *Server) revokeFamily(ctx context.Context, famID string) {
	families := s.st.OAuthFamilies()
	for range 5 {
		fam, rev, err := families.Get(ctx, famID)
		if err != nil {
			if errors.Is(err, store.ErrCorrupt) {
				_, _ = families.Delete(ctx, famID, 0)
			}
			return
		}
		for _, t := range fam.GetAccessTokens() {
			if _, err := s.st.AccessTokens().Delete(ctx, t.GetId(), 0); err != nil && !isNotFound(err) {
				s.log.ErrorContext(ctx, "revoke access token", "err", err)
			}
		}
		if fam.GetRefreshId() != "" {
			_, _ = s.st.OAuthRefreshTokens().Delete(ctx, fam.GetRefreshId(), 0)
		}
		if _, err := families.Delete(ctx, famID, rev); err == nil || isNotFound(err) {
			s.log.InfoContext(ctx, "token family revoked", "family", famID, "principal", fam.GetPrincipal())
			return
		}
	}
}

// RevokeTokens revokes, best effort, every token family derived from what
// was revoked: those of principal (every one when principal is empty)
// obtained with the API key keyID (any key when empty) for server (any when
// empty), and the principal's sign-in sessions of that key. It frees
// storage and ends the families at once. That tokens of a revoked key or a
// deleted principal are refused does not depend on it: Authorize and /token
// check each token's source on use. For a disconnected route it is what
// ends the tokens; a refresh racing with it cannot leave a token behind
// (issueTokens writes the access token before the family's
// compare-and-swap) and a code exchanged after it finds no grant. It
// returns how many families it revoked.
func (s *Server) RevokeTokens(ctx context.Context, principal, keyID, server string) (int, error) {
	fams, err := s.st.OAuthFamilies().List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for id, fam := range fams {
		if (principal != "" && fam.GetPrincipal() != principal) || (keyID != "" && fam.GetKeyId() != keyID) ||
			(server != "" && fam.GetServer() != server) {
			continue
		}
		s.revokeFamily(ctx, id)
		n++
	}
	if server == "" { // a connection ends tokens, not sign-ins
		sessions := s.st.OAuthSessions()
		all, err := sessions.List(ctx)
		if err != nil {
			return n, err
		}
		for id, rec := range all {
			if (principal == "" || rec.GetPrincipal() == principal) && (keyID == "" || rec.GetKeyId() == keyID) {
				_, _ = sessions.Delete(ctx, id, 0)
			}
		}
	}
	if n > 0 {
		// Read your writes: this replica's next decision sees the deletes.
		rev, err := s.st.HeadRevision(ctx)
		if err == nil {
			err = s.st.WaitRevision(ctx, rev)
		}
		if err != nil {
			s.log.WarnContext(ctx, "revoked tokens not yet in the cache", "err", err)
		}
	}
	return n, nil
}

// revoke handles POST /revoke (RFC 7009). Unknown tokens, and tokens of
// other clients, are answered 200 without effect.
func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		noStore(w)
		methodNotAllowed(w, "POST")
		return
	}
	form, terr := readTokenForm(r)
	if terr != nil {
		writeTokenError(w, terr)
		return
	}
	c, terr := s.authenticateClient(r.Context(), r, form)
	if terr != nil {
		writeTokenError(w, terr)
		return
	}
	tok := form.Get("token")
	if tok == "" {
		writeTokenError(w, tokErr("invalid_request", "token is required"))
		return
	}
	ctx := r.Context()
	sum := store.HashKey(tok)
	if rec, rev, err := s.st.AccessTokens().Find(ctx, sum); err == nil {
		if rec.GetClientId() == c.id {
			_, _ = s.st.AccessTokens().Delete(ctx, store.KeyID(sum), rev)
			s.log.InfoContext(ctx, "access token revoked", "client_id", c.id)
		}
	} else if rrec, _, err := s.st.OAuthRefreshTokens().Find(ctx, sum); err == nil {
		if fam, _, err := s.st.OAuthFamilies().Get(ctx, rrec.GetFamily()); err == nil && fam.GetClientId() == c.id {
			s.revokeFamily(ctx, rrec.GetFamily())
		}
	}
	noStore(w)
	w.WriteHeader(http.StatusOK)
}
