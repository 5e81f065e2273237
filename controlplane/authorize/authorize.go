// Package authorize decides, purely, what the data plane does with one MCP
// request: a function of a state snapshot (State), a clock reading and the
// request, with no network, no etcd and no token minting. The outcome is
// forward it with upstream credentials (ALLOW), answer 401 with a challenge
// (CHALLENGE), 403 (DENY) or 404 (NOT_FOUND). An ALLOW that needs an upstream
// credential the gateway must first obtain (a client_credentials token, a
// vault grant's access token) says so (Decision.Need); the Authorize handler
// obtains it with controlplane/grants and completes the response. Callers
// learn which routes exist only by using them: without a usable credential
// every route is challenged alike, and with one, routes the principal is not
// granted are NOT_FOUND like missing ones. Decisions are data; an error means
// "could not decide" and the data plane answers 503.
package authorize

import (
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

// Errors of Decide: it could not decide.
var (
	// ErrInvalidRequest: the request itself is unusable (bad public base URL,
	// no route).
	ErrInvalidRequest = errors.New("invalid authorize request")
	// ErrMisconfigured: the server's definition cannot produce an upstream
	// credential (e.g. a static auth mode without its secret). It is
	// deterministic: asking again gives the same answer until an admin fixes
	// the definition.
	ErrMisconfigured = errors.New("server misconfigured")
)

// State is the cached state a decision reads; *store.Store implements it.
type State interface {
	Server(name string) (*store.Server, bool)
	Principal(name string) (*configv1.Principal, bool)
	KeyByHash(sum [32]byte) (*storev1.KeyRecord, bool)
	Key(id string) (*storev1.KeyRecord, bool)
	AccessToken(sum [32]byte) (*storev1.AccessTokenRecord, bool)
	Grant(principal, server string) (*store.Grant, bool)
	GroupState
	PolicyState
}

// GroupState looks groups up; *store.Store implements it.
type GroupState interface {
	Group(name string) (*configv1.Group, bool)
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

// Need is the upstream credential an ALLOW still needs.
type Need int

// Needs of a Decision.
const (
	// NeedNothing: Response is complete.
	NeedNothing Need = iota
	// NeedClientCredentials: a client_credentials token of Server.
	NeedClientCredentials
	// NeedVaultGrant: Principal's vault grant for Server (refreshed when
	// needed); without a usable one the answer is a CHALLENGE (Challenge).
	NeedVaultGrant
	// NeedTokenExchange: an upstream token for Server obtained on
	// Principal's behalf by exchanging the person's identity provider token
	// (RFC 8693); without a usable one the answer is a CHALLENGE
	// (Challenge), the person signs in with the IdP again.
	NeedTokenExchange
)

// Decision is the outcome of Decide. With NeedNothing, Response is the
// answer. Otherwise Response is an ALLOW without its upstream credential:
// complete it with Allow once obtained, or answer Challenge(reason) when the
// principal has no usable vault grant.
type Decision struct {
	Response *authorizev1.AuthorizeResponse
	Need     Need
	// Server is the route's server (set with every Need).
	Server *store.Server
	// Principal is the resolved principal's name (set with every Need).
	Principal string

	// Members are the per-member decisions of an aggregate route's ALLOW,
	// in the order of Response.Aggregate.Members: each is completed like a
	// server route's decision and its response becomes that member's
	// decision (grants.Obtainer.Complete).
	Members []Decision
	// Omitted names aggregate members left out because their decision
	// could not be made (a misconfigured server), for logs.
	Omitted []string

	// What Challenge builds the sign-in CHALLENGE from.
	base, route string
	id          identity
	// connect is the gateway page where the person connects Server (set
	// on aggregate members): Challenge names it.
	connect string
}

// Allow completes d's ALLOW with the obtained bearer token (its
// Authorization header first, then the static headers) and returns it. It
// must only be called once, and only when d.Need is not NeedNothing.
func (d Decision) Allow(token string) *authorizev1.AuthorizeResponse {
	a := d.Response.GetAllow()
	headers := make([]*authorizev1.Header, 0, len(a.GetUpstreamHeaders())+1)
	headers = append(headers, &authorizev1.Header{Name: "Authorization", Value: "Bearer " + token})
	a.UpstreamHeaders = append(headers, a.GetUpstreamHeaders()...)
	return d.Response
}

// Challenge returns the CHALLENGE of a NeedVaultGrant decision whose grant is
// missing or unusable, with reason (ReasonNoGrant or ReasonGrantUnusable):
// the credential was fine, the principal must sign in upstream, with the
// server's scopes.
func (d Decision) Challenge(reason string) *authorizev1.AuthorizeResponse {
	r := challengeOf(d.base, d.route, true, d.id, reason, "", "", slices.Clone(d.Server.Def.GetScopes()))
	if d.Need == NeedVaultGrant {
		r.Challenge.ConnectUrl = d.connect
	}
	return r
}

// challengeOf builds a CHALLENGE for route under base.
func challengeOf(base, route string, known bool, id identity, reason, errCode, desc string, scopes []string) *authorizev1.AuthorizeResponse {
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

// identity is what the presented credentials resolved to.
type identity struct {
	principal *configv1.Principal
	keyPrefix string
	keyID     string
	// scoped: the request is authorized by a gateway access token alone
	// (no API key: keys are not scoped), carrying scopes.
	scoped bool
	scopes []string
}

// Decide decides req over the snapshot st at now. It returns an error only
// when it could not decide (invalid request, misconfigured server).
// Outcomes, in order of precedence:
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
//   - tools/call, resources/read or prompts/get of a name that
//     api/wire.Visible hides (the server's tool lists, then the policy
//     rules compiled for the principal and server: deny wins, an allow
//     restricts; docs/policy.md): DENY naming the rule (RuleId); every
//     ALLOW carries the compiled rules (Allow.Visibility) for list
//     filtering;
//   - tools/call of a tool the server's tool lists forbid: DENY;
//   - tools/call of a tool whose changed definition the server blocks, or
//     with an access token lacking a scope the tool needs (tool_scopes;
//     DENY with InsufficientScope), or whose upstream grant lacks an
//     upstream scope it needs (CHALLENGE): see stepUp;
//   - oauth2 authorization_code with a grant of an earlier principal of the
//     same name: CHALLENGE without error (ReasonNoGrant); otherwise ALLOW
//     needing the vault grant (NeedVaultGrant; without a usable one the
//     handler answers the CHALLENGE without error: the credential was fine,
//     the client must sign in upstream);
//   - oauth2 client_credentials: ALLOW needing a minted token
//     (NeedClientCredentials);
//   - passthrough without the client's X-MCP-<Server>-Authorization value:
//     DENY with ReasonPassthroughMissing, rule wire.RuleServerPassthrough (a gateway challenge cannot obtain
//     that credential, so 401 would send the client into a useless sign-in);
//   - otherwise ALLOW with exactly the upstream headers of the auth mode,
//     then the server's static headers (sorted; the auth mode's header wins
//     a name clash).
//
// Every response carries the principal and key prefix when the credential
// resolved that far, and a fixed Reason.
func Decide(st State, now time.Time, req *authorizev1.AuthorizeRequest) (Decision, error) {
	base, err := wire.PublicBase(req.GetPublicBaseUrl())
	if err != nil {
		return Decision{}, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	root := req.GetRootAggregate()
	switch {
	case req.GetRoute() == "" && !root:
		return Decision{}, fmt.Errorf("%w: no route", ErrInvalidRequest)
	case req.GetRoute() != "" && root:
		return Decision{}, fmt.Errorf("%w: root aggregate with a route", ErrInvalidRequest)
	}
	id, reason, desc := identify(st, now, req, base)
	if reason != "" {
		_, known := st.Server(req.GetRoute())
		// Without a usable credential every route answers alike, existing
		// or not, and without the route's scopes: nothing tells a caller
		// which routes exist.
		if desc == "" {
			return Decision{Response: challengeOf(base, req.GetRoute(), known, id, reason, "", "", nil)}, nil
		}
		return Decision{Response: challengeOf(base, req.GetRoute(), known, id, reason, ErrorInvalidToken, desc, nil)}, nil
	}
	return decide(st, req, base, id, nil)
}

// ErrUnknownPrincipal: Explain was asked about a principal that does not
// exist.
var ErrUnknownPrincipal = errors.New("unknown principal")

// Explain decides req (route, JSON-RPC method and tool/resource/prompt;
// its credentials are ignored) as if the principal called principal had
// presented a usable credential, and records every step in tr. It is as
// pure as Decide: nothing is minted, refreshed or written; an ALLOW that
// needs an upstream credential is returned with its Need unmet (the
// caller tells whether the grant exists).
func Explain(st State, principal string, req *authorizev1.AuthorizeRequest, tr *Trace) (Decision, error) {
	if req.GetRoute() == "" {
		return Decision{}, fmt.Errorf("%w: no route", ErrInvalidRequest)
	}
	p, ok := st.Principal(principal)
	if !ok {
		return Decision{}, ErrUnknownPrincipal
	}
	return decide(st, req, "", identity{principal: p}, tr)
}

// decide is Decide for an identified principal, recording its steps in tr
// (nil on the hot path).
func decide(st State, req *authorizev1.AuthorizeRequest, base string, id identity, tr *Trace) (Decision, error) {
	root := req.GetRootAggregate()
	srv, known := st.Server(req.GetRoute())
	var vs *configv1.VirtualServer
	as, aggregates := st.(AggregateState)
	switch {
	case root:
		known = aggregates
	case !known && aggregates:
		vs, known = as.VirtualServer(req.GetRoute())
	}
	done := func(r *authorizev1.AuthorizeResponse) (Decision, error) { return Decision{Response: r}, nil }
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
		tr.Add(StepGrant, req.GetRoute(), "no such server")
		return done(notFound(ReasonUnknownRoute))
	}
	if root || vs != nil {
		// A principal learns only the aggregates it may use: the root
		// one when it is granted any server, a virtual server when it is
		// granted that virtual server.
		if vs != nil && !Granted(st, id.principal, vs.GetName()) {
			return done(notFound(ReasonNotGranted))
		}
		d, granted, err := decideAggregate(st, as, base, id, vs, req)
		if err == nil && !granted {
			return done(notFound(ReasonNotGranted))
		}
		return d, err
	}
	// A principal learns only the routes it may use: one it is not granted
	// answers like one that does not exist.
	traceGrant(tr, st, id.principal, srv.Def.GetName())
	if !Granted(st, id.principal, srv.Def.GetName()) {
		return done(notFound(ReasonNotGranted))
	}
	return decideServer(st, base, id, srv, "", req, tr)
}

// decideServer is the decision for server srv once the principal (id) is
// known to be granted it: a server route's, and each member's of an
// aggregate route (with req's tool or prompt name the upstream's).
//
// via is the virtual server the request came through ("" otherwise): the
// policy rules naming it apply to its members too, beside those naming
// the member server.
func decideServer(st State, base string, id identity, srv *store.Server, via string, req *authorizev1.AuthorizeRequest, tr *Trace) (Decision, error) {
	done := func(r *authorizev1.AuthorizeResponse) (Decision, error) { return Decision{Response: r}, nil }
	challenge := func(id identity, reason, errCode, desc string, scopes []string) *authorizev1.AuthorizeResponse {
		return challengeOf(base, srv.Def.GetName(), true, id, reason, errCode, desc, scopes)
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
	// Policies: compiled for this principal and server, carried by the
	// ALLOW for list filtering, and decided by the same function for calls.
	rules := st.PoliciesFor(srv.Def.GetName())
	memoKey := srv.Def.GetName()
	if via != "" {
		rules = unionRules(rules, st.PoliciesFor(via))
		memoKey += "\x00via\x00" + via
	}
	var groups []string
	if len(rules) > 0 || tr != nil {
		groups = EffectiveGroups(st, id.principal)
	}
	var visibility []*authorizev1.VisibilityRule
	if len(rules) > 0 {
		visibility = st.CompiledVisibility(memoKey, id.principal.GetName(), groups, func() []*authorizev1.VisibilityRule {
			return CompileVisibility(rules, id.principal.GetName(), groups)
		})
	}
	allow := &authorizev1.Allow{
		UpstreamUrl:             srv.Def.GetUrl(),
		AllowedTools:            slices.Clone(srv.Def.GetAllowedTools()),
		DisallowedTools:         slices.Clone(srv.Def.GetDisallowedTools()),
		Visibility:              visibility,
		ToolPinning:             toolPinning(st, srv.Def),
		UpstreamProtocolVersion: srv.Def.GetProtocolVersion(),
	}
	if kind, name, ok := callTarget(req); ok {
		traceRules(tr, rules, srv.Def, id.principal.GetName(), groups, kind, name)
		if visible, rule := wire.Visible(allow.GetAllowedTools(), allow.GetDisallowedTools(), allow.GetVisibility(), kind, name); !visible {
			r := deny(denyReason(allow.GetVisibility(), rule))
			r.RuleId = rule
			return done(r)
		}
	}
	// Scopes after policy: a refused tool is not worth a step-up.
	if req.GetJsonrpcMethod() == "tools/call" {
		if r := stepUp(st, srv, id, req.GetToolName(), tr, deny, challenge); r != nil {
			return done(r)
		}
	}
	var authHeader, authValue string
	need := NeedNothing
	switch t, sec := srv.Def.GetAuthType(), srv.Secrets.GetAuthValue(); t {
	case configv1.AuthType_AUTH_TYPE_UNSPECIFIED, configv1.AuthType_AUTH_TYPE_NONE:
		tr.Add(StepAuth, "none", "no upstream credential")
	case configv1.AuthType_AUTH_TYPE_API_KEY, configv1.AuthType_AUTH_TYPE_BEARER_TOKEN,
		configv1.AuthType_AUTH_TYPE_BASIC, configv1.AuthType_AUTH_TYPE_AUTHORIZATION,
		configv1.AuthType_AUTH_TYPE_TOKEN:
		if sec == "" {
			return Decision{}, fmt.Errorf("server %q: %w: %s without auth_value", srv.Def.GetName(), ErrMisconfigured, t)
		}
		authHeader, authValue = staticAuth(t, sec)
		tr.Add(StepAuth, authModeName(t), "static credential configured")
	case configv1.AuthType_AUTH_TYPE_OAUTH2:
		switch srv.Def.GetOauth2Flow() {
		case configv1.OAuth2Flow_O_AUTH2_FLOW_CLIENT_CREDENTIALS:
			authHeader, need = "Authorization", NeedClientCredentials
			tr.Add(StepAuth, "oauth2 client_credentials", "machine token minted per call")
		case configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE:
			if g, ok := st.Grant(id.principal.GetName(), srv.Def.GetName()); ok && g.Conn.GetPrincipalUid() != id.principal.GetUid() {
				// A grant of an earlier principal of the same name is not
				// this principal's: it must sign in upstream itself.
				tr.Add(StepAuth, "oauth2 authorization_code", "vault grant belongs to an earlier principal of this name")
				return done(challengeOf(base, srv.Def.GetName(), true, id, ReasonNoGrant, "", "", slices.Clone(srv.Def.GetScopes())))
			}
			authHeader, need = "Authorization", NeedVaultGrant
			allow.VaultGrant = true
		case configv1.OAuth2Flow_O_AUTH2_FLOW_TOKEN_EXCHANGE:
			authHeader, need = "Authorization", NeedTokenExchange
		default:
			return Decision{}, fmt.Errorf("server %q: %w: oauth2 flow %s", srv.Def.GetName(), ErrMisconfigured, srv.Def.GetOauth2Flow())
		}
	case configv1.AuthType_AUTH_TYPE_PASSTHROUGH:
		v := req.GetCredentials().GetPassthroughAuthorization()
		tr.Add(StepAuth, "passthrough", "the client's own X-MCP-"+srv.Def.GetName()+"-Authorization is forwarded")
		if v == "" {
			r := deny(ReasonPassthroughMissing)
			r.RuleId = wire.RuleServerPassthrough
			return done(r)
		}
		// Forwarded as sent: no control characters, nothing a transport
		// would trim.
		if !wire.ValidHeaderValue(v) || strings.TrimSpace(v) != v {
			r := deny(ReasonPassthroughInvalid)
			r.RuleId = wire.RuleServerPassthrough
			return done(r)
		}
		authHeader, authValue = "Authorization", v
	default:
		return Decision{}, fmt.Errorf("server %q: %w: auth type %s", srv.Def.GetName(), ErrMisconfigured, t)
	}
	if authHeader != "" && need == NeedNothing {
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
	d := Decision{Response: &authorizev1.AuthorizeResponse{
		Decision:  authorizev1.Decision_DECISION_ALLOW,
		Allow:     allow,
		Principal: id.principal.GetName(),
		KeyPrefix: id.keyPrefix,
		KeyId:     id.keyID,
		Reason:    ReasonAllowed,
	}, Need: need}
	if need != NeedNothing {
		d.Server, d.Principal = srv, id.principal.GetName()
		d.base, d.route, d.id = base, srv.Def.GetName(), id
	}
	return d, nil
}

// identify resolves the presented credentials. A non-empty reason means
// CHALLENGE; desc is empty only when no credential was presented. base is
// the data plane's public base URL: an access token is accepted only for the
// resource URL <base>/<route>/mcp it was issued for, and only while the API
// key it was obtained with is usable (not revoked or expired, its principal
// not deleted or re-created).
func identify(st State, now time.Time, req *authorizev1.AuthorizeRequest, base string) (id identity, reason, desc string) {
	c := req.GetCredentials()
	if c.GetMalformedAuthorization() {
		return id, ReasonMalformedAuth, DescMalformed
	}
	if c.GetApiKey() == "" && c.GetBearerToken() == "" {
		return id, ReasonNoCredential, ""
	}
	var keyPrincipal, tokenPrincipal, keyUID, tokenUID string
	var tokenScopes []string
	if k := c.GetApiKey(); k != "" {
		rec, ok := st.KeyByHash(store.HashKey(k))
		if !ok {
			return id, ReasonUnknownKey, DescInvalidCredential
		}
		id.keyPrefix, id.keyID = rec.GetKey().GetDisplayPrefix(), rec.GetKey().GetId()
		// An orphaned key falls through: its principal is checked below,
		// after a conflict with a token's principal.
		switch _, state := store.KeyStatus(st, rec, now); state {
		case store.KeyRevoked:
			return id, ReasonRevokedKey, DescInvalidCredential
		case store.KeyExpired:
			return id, ReasonExpiredKey, DescInvalidCredential
		}
		keyPrincipal, keyUID = rec.GetKey().GetPrincipal(), rec.GetPrincipalUid()
	}
	if t := c.GetBearerToken(); t != "" {
		rec, ok := st.AccessToken(store.HashKey(t))
		switch {
		case !ok:
			return id, ReasonUnknownToken, DescInvalidCredential
		case rec.GetExpireTime() == nil || !now.Before(rec.GetExpireTime().AsTime()):
			return id, ReasonExpiredToken, DescInvalidCredential
		case rec.GetRoute() != req.GetRoute() || rec.GetAudience() != wire.ResourceURL(base, req.GetRoute()):
			return id, ReasonWrongAudience, DescWrongAudience
		case !TokenSourceUsable(st, rec.GetKeyId(), rec.GetIdp(), rec.GetPrincipal(), rec.GetPrincipalUid(), now):
			return id, ReasonTokenSourceRevoked, DescInvalidCredential
		}
		tokenPrincipal, tokenUID = rec.GetPrincipal(), rec.GetPrincipalUid()
		tokenScopes = rec.GetScopes()
	}
	if keyPrincipal != "" && tokenPrincipal != "" && (keyPrincipal != tokenPrincipal || keyUID != tokenUID) {
		return id, ReasonConflictingPrincipals, DescConflicting
	}
	name, uid := keyPrincipal, keyUID
	if name == "" {
		name, uid = tokenPrincipal, tokenUID
	}
	p, ok := st.Principal(name)
	if !ok || p.GetUid() != uid {
		return id, ReasonUnknownPrincipal, DescInvalidCredential
	}
	id.principal = p
	id.scoped, id.scopes = keyPrincipal == "", tokenScopes
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
	if !ok || k.GetKey().GetPrincipal() != principal || k.GetPrincipalUid() != uid {
		return false
	}
	_, state := store.KeyStatus(st, k, now)
	return state == store.KeyValid
}

// IdPState is what IdPSourceUsable reads besides SourceState;
// *store.Store implements it.
type IdPState interface {
	IdentityProvider(name string) (*store.IdentityProvider, bool)
}

// TokenSourceUsable reports whether the source of a gateway token, token
// family, sign-in session or authorization is still usable: an API key
// (keyID, see SourceUsable) or an identity provider (idp set, keyID
// empty) that the person signed in with or whose assertion (ID-JAG) the
// token was issued for (IdPSourceUsable). Both set, or neither, fails
// closed. This is the one source check of every path.
func TokenSourceUsable(st SourceState, keyID, idp, principal, uid string, now time.Time) bool {
	if idp != "" {
		return keyID == "" && IdPSourceUsable(st, idp, principal, uid)
	}
	return SourceUsable(st, keyID, principal, uid, now)
}

// IdPSourceUsable reports whether something derived from an identity
// provider's assertion about the principal (name, uid) is still usable:
// the provider is still configured and the principal still exists with
// that uid. A state that cannot tell (no IdPState) says no: fail closed.
func IdPSourceUsable(st SourceState, idp, principal, uid string) bool {
	is, ok := st.(IdPState)
	if !ok || idp == "" || uid == "" {
		return false
	}
	if _, ok := is.IdentityProvider(idp); !ok {
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

// Granted reports whether p may use server: its own servers, or those of a
// group it is a member of, set by an admin (groups) or asserted by an
// identity provider (asserted_groups); "*" grants every server. Groups are
// looked up in st at every call, so deleting a group or removing a
// membership takes effect on the next decision. This is the one function
// that says what a principal may use: Decide and the authorization server's
// checks call it.
func Granted(st GroupState, p *configv1.Principal, server string) bool {
	granted := false
	eachGrant(st, p, func(s, _ string, _ *configv1.GroupAssertion) bool {
		granted = s == "*" || s == server
		return !granted
	})
	return granted
}

// EffectiveServers returns every server p may use (the grants Granted
// honours) with where each grant comes from, sorted by server; a server's
// sources come in order: own, then admin-set groups, then asserted ones.
func EffectiveServers(st GroupState, p *configv1.Principal) []*configv1.EffectiveServer {
	by := map[string]*configv1.EffectiveServer{}
	eachGrant(st, p, func(s, group string, a *configv1.GroupAssertion) bool {
		e := by[s]
		if e == nil {
			e = &configv1.EffectiveServer{Server: s}
			by[s] = e
		}
		src := &configv1.GrantSource{Group: group}
		if a != nil {
			src.IdentityProvider, src.AssertTime = a.GetIdentityProvider(), a.GetAssertTime()
		}
		e.Sources = append(e.Sources, src)
		return true
	})
	out := make([]*configv1.EffectiveServer, 0, len(by))
	for _, e := range by {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetServer() < out[j].GetServer() })
	return out
}

// eachGrant calls f with every server grant of p and its source (group ""
// for p's own; a non-nil assertion for an asserted group) until f returns
// false. A group that does not exist (or an empty name) grants nothing.
func eachGrant(st GroupState, p *configv1.Principal, f func(server, group string, a *configv1.GroupAssertion) bool) {
	for _, s := range p.GetServers() {
		if !f(s, "", nil) {
			return
		}
	}
	group := func(name string, a *configv1.GroupAssertion) bool {
		g, ok := st.Group(name)
		if !ok || name == "" {
			return true
		}
		for _, s := range g.GetServers() {
			if !f(s, name, a) {
				return false
			}
		}
		return true
	}
	for _, name := range p.GetGroups() {
		if !group(name, nil) {
			return
		}
	}
	for _, a := range p.GetAssertedGroups() {
		if !group(a.GetGroup(), a) {
			return
		}
	}
}

// authModeName names a static auth mode in trace steps ("api_key").
func authModeName(t configv1.AuthType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "AUTH_TYPE_"))
}

// unionRules is a's rules then those of b not in a (the same rule objects
// of one policy list: a rule naming both the member and the virtual
// server, e.g. servers: ["*"], counts once).
func unionRules(a, b []*configv1.Policy) []*configv1.Policy {
	if len(b) == 0 {
		return a
	}
	out := slices.Clip(a)
	for _, r := range b {
		if !slices.Contains(a, r) {
			out = append(out, r)
		}
	}
	return out
}
