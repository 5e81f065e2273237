// Package authorizeapi implements AuthorizeService, called by data planes.
package authorizeapi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/limits"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// InitialSessionKeyID is the id of the key-ring key created when the ring is
// empty. A fixed id makes concurrent replicas race on one create-only write,
// so exactly one key wins.
const InitialSessionKeyID = "initial"

// Service implements AuthorizeService over the store's cache: the pure
// decision (controlplane/authorize), then, for an ALLOW that needs one, the
// upstream credential (controlplane/grants).
type Service struct {
	authorizev1connect.UnimplementedAuthorizeServiceHandler

	st      *store.Store
	log     *slog.Logger
	now     func() time.Time
	grants  *grants.Grants
	obtain  grants.Obtainer
	machine grants.MachineTokens
	tokens  grants.GrantTokens
	exch    grants.ExchangeTokens
	limiter *limits.Limiter
	audit   *audit.Logger

	hub       *hub
	heartbeat time.Duration
	maxAge    time.Duration
}

// DefaultDecisionCacheMaxAge is how long a data plane may reuse an ALLOW
// at most (WithDecisionCacheMaxAge).
const DefaultDecisionCacheMaxAge = 10 * time.Second

// CredentialMargin is subtracted from a vault grant's upstream token expiry
// when bounding a cached decision's age (the same margin grants refresh
// ahead of expiry by default).
const CredentialMargin = 60 * time.Second

// WithDecisionCacheMaxAge sets the longest a data plane may reuse an ALLOW
// (cache_max_age_ms); 0 or less: never.
func WithDecisionCacheMaxAge(d time.Duration) Option { return func(s *Service) { s.maxAge = d } }

// WithHeartbeatInterval sets how often WatchInvalidations sends a heartbeat.
func WithHeartbeatInterval(d time.Duration) Option {
	return func(s *Service) {
		if d > 0 {
			s.heartbeat = d
		}
	}
}

// Option configures a Service.
type Option func(*Service)

// WithGrants sets the vault's grants: they hand out (and refresh) upstream
// tokens and mark grants unusable. Without it the service reads grants as
// stored and never refreshes them.
func WithGrants(g *grants.Grants) Option {
	return func(s *Service) { s.grants, s.tokens = g, g }
}

// WithGrantTokens replaces what hands out vault grants' tokens.
func WithGrantTokens(g grants.GrantTokens) Option { return func(s *Service) { s.tokens = g } }

// WithMachineTokens replaces the in-memory client_credentials minter.
func WithMachineTokens(m grants.MachineTokens) Option { return func(s *Service) { s.machine = m } }

// WithTokenExchange sets what obtains token_exchange servers' tokens.
func WithTokenExchange(x grants.ExchangeTokens) Option { return func(s *Service) { s.exch = x } }

// WithLimiter sets the rate limiter (shared with the admin API's usage
// report). Without it the service makes its own, on its clock.
func WithLimiter(l *limits.Limiter) Option { return func(s *Service) { s.limiter = l } }

// WithClock sets the clock of decisions and of the records this service writes.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns the AuthorizeService handler.
func New(st *store.Store, log *slog.Logger, opts ...Option) *Service {
	s := &Service{st: st, log: log, now: time.Now, heartbeat: DefaultHeartbeatInterval, maxAge: DefaultDecisionCacheMaxAge}
	for _, o := range opts {
		o(s)
	}
	if s.grants == nil {
		s.grants = grants.New(st, grants.Config{Now: s.now}, log)
	}
	if s.tokens == nil {
		s.tokens = grants.StoreGrants{Source: st, Now: s.now}
	}
	if s.machine == nil {
		s.machine = &grants.ClientCredentials{Now: s.now}
	}
	if s.exch == nil {
		s.exch = grants.NewTokenExchange(st, grants.Config{Now: s.now}, log)
	}
	if s.limiter == nil {
		s.limiter = limits.New(st, log, limits.WithClock(s.now))
	}
	s.obtain = grants.Obtainer{Grants: s.tokens, Machine: s.machine, Exchange: s.exch, Log: log}
	s.hub = newHub(st)
	return s
}

