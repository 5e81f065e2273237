package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// GrantJWTBearer is the RFC 7523 grant type the token endpoint accepts an
// Identity Assertion JWT Authorization Grant (ID-JAG) with: the MCP
// Enterprise-Managed Authorization extension.
const GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// TypIDJAG is the JOSE typ header of an ID-JAG.
const TypIDJAG = "oauth-id-jag+jwt"

// Limits of an ID-JAG.
const (
	// maxAssertionBytes bounds the assertion parameter.
	maxAssertionBytes = 8 << 10
	// idjagLeeway is the clock skew allowed on exp, nbf and iat.
	idjagLeeway = 30 * time.Second
	// maxIDJAGLifetime bounds exp-iat: an ID-JAG is short-lived, and its
	// jti record lives until it expires.
	maxIDJAGLifetime = time.Hour
)

// idjagAlgs are the signature algorithms an ID-JAG may use (never none,
// never HMAC: the provider's public keys verify it).
var idjagAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// The fixed invalid_grant answers for a refused ID-JAG; one per cause.
var (
	errIDJAGMalformed   = tokErr("invalid_grant", "the assertion is not a well-formed signed JWT")
	errIDJAGTyp         = tokErr("invalid_grant", "the assertion is not an ID-JAG (typ must be oauth-id-jag+jwt)")
	errIDJAGIssuer      = tokErr("invalid_grant", "the assertion's issuer is not a trusted identity provider")
	errIDJAGKID         = tokErr("invalid_grant", "the assertion's signing key is unknown to its issuer")
	errIDJAGSignature   = tokErr("invalid_grant", "the assertion's signature is invalid")
	errIDJAGAudience    = tokErr("invalid_grant", "the assertion is not for this authorization server (aud)")
	errIDJAGTime        = tokErr("invalid_grant", "the assertion is expired or not yet valid")
	errIDJAGClient      = tokErr("invalid_grant", "the assertion was issued to another client (client_id)")
	errIDJAGResource    = tokErr("invalid_grant", "the assertion's resource is not a route of this gateway")
	errIDJAGJTI         = tokErr("invalid_grant", "the assertion has no jti")
	errIDJAGReused      = tokErr("invalid_grant", "the assertion was already used")
	errIDJAGPrincipal   = tokErr("invalid_grant", "the person is not allowed to use this gateway")
	errIDJAGScope       = tokErr("invalid_scope", "the assertion's scope exceeds the route's scopes")
	errIDJAGUnavailable = &tokenError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "the identity provider could not be reached; try again in a moment"}
)

// idjagClaims are the claims of an ID-JAG the gateway reads.
type idjagClaims struct {
	jwt.Claims
	ClientID string `json:"client_id"`
	Resource any    `json:"resource"`
	Scope    string `json:"scope"`
	Email    string `json:"email"`
	// all are every signed claim, for the provider's groups claim.
	all map[string]any
}

