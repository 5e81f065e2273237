package oidcdemo

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	httphelper "github.com/zitadel/oidc/v3/pkg/http"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Identity Assertion JWT Authorization Grant (ID-JAG) issuance by RFC 8693
// token exchange at the provider's token endpoint
// (draft-ietf-oauth-identity-assertion-authz-grant, the MCP
// Enterprise-Managed Authorization extension).
const (
	// GrantTokenExchange is the RFC 8693 grant type.
	GrantTokenExchange = string(oidc.GrantTypeTokenExchange)
	// TokenTypeIDJAG is the requested_token_type (and issued_token_type)
	// of an ID-JAG.
	TokenTypeIDJAG = "urn:ietf:params:oauth:token-type:id-jag"
	// TokenTypeIDToken is the only subject_token_type accepted: an ID
	// token this provider issued to the requesting client.
	TokenTypeIDToken = string(oidc.IDTokenType)
	// TypIDJAG is the JOSE typ header of an ID-JAG.
	TypIDJAG = "oauth-id-jag+jwt"
	// IDJAGLifetime is how long an issued ID-JAG is valid.
	IDJAGLifetime = 5 * time.Minute
	// maxExchangeBody bounds the token exchange request.
	maxExchangeBody = 64 << 10
)

// The fixed answers of a refused ID-JAG exchange.
var (
	errJAGForm        = &exchangeError{http.StatusBadRequest, "invalid_request", "the request is not a well-formed form"}
	errJAGClient      = &exchangeError{http.StatusUnauthorized, "invalid_client", "client authentication failed"}
	errJAGSubjectType = &exchangeError{http.StatusBadRequest, "invalid_request", "subject_token_type must be " + TokenTypeIDToken}
	errJAGSubject     = &exchangeError{http.StatusBadRequest, "invalid_grant", "subject_token is not a valid ID token of this provider"}
	errJAGExpired     = &exchangeError{http.StatusBadRequest, "invalid_grant", "subject_token has expired"}
	errJAGOtherClient = &exchangeError{http.StatusBadRequest, "invalid_grant", "subject_token was issued to another client"}
	errJAGPerson      = &exchangeError{http.StatusBadRequest, "invalid_grant", "the subject is not a person of this provider"}
	errJAGActor       = &exchangeError{http.StatusBadRequest, "invalid_request", "actor_token is not supported"}
	errJAGAudience    = &exchangeError{http.StatusBadRequest, "invalid_target", "audience must be one absolute URL: the authorization server's issuer"}
	errJAGResource    = &exchangeError{http.StatusBadRequest, "invalid_target", "resource must be one absolute URL"}
	errJAGUnavailable = &exchangeError{http.StatusServiceUnavailable, "temporarily_unavailable", "the ID-JAG could not be signed"}
)

// exchangeError is an OAuth error answer (RFC 6749 section 5.2).
type exchangeError struct {
	status int
	code   string
	desc   string
}

// idjagIssuer answers token exchanges for an ID-JAG; the provider's token
// endpoint serves every other token request. zitadel/oidc's op supports
// RFC 8693 (op.TokenExchangeStorage), but only for access, refresh and ID
// tokens: it refuses requested_token_type id-jag (oidc.TokenType
// IsSupported) and cannot put a typ header other than JWT on what it signs.
// So this small handler sits in front of the token endpoint and uses the
// op's parts: its form decoder, its client authentication, its ID token
// verifier (signature with the provider's own keys, issuer) and its
// signing key, the one the provider's JWKS publishes.
type idjagIssuer struct {
	issuer   string
	provider *op.Provider
	st       *groupStorage
	log      *slog.Logger
	now      func() time.Time
}

// isIDJAGRequest reports whether a token request asks for an ID-JAG by
// token exchange (after r.ParseForm).
func isIDJAGRequest(r *http.Request) bool {
	return r.PostForm.Get("grant_type") == GrantTokenExchange && r.PostForm.Get("requested_token_type") == TokenTypeIDJAG
}

// tokenEndpoint routes a token request: ID-JAG exchanges here, the rest to
// the provider.
func (x *idjagIssuer) tokenEndpoint(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxExchangeBody)
	if err := r.ParseForm(); err != nil {
		x.fail(w, r, errJAGForm)
		return
	}
	if !isIDJAGRequest(r) {
		x.provider.ServeHTTP(w, r)
		return
	}
	resp, e := x.exchange(r.WithContext(op.ContextWithIssuer(r.Context(), x.issuer)))
	if e != nil {
		x.fail(w, r, e)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httphelper.MarshalJSON(w, resp)
}

