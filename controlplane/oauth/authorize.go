package oauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Single-valued authorization request parameters.
var authorizeParams = []string{"response_type", "client_id", "redirect_uri", "state", "scope",
	"code_challenge", "code_challenge_method", "resource"}

// authorize handles GET /authorize. Errors before the client and its
// redirect URI are trusted are an error page; later ones are redirected to
// the client with error, state and iss.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	ctx := r.Context()
	if s.limited(w, r, s.authzLimit) {
		return
	}
	if len(r.URL.RawQuery) > maxAuthorizeQuery {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The authorization request is too large.")
		return
	}
	q := r.URL.Query()
	if p, ok := overCap(q); !ok {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The authorization request's "+p+" is too long.")
		return
	}
	if len(q["client_id"]) > 1 || len(q["redirect_uri"]) > 1 {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid request", "The authorization request repeats client_id or redirect_uri.")
		return
	}
	c, err := s.lookupClient(ctx, q.Get("client_id"), true)
	if err != nil {
		var ce *cimdError
		switch {
		case errors.As(err, &ce):
			s.errorPage(w, r, http.StatusBadRequest, "invalid_client", ce.desc)
		case errors.Is(err, errUnknownClient):
			s.errorPage(w, r, http.StatusBadRequest, "Unknown client", "The application that sent you here is not registered with this gateway. Ask it to register again.")
		default:
			s.log.ErrorContext(ctx, "look up client", "err", err)
			s.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", "The gateway could not check this application. Try again in a moment.")
		}
		return
	}
	redirectURI := q.Get("redirect_uri")
	if redirectURI == "" || !slices.ContainsFunc(c.redirectURIs, func(reg string) bool { return redirectMatches(reg, redirectURI) }) {
		s.errorPage(w, r, http.StatusBadRequest, "Invalid redirect URI", "The redirect URI of this request is missing or is not one the application registered. You were not sent back to it.")
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) { redirectError(w, r, redirectURI, state, code, desc) }
	for _, p := range authorizeParams {
		if len(q[p]) > 1 {
			if p == "resource" {
				fail("invalid_target", "exactly one resource is supported")
			} else {
				fail("invalid_request", "repeated parameter "+p)
			}
			return
		}
	}
	switch rt := q.Get("response_type"); {
	case rt == "":
		fail("invalid_request", "response_type is required")
		return
	case rt != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	}
	challenge := q.Get("code_challenge")
	if challenge == "" {
		fail("invalid_request", "code_challenge is required (PKCE with S256)")
		return
	}
	if q.Get("code_challenge_method") != "S256" {
		fail("invalid_request", "code_challenge_method must be S256")
		return
	}
	if !validChallenge(challenge) {
		fail("invalid_request", "code_challenge is not a base64url SHA-256 value")
		return
	}
	// Only the form of the resource and scope is checked here: whether the
	// route exists, and its scopes, are told only to a signed-in principal
	// that may use it (resolveRequest), never to whoever has a client.
	route, ok := wire.ResourceServer(issuer(r), q.Get("resource"))
	if !ok {
		fail("invalid_target", "resource must be the URL of an MCP route of this gateway")
		return
	}
	scopes, ok := requestedScopes(q.Get("scope"))
	if !ok {
		fail("invalid_scope", "the requested scope is malformed")
		return
	}
	s.touchClient(ctx, c)
	auth := &storev1.OAuthAuthorization{
		ClientId:      c.id,
		ClientName:    c.name,
		RedirectUri:   redirectURI,
		State:         state,
		CodeChallenge: challenge,
		Server:        route,
		Scopes:        scopes, // as requested until resolveRequest
		ExpireTime:    timestamppb.New(s.now().Add(DefaultRequestTTL)),
	}
	// Nothing is stored before sign-in: the pending request travels sealed.
	reqID, err := s.sealRequest(auth)
	switch {
	case errors.Is(err, errRequestTooLarge):
		fail("invalid_request", "the authorization request is too large")
		return
	case err != nil:
		s.log.ErrorContext(ctx, "seal authorization request", "err", err)
		fail("temporarily_unavailable", "try again in a moment")
		return
	}
	sess, ok := s.session(r)
	if !ok {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, issuer(r)+"/signin?request="+url.QueryEscape(reqID), http.StatusFound)
		return
	}
	s.showConsent(w, r, sess, reqID, auth)
}

// validChallenge reports whether v is 43 base64url characters.
func validChallenge(v string) bool {
	if len(v) != 43 {
		return false
	}
	for _, ch := range v {
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return false
		}
	}
	return true
}