// Authorize implements AuthorizeService: decide, then obtain the upstream
// credential an ALLOW needs.
//
// A credential this replica's cache does not know may have been created a
// moment ago on another replica (a key, or an access token issued by /token
// just before the client uses it): then the cache catches up with etcd's
// current revision once and the request is decided again. Known credentials
// never touch etcd.
//
// Every answer carries the store revision it was decided on (read before
// deciding), and an ALLOW the time a data plane may reuse it
// (cacheMaxAge).
func (s *Service) Authorize(ctx context.Context, req *authorizev1.AuthorizeRequest) (*authorizev1.AuthorizeResponse, error) {
	rev := s.st.CacheStatus().Revision
	now := s.now()
	d, err := authorize.Decide(s.st, now, req)
	if err == nil && (d.Response.GetReason() == authorize.ReasonUnknownKey || d.Response.GetReason() == authorize.ReasonUnknownToken) && s.catchUp(ctx) {
		rev = s.st.CacheStatus().Revision
		now = s.now()
		d, err = authorize.Decide(s.st, now, req)
	}
	if err != nil {
		return nil, s.toConnectError(ctx, "authorize", err)
	}
	for _, m := range d.Omitted {
		s.log.WarnContext(ctx, "aggregate member left out: could not decide", slog.String("server", m))
	}
	if agg := d.Response.GetAggregate(); agg != nil && req.GetJsonrpcMethod() == limits.ToolsCall {
		// A tools/call through an aggregate counts against the owning
		// member's limits, as on the member's own route; a refusal is that
		// member's decision (the data plane answers a tool error).
		for _, m := range agg.GetMembers() {
			if m.GetDecision().GetDecision() != authorizev1.Decision_DECISION_ALLOW || m.GetUpstreamName() == "" {
				continue
			}
			mreq := &authorizev1.AuthorizeRequest{Route: m.GetServer(), JsonrpcMethod: req.GetJsonrpcMethod(), ToolName: m.GetUpstreamName()}
			limited, err := s.limit(ctx, now, mreq, m.GetDecision())
			if err != nil {
				return nil, s.toConnectError(ctx, "rate limit", err)
			}
			if limited != nil {
				m.Decision = limited
			}
		}
	} else if d.Response.GetDecision() == authorizev1.Decision_DECISION_ALLOW {
		limited, err := s.limit(ctx, now, req, d.Response)
		if err != nil {
			return nil, s.toConnectError(ctx, "rate limit", err)
		}
		if limited != nil {
			return limited, nil
		}
	}
	uncacheable := d.Response.GetUncacheable()
	resp, err := s.obtain.Complete(ctx, d)
	if err != nil {
		return nil, s.toConnectError(ctx, "authorize", err)
	}
	resp.DecisionRevision = rev
	if resp.GetDecision() == authorizev1.Decision_DECISION_ALLOW {
		if t := req.GetCredentials().GetBearerToken(); t != "" {
			resp.AccessTokenId = store.KeyID(store.HashKey(t))
		}
		// Not reusable: an ALLOW a rate limit counted (reusing it would
		// skip the count), and an aggregate's (its members' upstream
		// credentials are not bounded here).
		resp.Uncacheable = uncacheable
		if !uncacheable && resp.GetAggregate() == nil {
			resp.CacheMaxAgeMs = s.cacheMaxAge(req, d).Milliseconds()
		}
	}
	return resp, nil
}

// ReasonRateLimited is the reason of a DECISION_RATE_LIMITED.
const ReasonRateLimited = "rate limit exceeded"

// limit counts an ALLOW against the rate limits that apply to it (before
// any upstream credential is obtained: a refused call costs no token
// endpoint a request). It marks the ALLOW uncacheable when any applies and
// returns the RATE_LIMITED answer when one refuses. The count is kept in
// memory; etcd is written once per chunk of calls (docs/limits.md).
func (s *Service) limit(ctx context.Context, now time.Time, req *authorizev1.AuthorizeRequest, allow *authorizev1.AuthorizeResponse) (*authorizev1.AuthorizeResponse, error) {
	name := allow.GetPrincipal()
	groups := func() ([]string, bool) {
		p, ok := s.st.Principal(name)
		if !ok {
			return nil, false
		}
		return limits.Groups(p), true
	}
	tool := ""
	if req.GetJsonrpcMethod() == limits.ToolsCall {
		tool = req.GetToolName()
	}
	applied, refused, err := s.limiter.Check(ctx, now, name, groups, req.GetRoute(), tool)
	if err != nil {
		return nil, err
	}
	allow.Uncacheable = applied
	if refused == nil {
		return nil, nil
	}
	return &authorizev1.AuthorizeResponse{
		Decision: authorizev1.Decision_DECISION_RATE_LIMITED,
		RateLimited: &authorizev1.RateLimited{
			LimitId:           refused.LimitID,
			RetryAfterSeconds: refused.RetryAfter,
			Window:            refused.Window,
		},
		Principal: allow.GetPrincipal(),
		KeyPrefix: allow.GetKeyPrefix(),
		KeyId:     allow.GetKeyId(),
		Reason:    ReasonRateLimited,
	}, nil
}