// jwtBearer handles grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
// with an ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant, the
// MCP Enterprise-Managed Authorization extension): the client, already
// authenticated, presents an assertion its person's identity provider
// issued for one route of this gateway. No browser, no consent: the
// enterprise's IdP made that decision. The answer is an access token for
// the route and no refresh token, so every new token needs a fresh ID-JAG
// and the IdP's current policy applies to it.
func (s *Server) jwtBearer(r *http.Request, c *client, form url.Values) (*tokenResponse, *tokenError) {
	ctx := r.Context()
	raw := form.Get("assertion")
	if raw == "" {
		return nil, tokErr("invalid_request", "assertion is required")
	}
	if len(raw) > maxAssertionBytes {
		return nil, errIDJAGMalformed
	}
	in := idjagInput{raw: raw, base: issuer(r), clientID: c.id, now: s.now(), idps: idpDefs(s.st.IdentityProviders()),
		key: func(iss, kid string) (*jose.JSONWebKey, error) { return s.keys.key(ctx, iss, kid) }}
	cl, idp, server, terr := checkIDJAG(in)
	if terr != nil {
		if terr == errIDJAGUnavailable {
			s.log.WarnContext(ctx, "identity provider key set unavailable", "issuer", cl.Issuer)
		}
		return nil, terr
	}
	now := in.now
	// A server's route or an aggregate's (/mcp, a virtual server).
	rd, ok := s.lookupRoute(server)
	if !ok {
		return nil, errIDJAGResource
	}
	if cl.ID == "" || len(cl.ID) > 256 {
		return nil, errIDJAGJTI
	}
	scopes := rd.scopes
	if cl.Scope != "" {
		scopes = strings.Fields(cl.Scope)
		for _, sc := range scopes {
			if !slices.Contains(rd.scopes, sc) {
				return nil, errIDJAGScope
			}
		}
	}
	p, terr := s.assertedPrincipal(ctx, idp, cl)
	if terr != nil {
		return nil, terr
	}
	// Single use: the jti is recorded (create only) until the assertion
	// expires, plus the leeway it was accepted with.
	sum := store.HashKey(store.AssertionID(idp.GetIssuer(), cl.ID))
	ttl := cl.Expiry.Time().Sub(now) + idjagLeeway
	if _, err := s.st.UsedAssertions().Create(ctx, sum, &storev1.UsedAssertionRecord{IdentityProvider: idp.GetName(), Sha256: sum[:]}, ttl); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, errIDJAGReused
		}
		s.log.ErrorContext(ctx, "record used assertion", "err", err)
		return nil, errTokenUnavailable
	}
	// Like a sign-in, an assertion that carries the provider's groups claim
	// records the groups it asserts now (replacing that provider's earlier
	// assertion), so a person created by the assertion gets their groups'
	// grants at once and one who left a group loses its grants.
	if groups, ok := claimGroups(idp, cl.all); ok {
		if err := s.st.SetAssertedGroups(ctx, p.GetName(), idp.GetName(), groups, now); err != nil {
			s.log.ErrorContext(ctx, "record asserted groups", "err", err)
			return nil, errTokenUnavailable
		}
		// This replica's decisions see the groups before the token is used.
		_ = s.st.CatchUp(ctx)
	}
	// The family only lists the token for revocation; it outlives it by a
	// minute so that it never shortens the token.
	exp := now.Add(s.cfg.AccessTokenTTL + time.Minute)
	fam := &storev1.OAuthFamilyRecord{
		Principal:    p.GetName(),
		ClientId:     c.id,
		Server:       server,
		Scopes:       scopes,
		ExpireTime:   timestamppb.New(exp),
		PrincipalUid: p.GetUid(),
		Audience:     wire.ResourceURL(issuer(r), server),
		Idp:          idp.GetName(),
	}
	// No refresh token (see above): issue as for a client without the
	// refresh_token grant.
	noRefresh := *c
	noRefresh.grantTypes = slices.DeleteFunc(slices.Clone(c.grantTypes), func(g string) bool { return g == "refresh_token" })
	resp, terr := s.issueTokens(ctx, &noRefresh, random(16), fam, 0, scopes)
	code := "ok"
	if terr != nil {
		code = terr.code
	}
	_ = s.cfg.Audit.Admin(audit.Admin{Time: now, Principal: p.GetName(), Procedure: "oauth/token " + GrantJWTBearer, Object: "idp:" + idp.GetName() + " server:" + server + " client:" + c.id, Code: code})
	return resp, terr
}

// idjagInput is what checkIDJAG decides from.
type idjagInput struct {
	raw      string // the assertion
	base     string // the gateway's public base URL, its issuer
	clientID string // the authenticated client
	now      time.Time
	idps     []*configv1.IdentityProvider
	// key returns the public key of issuer iss with key id kid:
	// errUnknownKID when it has none, another error when its key set
	// cannot be fetched.
	key func(iss, kid string) (*jose.JSONWebKey, error)
}