// grantScopesOf checks requested scopes against the route's offered ones;
// empty means all of them.
func grantScopesOf(offered []string, scope string) ([]string, bool) {
	req := strings.Fields(scope)
	if len(req) == 0 {
		return slices.Clone(offered), true
	}
	out := []string{}
	for _, sc := range req {
		if !slices.Contains(offered, sc) {
			return nil, false
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out, true
}

// ---- sessions

type session struct {
	id  string // secretID of the cookie value
	rec *storev1.OAuthSessionRecord
}

// cookieName is __Host-mcpgate_session on https public URLs; browsers
// refuse __Host- cookies without Secure, which needs https, so plain http
// (local development) uses mcpgate_session.
func cookieName(pub string) string {
	if strings.HasPrefix(pub, "https://") {
		return "__Host-mcpgate_session"
	}
	return "mcpgate_session"
}

// session returns the request's valid gateway session.
func (s *Server) session(r *http.Request) (*session, bool) {
	ck, err := r.Cookie(cookieName(issuer(r)))
	if err != nil || ck.Value == "" || len(ck.Value) > 100 {
		return nil, false
	}
	sum := store.HashKey(ck.Value)
	rec, _, err := s.st.OAuthSessions().Find(r.Context(), sum)
	if err != nil || !s.now().Before(rec.GetExpireTime().AsTime()) {
		return nil, false
	}
	if rec.GetIdp() != "" {
		if !s.sourceUsable("", rec.GetIdp(), rec.GetPrincipal(), rec.GetPrincipalUid()) {
			return nil, false
		}
	} else if !s.keyValid(rec.GetKeyId(), rec.GetPrincipal()) {
		return nil, false
	}
	return &session{id: store.KeyID(sum), rec: rec}, true
}

// keyValid reports whether the API key a session signed in with is still
// usable by principal.
func (s *Server) keyValid(keyID, principal string) bool {
	k, ok := s.st.Key(keyID)
	return ok && s.sourceUsable(keyID, "", principal, k.GetPrincipalUid())
}

type signinPage struct {
	Request string
	Next    string
	Error   string
	// ClientName names the application of a pending request.
	ClientName string
	// Providers are the configured identity providers.
	Providers []signinProvider
	// KeyForm shows the API-key form (off with signin.api_key: false).
	KeyForm bool
}

type signinProvider struct {
	DisplayName string
	Href        string
	// Down: its last discovery failed (within a minute).
	Down bool
}

// fill completes a sign-in page: the client of the pending request (when
// it opens), one button per identity provider, and the key form.
func (s *Server) fill(page *signinPage) {
	if a, err := s.openRequest(page.Request); err == nil {
		page.ClientName = a.GetClientName()
		if page.ClientName == "" {
			page.ClientName = a.GetClientId()
		}
	}
	page.KeyForm = !s.cfg.KeySigninOff
	for _, idp := range s.st.IdentityProviders() {
		q := url.Values{"idp": {idp.Def.GetName()}}
		if page.Request != "" {
			q.Set("request", page.Request)
		}
		if page.Next != "" {
			q.Set("next", page.Next)
		}
		name := idp.Def.GetDisplayName()
		if name == "" {
			name = idp.Def.GetName()
		}
		page.Providers = append(page.Providers, signinProvider{DisplayName: name, Href: "oauth/idp/start?" + q.Encode(),
			Down: s.idpDown(idp.Def.GetIssuer())})
	}
}

// signin shows the sign-in form and signs a person in with an API key.
func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	if (r.Method == http.MethodGet || r.Method == http.MethodPost) && s.limited(w, r, s.signinLimit) {
		return
	}
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		if len(q.Get("request")) > maxSealedRequest {
			s.requestGone(w, r)
			return
		}
		page := signinPage{Request: q.Get("request"), Next: nextPage(q.Get("next"))}
		s.fill(&page)
		s.render(w, r, http.StatusOK, "signin.html", page)
		return
	case http.MethodPost:
	default:
		methodNotAllowed(w, "GET, POST")
		return
	}
	if !s.parseForm(w, r) {
		return
	}
	if o := r.Header.Get("Origin"); o != "" && o != issuer(r) {
		s.errorPage(w, r, http.StatusForbidden, "Forbidden", "The sign-in form was sent from another site.")
		return
	}
	page := signinPage{Request: r.PostForm.Get("request"), Next: nextPage(r.PostForm.Get("next"))}
	if len(page.Request) > maxSealedRequest {
		s.requestGone(w, r)
		return
	}
	if s.cfg.KeySigninOff {
		s.fill(&page)
		page.Error = "Signing in with an API key is switched off on this gateway. Sign in with your identity provider."
		s.render(w, r, http.StatusForbidden, "signin.html", page)
		return
	}
	key := strings.TrimSpace(r.PostForm.Get("key"))
	k, ok := s.st.KeyByHash(store.HashKey(key))
	if key == "" || !ok || !s.keyValid(k.GetKey().GetId(), k.GetKey().GetPrincipal()) {
		s.fill(&page)
		page.Error = "That key is not valid. Paste a current gateway API key."
		s.render(w, r, http.StatusForbidden, "signin.html", page)
		return
	}
	s.startSession(w, r, &storev1.OAuthSessionRecord{
		Principal: k.GetKey().GetPrincipal(),
		KeyId:     k.GetKey().GetId(),
	}, page.Request, page.Next)
}