// cacheMaxAge is how long a data plane may reuse the ALLOW d of req: the
// configured maximum, bounded by the expiry of the API key, of the access
// token and the key it derives from, and of the upstream credential the
// ALLOW carries (minus a margin). 0 when any of them cannot be told.
// Passthrough ALLOWs are reusable: the data plane keys its cache on the
// passthrough value too, and the control plane holds nothing of it.
func (s *Service) cacheMaxAge(req *authorizev1.AuthorizeRequest, d authorize.Decision) time.Duration {
	if s.maxAge <= 0 {
		return 0
	}
	now := s.now()
	until := now.Add(s.maxAge)
	bound := func(t time.Time) {
		if t.Before(until) {
			until = t
		}
	}
	key := func(rec *storev1.KeyRecord) {
		if exp := rec.GetKey().GetExpireTime(); exp != nil {
			bound(exp.AsTime())
		}
	}
	c := req.GetCredentials()
	if k := c.GetApiKey(); k != "" {
		rec, ok := s.st.KeyByHash(store.HashKey(k))
		if !ok {
			return 0
		}
		key(rec)
	}
	if t := c.GetBearerToken(); t != "" {
		rec, ok := s.st.AccessToken(store.HashKey(t))
		if !ok || rec.GetExpireTime() == nil {
			return 0
		}
		bound(rec.GetExpireTime().AsTime())
		if id := rec.GetKeyId(); id != "" {
			k, ok := s.st.Key(id)
			if !ok {
				return 0
			}
			key(k)
		}
	}
	switch d.Need {
	case authorize.NeedNothing:
	case authorize.NeedVaultGrant:
		g, ok := s.st.Grant(d.Principal, d.Server.Def.GetName())
		if !ok {
			return 0
		}
		if exp := g.Token.GetExpiry(); exp != nil {
			bound(exp.AsTime().Add(-CredentialMargin))
		}
	case authorize.NeedClientCredentials:
		u, ok := s.machine.(interface {
			UseBy(server string, rev int64) (time.Time, bool)
		})
		if !ok {
			return 0
		}
		t, ok := u.UseBy(d.Server.Def.GetName(), d.Server.Def.GetRevision())
		if !ok {
			return 0
		}
		bound(t)
	case authorize.NeedTokenExchange:
		u, ok := s.exch.(interface {
			UseBy(principal string, srv *store.Server) (time.Time, bool)
		})
		if !ok {
			return 0
		}
		t, ok := u.UseBy(d.Principal, d.Server)
		if !ok {
			return 0
		}
		bound(t)
	default:
		return 0
	}
	if age := until.Sub(now); age > 0 {
		return age
	}
	return 0
}

// catchUp waits (briefly) for the cache to reach etcd's revision as of
// now; false when that could not be done, and the first decision stands.
// The store shares one read among every concurrent caller and bounds their
// rate, so a flood of random credentials costs etcd a constant.
func (s *Service) catchUp(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return s.st.CatchUp(ctx) == nil
}

// DescribeRoute implements AuthorizeService.
// The root aggregate (route "") is always found, without scopes; a virtual
// server is described like a server.
func (s *Service) DescribeRoute(_ context.Context, req *authorizev1.DescribeRouteRequest) (*authorizev1.DescribeRouteResponse, error) {
	if req.GetRoute() == "" {
		return &authorizev1.DescribeRouteResponse{Found: true, Description: "All the servers you may use, as one."}, nil
	}
	srv, ok := s.st.Server(req.GetRoute())
	if !ok {
		if vs, ok := s.st.VirtualServer(req.GetRoute()); ok {
			return &authorizev1.DescribeRouteResponse{
				Found:       true,
				Scopes:      append([]string(nil), vs.GetScopes()...),
				Description: vs.GetDescription(),
			}, nil
		}
		return &authorizev1.DescribeRouteResponse{}, nil
	}
	return &authorizev1.DescribeRouteResponse{
		Found:       true,
		Scopes:      append([]string(nil), srv.Def.GetScopes()...),
		Description: srv.Def.GetDescription(),
	}, nil
}