// checkIDJAG verifies an ID-JAG and returns its claims, the provider that
// issued it and the server its resource names (by form: whether the server
// exists is the caller's check). It checks, in order: a compact JWS with an
// allowed algorithm, typ, a configured issuer trusted for ID-JAGs, the
// key id in that issuer's key set, the signature, aud = base, exp/iat/nbf
// with idjagLeeway and a lifetime of at most maxIDJAGLifetime, client_id,
// resource. A refusal is one of the fixed errIDJAG* errors (the claims are
// then those read so far, unverified).
func checkIDJAG(in idjagInput) (*idjagClaims, *configv1.IdentityProvider, string, *tokenError) {
	cl := new(idjagClaims)
	tok, err := jwt.ParseSigned(in.raw, idjagAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return cl, nil, "", errIDJAGMalformed
	}
	hdr := tok.Headers[0]
	if typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(strings.TrimPrefix(typ, "application/"), TypIDJAG) {
		return cl, nil, "", errIDJAGTyp
	}
	if err := tok.UnsafeClaimsWithoutVerification(cl); err != nil {
		return cl, nil, "", errIDJAGMalformed
	}
	var idp *configv1.IdentityProvider
	for _, p := range in.idps {
		if cl.Issuer != "" && p.GetTrustIdJag() && p.GetIssuer() == cl.Issuer {
			idp = p
			break
		}
	}
	if idp == nil {
		return cl, nil, "", errIDJAGIssuer
	}
	key, err := in.key(idp.GetIssuer(), hdr.KeyID)
	switch {
	case errors.Is(err, errUnknownKID):
		return cl, nil, "", errIDJAGKID
	case err != nil:
		return cl, nil, "", errIDJAGUnavailable
	}
	cl = new(idjagClaims)
	if err := tok.Claims(key.Key, cl, &cl.all); err != nil {
		return cl, nil, "", errIDJAGSignature
	}
	// The signed iss (the unverified one chose the key set).
	if cl.Issuer != idp.GetIssuer() {
		return cl, nil, "", errIDJAGIssuer
	}
	if !cl.Audience.Contains(in.base) {
		return cl, nil, "", errIDJAGAudience
	}
	if cl.Expiry == nil || cl.IssuedAt == nil ||
		cl.ValidateWithLeeway(jwt.Expected{Time: in.now}, idjagLeeway) != nil ||
		cl.Expiry.Time().Sub(cl.IssuedAt.Time()) > maxIDJAGLifetime {
		return cl, nil, "", errIDJAGTime
	}
	if cl.ClientID == "" || cl.ClientID != in.clientID {
		return cl, nil, "", errIDJAGClient
	}
	res, _ := cl.Resource.(string)
	server, ok := wire.ResourceServer(in.base, res)
	if !ok {
		return cl, nil, "", errIDJAGResource
	}
	return cl, idp, server, nil
}

// assertedPrincipal maps the verified claims of an assertion from idp to a
// principal: the claim idp.principal_claim (default email) names it; when
// idp.allowed_domains is set the email's domain must be one of them; an
// unknown person is created (kind user, no own servers) only when
// idp.create_principals is set. A claim value that is not a valid
// principal name (an email address is not) is mapped by PrincipalName.
func (s *Server) assertedPrincipal(ctx context.Context, idp *configv1.IdentityProvider, cl *idjagClaims) (*configv1.Principal, *tokenError) {
	claim := idp.GetPrincipalClaim()
	if claim == "" {
		claim = "email"
	}
	var val string
	switch claim {
	case "email":
		val = cl.Email
	case "sub":
		val = cl.Subject
	default:
		// Only sub and email are read from an ID-JAG.
		return nil, errIDJAGPrincipal
	}
	if doms := idp.GetAllowedDomains(); len(doms) > 0 {
		at := strings.LastIndexByte(cl.Email, '@')
		if at < 1 || !slices.ContainsFunc(doms, func(d string) bool { return strings.EqualFold(d, cl.Email[at+1:]) }) {
			return nil, errIDJAGPrincipal
		}
	}
	name, ok := PrincipalName(val)
	if !ok {
		return nil, errIDJAGPrincipal
	}
	if p, ok := s.st.Principal(name); ok {
		// As at an IdP sign-in (idpPrincipal): different claims may map to
		// one name, so a principal whose display_name is another claim is
		// someone else's; a service account is never asserted as a person.
		if p.GetUid() == "" || p.GetKind() == configv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT ||
			(p.GetDisplayName() != "" && !strings.EqualFold(p.GetDisplayName(), val)) {
			return nil, errIDJAGPrincipal
		}
		return p, nil
	}
	if !idp.GetCreatePrincipals() {
		return nil, errIDJAGPrincipal
	}
	p := &configv1.Principal{Name: name, Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: configv1.Role_ROLE_MEMBER, DisplayName: val}
	rev, err := s.st.PutPrincipal(ctx, p, 0)
	if err != nil && !errors.Is(err, store.ErrConflict) {
		s.log.ErrorContext(ctx, "create principal", "err", err)
		return nil, errTokenUnavailable
	}
	if err == nil {
		if err := s.st.WaitRevision(ctx, rev); err != nil {
			return nil, errTokenUnavailable
		}
		s.log.InfoContext(ctx, "principal created at first assertion", "principal", name, "idp", idp.GetName())
	}
	// Created now or concurrently by another request: read it back.
	if p, ok := s.st.Principal(name); ok && p.GetUid() != "" {
		return p, nil
	}
	return nil, errTokenUnavailable
}

// idpDefs are the public definitions of the configured providers.
func idpDefs(idps []*store.IdentityProvider) []*configv1.IdentityProvider {
	out := make([]*configv1.IdentityProvider, len(idps))
	for i, p := range idps {
		out[i] = p.Def
	}
	return out
}