// startSession stores a browser session for rec (a key or IdP sign-in),
// sets its cookie and continues to the consent page of the pending
// request, or to the connections page.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, rec *storev1.OAuthSessionRecord, request, _ string) {
	value := random(32)
	sum := store.HashKey(value)
	rec.Csrf = random(24)
	rec.ExpireTime = timestamppb.New(s.now().Add(s.cfg.SessionTTL))
	rec.Sha256 = sum[:]
	if _, err := s.st.OAuthSessions().Create(r.Context(), sum, rec, s.cfg.SessionTTL); err != nil {
		s.log.ErrorContext(r.Context(), "store session", "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Temporarily unavailable", "Signing in is temporarily unavailable. Try again in a moment.")
		return
	}
	pub := issuer(r)
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName(pub),
		Value:    value,
		Path:     "/",
		MaxAge:   int(s.cfg.SessionTTL / time.Second),
		Secure:   strings.HasPrefix(pub, "https://"),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	s.log.InfoContext(r.Context(), "signed in", "principal", rec.Principal)
	to := pub + "/connections"
	if request != "" {
		to = pub + "/consent?request=" + url.QueryEscape(request)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func nextPage(v string) string {
	if v == "connections" {
		return v
	}
	return ""
}

// parseForm reads a bounded urlencoded form, answering 413/400 itself.
func (s *Server) parseForm(w http.ResponseWriter, r *http.Request) bool {
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.errorPage(w, r, http.StatusRequestEntityTooLarge, "Too large", "The form is too large.")
		} else {
			s.errorPage(w, r, http.StatusBadRequest, "Invalid form", "The form could not be read.")
		}
		return false
	}
	return true
}

// ---- consent

type consentPage struct {
	ClientName    string
	ClientID      string
	RedirectURI   string
	RedirectHost  string
	LocalRedirect bool
	Server        string
	Route         string
	Scopes        []string
	Principal     string
	Upstream      string
	Request       string
	CSRF          string
}

func (s *Server) requestGone(w http.ResponseWriter, r *http.Request) {
	s.errorPage(w, r, http.StatusBadRequest, "Request expired", "This authorization request has expired or was already used. Start again from your application.")
}

// consent shows (GET) and answers (POST) the consent page.
func (s *Server) consent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet:
		reqID := r.URL.Query().Get("request")
		sess, ok := s.session(r)
		if !ok {
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, issuer(r)+"/signin?request="+url.QueryEscape(reqID), http.StatusFound)
			return
		}
		auth, err := s.openRequest(reqID)
		if err != nil {
			s.requestGone(w, r)
			return
		}
		s.showConsent(w, r, sess, reqID, auth)
		return
	case http.MethodPost:
	default:
		methodNotAllowed(w, "GET, POST")
		return
	}
	if !s.parseForm(w, r) {
		return
	}
	sess, ok := s.session(r)
	if !ok || !s.csrfOK(sess, r.PostForm.Get("csrf")) {
		s.errorPage(w, r, http.StatusForbidden, "Forbidden", "This form is not valid for your session. Go back to your application and start again.")
		return
	}
	auth, err := s.takeRequest(ctx, r.PostForm.Get("request"))
	if err != nil {
		s.requestGone(w, r)
		return
	}
	switch r.PostForm.Get("action") {
	case "approve":
		if code, desc, ok := s.resolveRequest(sess.rec.GetPrincipal(), auth); !ok {
			redirectError(w, r, auth.GetRedirectUri(), auth.GetState(), code, desc)
			return
		}
		s.rememberConsent(ctx, sess.rec.GetPrincipal(), auth)
		s.approve(w, r, sess, auth)
	default:
		s.log.InfoContext(ctx, "consent denied", "principal", sess.rec.GetPrincipal(), "client_id", auth.GetClientId())
		redirectError(w, r, auth.GetRedirectUri(), auth.GetState(), "access_denied", "the person denied access")
	}
}