// GetSessionKeys implements AuthorizeService: the key ring, created with one
// random 32-byte key when empty.
func (s *Service) GetSessionKeys(ctx context.Context, _ *authorizev1.GetSessionKeysRequest) (*authorizev1.GetSessionKeysResponse, error) {
	keys := s.st.SessionKeys()
	if len(keys) == 0 {
		if err := s.createSessionKey(ctx); err != nil {
			return nil, s.toConnectError(ctx, "create session key", err)
		}
		keys = s.st.SessionKeys()
	}
	if len(keys) == 0 {
		return nil, s.toConnectError(ctx, "session keys", errors.New("key ring still empty"))
	}
	resp := &authorizev1.GetSessionKeysResponse{Keys: make([]*authorizev1.SessionKey, 0, len(keys))}
	for _, k := range keys {
		resp.Keys = append(resp.Keys, &authorizev1.SessionKey{Id: k.ID, Key: append([]byte(nil), k.Key...)})
	}
	return resp, nil
}

// createSessionKey writes the initial key unless another replica did, and
// waits until the cache shows whichever key won.
func (s *Service) createSessionKey(ctx context.Context) error {
	k := &store.SessionKey{ID: InitialSessionKeyID, Key: make([]byte, 32), Created: s.now()}
	if _, err := rand.Read(k.Key); err != nil {
		return fmt.Errorf("session key: %w", err)
	}
	rev, err := s.st.PutSessionKey(ctx, k)
	if errors.Is(err, store.ErrConflict) {
		// Lost the race: wait for the winner's key (written before now).
		rev, err = s.st.HeadRevision(ctx)
	}
	if err != nil {
		return err
	}
	return s.st.WaitRevision(ctx, rev)
}

// ReportUpstreamUnauthorized implements AuthorizeService: the principal's
// grant for the route becomes NEEDS_REAUTH (grants.MarkUnusable), by
// compare-and-swap on the revision it was read at. A grant that changed
// meanwhile (refreshed, replaced, already marked) is left alone: the report
// was about the old one.
func (s *Service) ReportUpstreamUnauthorized(ctx context.Context, req *authorizev1.ReportUpstreamUnauthorizedRequest) (*authorizev1.ReportUpstreamUnauthorizedResponse, error) {
	if req.GetRoute() == "" || req.GetPrincipal() == "" {
		return nil, s.toConnectError(ctx, "report", fmt.Errorf("%w: route and principal required", authorize.ErrInvalidRequest))
	}
	marked, err := s.grants.MarkUnusable(ctx, req.GetPrincipal(), req.GetRoute())
	if err != nil {
		return nil, s.toConnectError(ctx, "mark grant", err)
	}
	if marked {
		s.log.InfoContext(ctx, "grant marked unusable after upstream 401",
			slog.String("principal", req.GetPrincipal()), slog.String("route", req.GetRoute()))
	}
	return &authorizev1.ReportUpstreamUnauthorizedResponse{}, nil
}

// toConnectError is the one place this service's errors become Connect
// codes, with fixed public text. The cause is logged, never sent.
func (s *Service) toConnectError(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, authorize.ErrInvalidRequest):
		return connect.NewError(connect.CodeInvalidArgument, errors.New("invalid request"))
	case errors.Is(err, grants.ErrUpstreamUnavailable):
		s.log.WarnContext(ctx, "could not decide", slog.String("op", op), slog.Any("err", err))
		return connect.NewError(connect.CodeUnavailable, errors.New("upstream token endpoint unavailable"))
	case errors.Is(err, authorize.ErrMisconfigured):
		s.log.ErrorContext(ctx, "could not decide", slog.String("op", op), slog.Any("err", err))
		// Deterministic: every replica would answer the same until an admin
		// fixes the server, so data planes must not retry it elsewhere.
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("server misconfigured"))
	case errors.Is(err, store.ErrUnavailable):
		s.log.WarnContext(ctx, "store unavailable", slog.String("op", op), slog.Any("err", err))
		return connect.NewError(connect.CodeUnavailable, errors.New("store unavailable"))
	default:
		s.log.ErrorContext(ctx, "could not decide", slog.String("op", op), slog.Any("err", err))
		return connect.NewError(connect.CodeUnavailable, errors.New("could not decide"))
	}
}
