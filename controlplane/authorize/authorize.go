// Package authorize decides, from cached state only, what the data plane does
// with one MCP request: forward it with upstream credentials (ALLOW), answer
// 401 with a challenge (CHALLENGE), 403 (DENY) or 404 (NOT_FOUND). Callers
// learn which routes exist only by using them: without a usable credential
// every route is challenged alike, and with one, routes the principal is not
// granted are NOT_FOUND like missing ones. Decisions
// are data; an error means "could not decide" and the data plane answers 503.
package authorize

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Errors of Authorize besides those of GrantTokens and MachineTokens.
var (
	// ErrInvalidRequest: the request itself is unusable (bad public base URL,
	// no route).
	ErrInvalidRequest = errors.New("invalid authorize request")
	// ErrMisconfigured: the server's definition cannot produce an upstream
	// credential (e.g. a static auth mode without its secret).
	ErrMisconfigured = errors.New("server misconfigured")
)

// State is the cached state a decision reads; *store.Store implements it.
type State interface {
	Server(name string) (*store.Server, bool)
	Principal(name string) (*configv1.Principal, bool)
	KeyByHash(sum [32]byte) (*storev1.KeyRecord, bool)
	Key(id string) (*storev1.KeyRecord, bool)
	AccessToken(sum [32]byte) (*storev1.AccessTokenRecord, bool)
	GrantSource
}

// Fixed reasons, one per outcome (non-secret; for logs and bodies).
const (
	ReasonUnknownRoute          = "unknown route"
	ReasonNoCredential          = "no credential"
	ReasonMalformedAuth         = "malformed authorization header"
	ReasonUnknownKey            = "unknown api key"
	ReasonRevokedKey            = "revoked api key"
	ReasonExpiredKey            = "expired api key"
	ReasonUnknownToken          = "unknown access token"
	ReasonExpiredToken          = "expired access token"
	ReasonWrongAudience         = "access token issued for another resource"
	ReasonTokenSourceRevoked    = "access token's source revoked"
	ReasonUnknownPrincipal      = "credential of an unknown principal"
	ReasonConflictingPrincipals = "credentials of different principals"
	ReasonNotGranted            = "principal not granted this server"
	ReasonToolForbidden         = "tool not allowed on this server"
	ReasonNoGrant               = "no upstream grant"
	ReasonGrantUnusable         = "upstream grant unusable"
	ReasonPassthroughMissing    = "passthrough credential required"
	ReasonPassthroughInvalid    = "passthrough credential malformed"
	ReasonAllowed               = "allowed"
)

// RFC 6750 error and the fixed descriptions of a CHALLENGE for an unusable
// credential.
const (
	ErrorInvalidToken     = "invalid_token"
	DescMalformed         = "The Authorization header is not a usable Bearer credential."
	DescInvalidCredential = "The credential is unknown, revoked or expired."
	DescWrongAudience     = "The access token was not issued for this resource."
	DescConflicting       = "The presented credentials belong to different principals."
)

// Authorizer decides. Build it with New; it is safe for concurrent use.
type Authorizer struct {
	state   State
	grants  GrantTokens
	machine MachineTokens
	now     func() time.Time
}

// Option configures an Authorizer.
type Option func(*Authorizer)

// WithGrantTokens replaces the default StoreGrants (e.g. with a refreshing
// implementation).
func WithGrantTokens(g GrantTokens) Option { return func(a *Authorizer) { a.grants = g } }

// WithMachineTokens replaces the default in-memory ClientCredentials minter.
func WithMachineTokens(m MachineTokens) Option { return func(a *Authorizer) { a.machine = m } }

// WithClock sets the clock used for key, token and grant expiry.
func WithClock(now func() time.Time) Option { return func(a *Authorizer) { a.now = now } }