func (s *Server) csrfOK(sess *session, token string) bool {
	want := sess.rec.GetCsrf()
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(token)) == 1
}

// mayUse reports whether principal may use server's route: the decision's
// own effective-grants function (its own servers and its groups').
func (s *Server) mayUse(principal, server string) bool {
	p, ok := s.st.Principal(principal)
	if !ok {
		return false
	}
	return authorize.Granted(s.st, p, server)
}

// consentName names a remembered consent: per principal, client, route and
// exact redirect URI. A loopback redirect URI matches the registered one on
// any port, so without the URI a crafted link could send a public client's
// code silently to a listener on another port of the person's machine; the
// URI is part of the name for every client (confidential clients' redirect
// URIs match exactly anyway).
func consentName(principal, clientID, server, redirectURI string) string {
	return secretID(principal + "\x1f" + clientID + "\x1f" + server + "\x1f" + redirectURI)
}

func (s *Server) rememberConsent(ctx context.Context, principal string, auth *storev1.OAuthAuthorization) {
	rec := &storev1.OAuthConsentRecord{Scopes: auth.GetScopes(), CreateTime: timestamppb.New(s.now()), PrincipalUid: s.principalUID(principal)}
	name := consentName(principal, auth.GetClientId(), auth.GetServer(), auth.GetRedirectUri())
	consents := s.st.OAuthConsents()
	_, rev, err := consents.Get(ctx, name)
	switch {
	case isNotFound(err):
		_, err = consents.PutLeased(ctx, name, rec, s.cfg.ConsentTTL, 0)
	case err == nil:
		_, err = consents.PutLeased(ctx, name, rec, s.cfg.ConsentTTL, rev)
	}
	if err != nil {
		s.log.WarnContext(ctx, "remember consent", "err", err)
	}
}

// consented reports whether principal approved the client for the server,
// the exact redirect URI and the scopes before.
func (s *Server) consented(ctx context.Context, principal string, auth *storev1.OAuthAuthorization) bool {
	rec, _, err := s.st.OAuthConsents().Get(ctx, consentName(principal, auth.GetClientId(), auth.GetServer(), auth.GetRedirectUri()))
	if err != nil || rec.GetPrincipalUid() != s.principalUID(principal) {
		return false
	}
	for _, sc := range auth.GetScopes() {
		if !slices.Contains(rec.GetScopes(), sc) {
			return false
		}
	}
	return true
}

// showConsent renders the consent page, or approves at once when the
// person already consented to this client for this route.
func (s *Server) showConsent(w http.ResponseWriter, r *http.Request, sess *session, reqID string, auth *storev1.OAuthAuthorization) {
	ctx := r.Context()
	principal := sess.rec.GetPrincipal()
	if code, desc, ok := s.resolveRequest(principal, auth); !ok {
		_, _ = s.takeRequest(ctx, reqID)
		redirectError(w, r, auth.GetRedirectUri(), auth.GetState(), code, desc)
		return
	}
	if s.consented(ctx, principal, auth) {
		if _, err := s.takeRequest(ctx, reqID); err != nil {
			s.requestGone(w, r)
			return
		}
		s.approve(w, r, sess, auth)
		return
	}
	rd, _ := s.lookupRoute(auth.GetServer())
	host := auth.GetRedirectUri()
	local := false
	if u, err := url.Parse(host); err == nil {
		switch {
		case u.Host != "":
			host = u.Host
			local = isLoopbackHost(u.Hostname())
		case u.Scheme != "":
			host = u.Scheme + ":"
		}
	}
	page := consentPage{
		ClientName:    auth.GetClientName(),
		ClientID:      auth.GetClientId(),
		RedirectURI:   auth.GetRedirectUri(),
		RedirectHost:  host,
		LocalRedirect: local,
		Server:        rd.title,
		Route:         wire.ResourceURL(issuer(r), auth.GetServer()),
		Scopes:        auth.GetScopes(),
		Principal:     principal,
		Request:       reqID,
		CSRF:          sess.rec.GetCsrf(),
	}
	if rd.needsUpstreamSignin() {
		if u, err := url.Parse(rd.server.Def.GetAuthorizationUrl()); err == nil {
			page.Upstream = u.Host
		}
	}
	s.render(w, r, http.StatusOK, "consent.html", page)
}

// upstreamOAuth reports whether a server's upstream token comes from each
// person's interactive sign-in.
func upstreamOAuth(def *configv1.McpServer) bool {
	return def.GetAuthType() == configv1.AuthType_AUTH_TYPE_OAUTH2 &&
		def.GetOauth2Flow() == configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE
}