// exchange checks the request and issues the ID-JAG: the client
// authenticates (basic or post), subject_token is an unexpired ID token of
// this provider issued to that client for a known person, audience names
// the authorization server (its issuer) and resource the protected
// resource, both one absolute URL; scope is passed on as asked (the
// authorization server decides what it grants).
func (x *idjagIssuer) exchange(r *http.Request) (*oidc.TokenExchangeResponse, *exchangeError) {
	ctx := r.Context()
	req, id, secret, err := op.ParseTokenExchangeRequest(r, x.provider.Decoder())
	if err != nil {
		return nil, errJAGForm
	}
	if id == "" {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" || secret == "" {
		return nil, errJAGClient
	}
	client, err := op.AuthorizeTokenExchangeClient(ctx, id, secret, x.provider)
	if err != nil {
		return nil, errJAGClient
	}
	if string(req.SubjectTokenType) != TokenTypeIDToken {
		return nil, errJAGSubjectType
	}
	if req.ActorToken != "" || req.ActorTokenType != "" {
		return nil, errJAGActor
	}
	claims, err := op.VerifyIDTokenHint[*oidc.IDTokenClaims](ctx, req.SubjectToken, x.provider.IDTokenHintVerifier(ctx))
	var expired op.IDTokenHintExpiredError
	switch {
	case errors.As(err, &expired):
		return nil, errJAGExpired
	case err != nil:
		return nil, errJAGSubject
	}
	if !slices.Contains(claims.Audience, client.GetID()) {
		return nil, errJAGOtherClient
	}
	user := x.st.users.GetUserByID(claims.Subject)
	if user == nil {
		return nil, errJAGPerson
	}
	if len(req.Audience) != 1 || !absoluteURL(req.Audience[0]) {
		return nil, errJAGAudience
	}
	if len(req.Resource) != 1 || !absoluteURL(req.Resource[0]) {
		return nil, errJAGResource
	}
	key, err := x.st.SigningKey(ctx)
	if err != nil {
		x.log.ErrorContext(ctx, "oidcdemo: signing key", "err", err)
		return nil, errJAGUnavailable
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: key.SignatureAlgorithm(), Key: &jose.JSONWebKey{Key: key.Key(), KeyID: key.ID()}},
		(&jose.SignerOptions{}).WithType(TypIDJAG))
	if err != nil {
		x.log.ErrorContext(ctx, "oidcdemo: signer", "err", err)
		return nil, errJAGUnavailable
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	now := x.now()
	out := idjagClaims{
		Claims: jwt.Claims{
			Issuer: x.issuer, Subject: claims.Subject, Audience: jwt.Audience{req.Audience[0]}, ID: hex.EncodeToString(jti),
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(IDJAGLifetime)),
		},
		ClientID: client.GetID(), Resource: req.Resource[0], Scope: req.Scopes.String(),
		Email: user.Email, EmailVerified: user.EmailVerified, Groups: x.st.groupsOf(claims.Subject),
	}
	jag, err := jwt.Signed(signer).Claims(out).Serialize()
	if err != nil {
		x.log.ErrorContext(ctx, "oidcdemo: sign ID-JAG", "err", err)
		return nil, errJAGUnavailable
	}
	x.log.InfoContext(ctx, "oidcdemo: ID-JAG issued", "sub", claims.Subject, "client_id", client.GetID(), "aud", req.Audience[0], "resource", req.Resource[0])
	return &oidc.TokenExchangeResponse{
		AccessToken: jag, IssuedTokenType: oidc.TokenType(TokenTypeIDJAG), TokenType: "N_A",
		ExpiresIn: uint64(IDJAGLifetime / time.Second), Scopes: req.Scopes,
	}, nil
}

// idjagClaims are the claims of an issued ID-JAG.
type idjagClaims struct {
	jwt.Claims
	ClientID      string   `json:"client_id"`
	Resource      string   `json:"resource"`
	Scope         string   `json:"scope,omitempty"`
	Email         string   `json:"email"`
	EmailVerified bool     `json:"email_verified"`
	Groups        []string `json:"groups"`
}

// fail writes a fixed OAuth error answer.
func (x *idjagIssuer) fail(w http.ResponseWriter, r *http.Request, e *exchangeError) {
	x.log.InfoContext(r.Context(), "oidcdemo: ID-JAG exchange refused", "error", e.code, "description", e.desc)
	w.Header().Set("Cache-Control", "no-store")
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="oidcdemo"`)
	}
	httphelper.MarshalJSONWithStatus(w, map[string]string{"error": e.code, "error_description": e.desc}, e.status)
}

func absoluteURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.Fragment == ""
}