// New returns an Authorizer over state.
func New(state State, opts ...Option) *Authorizer {
	a := &Authorizer{state: state, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	if a.grants == nil {
		a.grants = StoreGrants{Source: state, Now: a.now}
	}
	if a.machine == nil {
		a.machine = &ClientCredentials{Now: a.now}
	}
	return a
}

// identity is what the presented credentials resolved to.
type identity struct {
	principal *configv1.Principal
	keyPrefix string
	keyID     string
}

// Authorize decides req. It returns an error only when it could not decide
// (invalid request, misconfigured server, token endpoint or grant store
// failure). Outcomes, in order of precedence:
//   - no credential: CHALLENGE without error; an unusable one (malformed
//     Authorization, unknown/revoked/expired key, unknown/expired access
//     token, one issued for another resource URL than <public base>/<route>/mcp,
//     one whose source key is no longer usable, key and token of different
//     principals, deleted or re-created principal): CHALLENGE with error
//     invalid_token. Either carries no scopes (the data plane names the
//     route's metadata URL), on every route, existing or not (UnknownRoute
//     tells the data plane);
//   - the route names no server, or one the principal is not granted:
//     NOT_FOUND (ReasonUnknownRoute, ReasonNotGranted);
//   - tools/call of a tool the server's tool lists forbid: DENY;
//   - oauth2 authorization_code without a usable grant: CHALLENGE without
//     error (the credential was fine; the client must sign in upstream);
//   - passthrough without the client's X-MCP-<Server>-Authorization value:
//     DENY with ReasonPassthroughMissing (a gateway challenge cannot obtain
//     that credential, so 401 would send the client into a useless sign-in);
//   - otherwise ALLOW with exactly the upstream headers of the auth mode,
//     then the server's static headers (sorted; the auth mode's header wins
//     a name clash).
//
// Every response carries the principal and key prefix when the credential
// resolved that far, and a fixed Reason.
func (a *Authorizer) Authorize(ctx context.Context, req *authorizev1.AuthorizeRequest) (*authorizev1.AuthorizeResponse, error) {
	base, err := wire.PublicBase(req.GetPublicBaseUrl())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	if req.GetRoute() == "" {
		return nil, fmt.Errorf("%w: no route", ErrInvalidRequest)
	}
	id, reason, desc := a.identify(req, base)
	srv, known := a.state.Server(req.GetRoute())
	challenge := func(id identity, reason, errCode, desc string, scopes []string) *authorizev1.AuthorizeResponse {
		return &authorizev1.AuthorizeResponse{
			Decision: authorizev1.Decision_DECISION_CHALLENGE,
			Challenge: &authorizev1.Challenge{
				Scopes:           scopes,
				Error:            errCode,
				ErrorDescription: desc,
			},
			Principal:    id.principal.GetName(),
			KeyPrefix:    id.keyPrefix,
			KeyId:        id.keyID,
			Reason:       reason,
			UnknownRoute: !known,
		}
	}
	if reason != "" {
		// Without a usable credential every route answers alike, existing
		// or not, and without the route's scopes: nothing tells a caller
		// which routes exist.
		if desc == "" {
			return challenge(id, reason, "", "", nil), nil
		}
		return challenge(id, reason, ErrorInvalidToken, desc, nil), nil
	}
	notFound := func(reason string) *authorizev1.AuthorizeResponse {
		return &authorizev1.AuthorizeResponse{
			Decision:     authorizev1.Decision_DECISION_NOT_FOUND,
			Principal:    id.principal.GetName(),
			KeyPrefix:    id.keyPrefix,
			KeyId:        id.keyID,
			Reason:       reason,
			UnknownRoute: !known,
		}
	}
	if !known {
		return notFound(ReasonUnknownRoute), nil
	}
	// A principal learns only the routes it may use: one it is not granted
	// answers like one that does not exist.
	if !Granted(id.principal, srv.Def.GetName()) {
		return notFound(ReasonNotGranted), nil
	}
	deny := func(reason string) *authorizev1.AuthorizeResponse {
		return &authorizev1.AuthorizeResponse{
			Decision:  authorizev1.Decision_DECISION_DENY,
			Deny:      &authorizev1.Deny{},
			Principal: id.principal.GetName(),
			KeyPrefix: id.keyPrefix,
			KeyId:     id.keyID,
			Reason:    reason,
		}
	}
	if req.GetJsonrpcMethod() == "tools/call" && !wire.ToolVisible(srv.Def.GetAllowedTools(), srv.Def.GetDisallowedTools(), req.GetToolName()) {
		return deny(ReasonToolForbidden), nil
	}
	allow := &authorizev1.Allow{
		UpstreamUrl:     srv.Def.GetUrl(),
		AllowedTools:    slices.Clone(srv.Def.GetAllowedTools()),
		DisallowedTools: slices.Clone(srv.Def.GetDisallowedTools()),
	}
	var authHeader, authValue string
	switch t, sec := srv.Def.GetAuthType(), srv.Secrets.GetAuthValue(); t {
	case configv1.AuthType_AUTH_TYPE_UNSPECIFIED, configv1.AuthType_AUTH_TYPE_NONE:
	case configv1.AuthType_AUTH_TYPE_API_KEY, configv1.AuthType_AUTH_TYPE_BEARER_TOKEN,
		configv1.AuthType_AUTH_TYPE_BASIC, configv1.AuthType_AUTH_TYPE_AUTHORIZATION,
		configv1.AuthType_AUTH_TYPE_TOKEN:
		if sec == "" {
			return nil, fmt.Errorf("server %q: %w: %s without auth_value", srv.Def.GetName(), ErrMisconfigured, t)
		}
		authHeader, authValue = staticAuth(t, sec)
	case configv1.AuthType_AUTH_TYPE_OAUTH2:
		switch srv.Def.GetOauth2Flow() {
		case configv1.OAuth2Flow_O_AUTH2_FLOW_CLIENT_CREDENTIALS:
			tok, err := a.machine.Token(ctx, srv)
			if err != nil {
				return nil, err
			}
			authHeader, authValue = "Authorization", "Bearer "+tok
		case configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE:
			if g, ok := a.state.Grant(id.principal.GetName(), srv.Def.GetName()); ok && g.Conn.GetPrincipalUid() != id.principal.GetUid() {
				// A grant of an earlier principal of the same name is not
				// this principal's: it must sign in upstream itself.
				return challenge(id, ReasonNoGrant, "", "", slices.Clone(srv.Def.GetScopes())), nil
			}
			tok, err := a.grants.Token(ctx, id.principal.GetName(), srv.Def.GetName())
			switch {
			case errors.Is(err, ErrNoGrant):
				return challenge(id, ReasonNoGrant, "", "", slices.Clone(srv.Def.GetScopes())), nil
			case errors.Is(err, ErrGrantUnusable):
				return challenge(id, ReasonGrantUnusable, "", "", slices.Clone(srv.Def.GetScopes())), nil
			case err != nil:
				return nil, err
			}
			authHeader, authValue = "Authorization", "Bearer "+tok
			allow.VaultGrant = true
		default:
			return nil, fmt.Errorf("server %q: %w: oauth2 flow %s", srv.Def.GetName(), ErrMisconfigured, srv.Def.GetOauth2Flow())
		}
	case configv1.AuthType_AUTH_TYPE_PASSTHROUGH:
		v := req.GetCredentials().GetPassthroughAuthorization()
		if v == "" {
			return deny(ReasonPassthroughMissing), nil
		}
		// Forwarded as sent: no control characters, nothing a transport
		// would trim.
		if !wire.ValidHeaderValue(v) || strings.TrimSpace(v) != v {
			return deny(ReasonPassthroughInvalid), nil
		}
		authHeader, authValue = "Authorization", v
	default:
		return nil, fmt.Errorf("server %q: %w: auth type %s", srv.Def.GetName(), ErrMisconfigured, t)
	}
	if authHeader != "" {
		allow.UpstreamHeaders = append(allow.UpstreamHeaders, &authorizev1.Header{Name: authHeader, Value: authValue})
	}
	static := srv.Secrets.GetStaticHeaders()
	names := make([]string, 0, len(static))
	for n := range static {
		// The auth mode's header wins over a static header of the same name.
		if authHeader == "" || !strings.EqualFold(n, authHeader) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		allow.UpstreamHeaders = append(allow.UpstreamHeaders, &authorizev1.Header{Name: n, Value: static[n]})
	}
	return &authorizev1.AuthorizeResponse{
		Decision:  authorizev1.Decision_DECISION_ALLOW,
		Allow:     allow,
		Principal: id.principal.GetName(),
		KeyPrefix: id.keyPrefix,
		KeyId:     id.keyID,
		Reason:    ReasonAllowed,
	}, nil
}

// identify resolves the presented credentials. A non-empty reason means
// CHALLENGE; desc is empty only when no credential was presented. base is
// the data plane's public base URL: an access token is accepted only for the
// resource URL <base>/<route>/mcp it was issued for, and only while the API
// key it was obtained with is usable (not revoked or expired, its principal
// not deleted or re-created).
func (a *Authorizer) identify(req *authorizev1.AuthorizeRequest, base string) (id identity, reason, desc string) {
	c := req.GetCredentials()
	if c.GetMalformedAuthorization() {
		return id, ReasonMalformedAuth, DescMalformed
	}
	if c.GetApiKey() == "" && c.GetBearerToken() == "" {
		return id, ReasonNoCredential, ""
	}
	now := a.now()
	var keyPrincipal, tokenPrincipal, keyUID, tokenUID string
	if k := c.GetApiKey(); k != "" {
		rec, ok := a.state.KeyByHash(store.HashKey(k))
		if !ok {
			return id, ReasonUnknownKey, DescInvalidCredential
		}
		id.keyPrefix, id.keyID = rec.GetKey().GetDisplayPrefix(), rec.GetKey().GetId()
		switch exp := rec.GetKey().GetExpireTime(); {
		case rec.GetKey().GetRevoked():
			return id, ReasonRevokedKey, DescInvalidCredential
		case exp != nil && !now.Before(exp.AsTime()):
			return id, ReasonExpiredKey, DescInvalidCredential
		}
		keyPrincipal, keyUID = rec.GetKey().GetPrincipal(), rec.GetPrincipalUid()
	}
	if t := c.GetBearerToken(); t != "" {
		rec, ok := a.state.AccessToken(store.HashKey(t))
		switch {
		case !ok:
			return id, ReasonUnknownToken, DescInvalidCredential
		case rec.GetExpireTime() == nil || !now.Before(rec.GetExpireTime().AsTime()):
			return id, ReasonExpiredToken, DescInvalidCredential
		case rec.GetRoute() != req.GetRoute() || rec.GetAudience() != wire.ResourceURL(base, req.GetRoute()):
			return id, ReasonWrongAudience, DescWrongAudience
		case !SourceUsable(a.state, rec.GetKeyId(), rec.GetPrincipal(), rec.GetPrincipalUid(), now):
			return id, ReasonTokenSourceRevoked, DescInvalidCredential
		}
		tokenPrincipal, tokenUID = rec.GetPrincipal(), rec.GetPrincipalUid()
	}
	if keyPrincipal != "" && tokenPrincipal != "" && (keyPrincipal != tokenPrincipal || keyUID != tokenUID) {
		return id, ReasonConflictingPrincipals, DescConflicting
	}
	name, uid := keyPrincipal, keyUID
	if name == "" {
		name, uid = tokenPrincipal, tokenUID
	}
	p, ok := a.state.Principal(name)
	if !ok || p.GetUid() != uid {
		return id, ReasonUnknownPrincipal, DescInvalidCredential
	}
	id.principal = p
	return id, "", ""
}

// SourceState is what SourceUsable reads; *store.Store implements it.
type SourceState interface {
	Key(id string) (*storev1.KeyRecord, bool)
	Principal(name string) (*configv1.Principal, bool)
}

// SourceUsable reports whether the API key keyID, from which a gateway
// token or sign-in session of the principal (name, uid) derives, is still
// usable at now: it exists, is neither revoked nor expired, was created for
// that principal and uid, and the principal still exists with that uid.
// Something derived from no key (issued before tokens recorded their
// source) is not usable. Each check is a cache lookup, so revoking the key,
// or deleting the principal, revokes everything derived from it as soon as
// the cache follows etcd.
func SourceUsable(st SourceState, keyID, principal, uid string, now time.Time) bool {
	if keyID == "" {
		return false
	}
	k, ok := st.Key(keyID)
	if !ok || k.GetKey().GetRevoked() || k.GetKey().GetPrincipal() != principal || k.GetPrincipalUid() != uid {
		return false
	}
	if exp := k.GetKey().GetExpireTime(); exp != nil && !now.Before(exp.AsTime()) {
		return false
	}
	p, ok := st.Principal(principal)
	return ok && p.GetUid() == uid
}

// staticAuth returns the header a static auth mode injects.
func staticAuth(t configv1.AuthType, v string) (name, value string) {
	switch t {
	case configv1.AuthType_AUTH_TYPE_API_KEY:
		return "X-API-Key", v
	case configv1.AuthType_AUTH_TYPE_BEARER_TOKEN:
		return "Authorization", "Bearer " + v
	case configv1.AuthType_AUTH_TYPE_BASIC:
		return "Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(v))
	case configv1.AuthType_AUTH_TYPE_TOKEN:
		return "Authorization", "token " + v
	default: // AUTH_TYPE_AUTHORIZATION
		return "Authorization", v
	}
}

// Granted reports whether p may use server ("*" grants every server).
func Granted(p *configv1.Principal, server string) bool {
	for _, s := range p.GetServers() {
		if s == "*" || s == server {
			return true
		}
	}
	return false
}