// usableGrant reports whether principal has a grant for server that can
// still yield an access token (valid, or refreshable).
func (s *Server) usableGrant(principal, server string) bool {
	g, ok := s.st.Grant(principal, server)
	if !ok || g.Conn.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE {
		return false
	}
	if p, ok := s.st.Principal(principal); !ok || p.GetUid() != g.Conn.GetPrincipalUid() {
		return false // an earlier principal's of the same name
	}
	if g.Token.GetRefreshToken() != "" {
		return true
	}
	exp := g.Token.GetExpiry()
	return g.Token.GetAccessToken() != "" && (exp == nil || s.now().Before(exp.AsTime()))
}

// approve finishes a consented authorization: through the upstream
// sign-in when the route needs the person's upstream grant and there is
// none, else by issuing the gateway's code at once.
func (s *Server) approve(w http.ResponseWriter, r *http.Request, sess *session, auth *storev1.OAuthAuthorization) {
	auth.Principal = sess.rec.GetPrincipal()
	s.confirmClient(r.Context(), auth.GetClientId())
	// The source of the tokens: the key the session signed in with, bound
	// to its principal's uid (session checked it just now).
	// An IdP sign-in's source is the provider, bound to the uid the
	// session recorded.
	auth.KeyId = sess.rec.GetKeyId()
	if idp := sess.rec.GetIdp(); idp != "" {
		auth.KeyId, auth.Idp, auth.PrincipalUid = "", idp, sess.rec.GetPrincipalUid()
	} else if k, ok := s.st.Key(auth.KeyId); ok {
		auth.PrincipalUid = k.GetPrincipalUid()
	}
	rd, ok := s.lookupRoute(auth.GetServer())
	if !ok {
		redirectError(w, r, auth.GetRedirectUri(), auth.GetState(), "invalid_target", "the server no longer exists")
		return
	}
	if rd.needsUpstreamSignin() && !s.usableGrant(auth.GetPrincipal(), auth.GetServer()) {
		s.startUpstream(w, r, sess, rd.server, auth)
		return
	}
	s.issueCode(w, r, auth)
}

// upstreamConfig is the oauth2 configuration of a server's upstream.
func upstreamConfig(pub string, srv *store.Server, scopes []string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     srv.Def.GetClientId(),
		ClientSecret: srv.Secrets.GetClientSecret(),
		Endpoint: oauth2.Endpoint{
			AuthURL:  srv.Def.GetAuthorizationUrl(),
			TokenURL: srv.Def.GetTokenUrl(),
		},
		RedirectURL: pub + "/oauth/callback",
		Scopes:      scopes,
	}
}

// startUpstream stores a single-use state bound to the browser session and
// redirects to the upstream authorization URL with PKCE. auth is nil when
// the flow started on the connections page.
func (s *Server) startUpstream(w http.ResponseWriter, r *http.Request, sess *session, srv *store.Server, auth *storev1.OAuthAuthorization) {
	ctx := r.Context()
	scopes := srv.Def.GetScopes()
	if auth != nil {
		scopes = auth.GetScopes()
	}
	fail := func(msg string) {
		if auth != nil {
			redirectError(w, r, auth.GetRedirectUri(), auth.GetState(), "server_error", msg)
			return
		}
		s.errorPage(w, r, http.StatusServiceUnavailable, "Cannot connect", "The gateway could not start the sign-in at this server. Try again later.")
	}
	if srv.Def.GetAuthorizationUrl() == "" || srv.Def.GetTokenUrl() == "" || srv.Def.GetClientId() == "" {
		fail("the server's upstream OAuth client is not configured")
		return
	}
	verifier := oauth2.GenerateVerifier()
	state := random(32)
	sum := store.HashKey(state)
	rec := &storev1.OAuthStateRecord{
		Session:       sess.id,
		Principal:     sess.rec.GetPrincipal(),
		Server:        srv.Def.GetName(),
		CodeVerifier:  verifier,
		Authorization: auth,
		ExpireTime:    timestamppb.New(s.now().Add(DefaultStateTTL)),
		Scopes:        scopes,
		Sha256:        sum[:],
	}
	if _, err := s.st.OAuthStates().Create(ctx, sum, rec, DefaultStateTTL); err != nil {
		s.log.ErrorContext(ctx, "store upstream state", "err", err)
		fail("try again in a moment")
		return
	}
	to := upstreamConfig(issuer(r), srv, scopes).AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, to, http.StatusFound)
}
