// Package configapi implements the admin services of configuration:
// servers, principals and API keys (vault connections are vaultapi's).
// Secrets are write-only: no response carries a
// server secret, a key's plaintext (except once, at creation) or its hash.
package configapi

import (
	"context"
	"errors"
	"log/slog"
	"net/textproto"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/limits"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Service implements the admin services over the store.
type Service struct {
	st  *store.Store
	log *slog.Logger
	now func() time.Time

	revoker Revoker
	tokens  TokenRevoker
	limiter *limits.Limiter
}

var (
	_ configv1connect.ServerServiceHandler    = (*Service)(nil)
	_ configv1connect.PrincipalServiceHandler = (*Service)(nil)
	_ configv1connect.KeyServiceHandler       = (*Service)(nil)
	_ connect.Interceptor                     = (*AdminAuth)(nil)
)

// Revoker deletes a principal's vault grant and revokes it at the upstream
// when the upstream offers RFC 7009 revocation.
type Revoker interface {
	Revoke(ctx context.Context, principal, server string) (upstreamRevoked bool, err error)
}

// TokenRevoker ends, best effort, the gateway token families and sign-in
// sessions derived from something revoked (empty arguments match
// anything); oauth.Server implements it. Tokens of a revoked key or a
// deleted principal are refused on use whether or not it ran.
type TokenRevoker interface {
	RevokeTokens(ctx context.Context, principal, keyID, server string) (int, error)
}

// Option configures the admin services.
type Option func(*Service)

// WithRevoker makes RevokeConnection revoke at the upstream too.
func WithRevoker(r Revoker) Option { return func(s *Service) { s.revoker = r } }

// WithLimiter sets the rate limiter whose usage GetRateLimitUsage reports
// (the one Authorize counts with). Without it the service makes its own.
func WithLimiter(l *limits.Limiter) Option { return func(s *Service) { s.limiter = l } }

// WithTokenRevoker makes revoking a key or a connection and deleting a
// principal delete the token families derived from them at once.
func WithTokenRevoker(r TokenRevoker) Option { return func(s *Service) { s.tokens = r } }

// revokeTokens runs the TokenRevoker, if any, logging its failure: the
// write it follows has happened, and tokens are refused on use anyway.
func (s *Service) revokeTokens(ctx context.Context, principal, keyID, server string) {
	if s.tokens == nil {
		return
	}
	n, err := s.tokens.RevokeTokens(ctx, principal, keyID, server)
	if err != nil {
		s.log.WarnContext(ctx, "revoke derived tokens", slog.Any("err", err))
		return
	}
	if n > 0 {
		s.log.InfoContext(ctx, "derived token families revoked", slog.Int("families", n))
	}
}

// New returns the admin services.
func New(st *store.Store, log *slog.Logger, opts ...Option) *Service {
	s := &Service{st: st, log: log, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if s.limiter == nil {
		s.limiter = limits.New(st, log)
	}
	return s
}

// publicError is an error whose text this package fixed for clients.
type publicError struct {
	code connect.Code
	msg  string
}

func (e *publicError) Error() string { return e.msg }

func notFound(what string) error {
	return &publicError{code: connect.CodeNotFound, msg: what + " not found"}
}

func aborted(msg string) error { return &publicError{code: connect.CodeAborted, msg: msg} }

var errStale = aborted("revision conflict; re-read and retry")

// toConnectError is the one place errors become wire codes. Clients only
// ever see fixed text; causes are logged.
func (s *Service) toConnectError(ctx context.Context, err error) error {
	var inv *invalidError
	var pub *publicError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &inv):
		return connect.NewError(connect.CodeInvalidArgument, errors.New(inv.msg))
	case errors.As(err, &pub):
		return connect.NewError(pub.code, errors.New(pub.msg))
	case errors.Is(err, store.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, errors.New("not found"))
	case errors.Is(err, store.ErrConflict):
		return connect.NewError(connect.CodeAborted, errors.New("revision conflict; re-read and retry"))
	case errors.Is(err, store.ErrUnavailable):
		s.log.WarnContext(ctx, "store unavailable", slog.Any("err", err))
		return connect.NewError(connect.CodeUnavailable, errors.New("storage unavailable (etcd unreachable or without quorum): writes are refused, reads are served from the last known state; retry later"))
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, errors.New("canceled"))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("deadline exceeded"))
	default:
		s.log.ErrorContext(ctx, "admin request failed", slog.Any("err", err))
		return connect.NewError(connect.CodeInternal, errors.New("internal error"))
	}
}

// audit logs one event per admin write. Only names, never values.
func (s *Service) audit(ctx context.Context, action, kind, name string, err error, attrs ...slog.Attr) {
	result := "ok"
	if err != nil {
		result = connect.CodeOf(err).String()
	}
	a := append([]slog.Attr{
		slog.String("action", action),
		slog.String("kind", kind),
		slog.String("name", name),
		slog.String("actor", actor(ctx)),
		slog.String("result", result),
	}, attrs...)
	s.log.LogAttrs(ctx, slog.LevelInfo, "admin audit", a...)
}

// storeTimeout bounds a write's etcd round trips, so that an unreachable
// etcd yields unavailable instead of a request that hangs.
const storeTimeout = 10 * time.Second

// settle waits, bounded, until the cache reflects rev so that the caller
// reads its own write. The write has happened either way.
func (s *Service) settle(ctx context.Context, rev int64) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.st.WaitRevision(wctx, rev); err != nil {
		s.log.WarnContext(ctx, "cache did not reach written revision", slog.Int64("revision", rev), slog.Any("err", err))
	}
}

// checkExpected applies compare-and-swap rules against the cached revision;
// etcd enforces them again on write.
func checkExpected(what string, exists bool, cur, expected int64) error {
	switch {
	case expected < 0:
		return invalid("expected_revision: must not be negative")
	case expected == 0 && exists:
		return aborted(what + " already exists; pass its revision to replace it")
	case expected > 0 && (!exists || cur != expected):
		return errStale
	}
	return nil
}

// ---- servers

// ListServers implements configv1connect.ServerServiceHandler.
func (s *Service) ListServers(ctx context.Context, _ *configv1.ListServersRequest) (*configv1.ListServersResponse, error) {
	out := &configv1.ListServersResponse{}
	for _, srv := range s.st.Servers() {
		out.Servers = append(out.Servers, publicDef(srv))
	}
	return out, nil
}

// GetServer implements configv1connect.ServerServiceHandler.
func (s *Service) GetServer(ctx context.Context, req *configv1.GetServerRequest) (*configv1.GetServerResponse, error) {
	if err := validName("name", req.GetName()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	srv, ok := s.st.Server(req.GetName())
	if !ok {
		return nil, s.toConnectError(ctx, notFound("mcp server"))
	}
	return &configv1.GetServerResponse{Server: publicDef(srv)}, nil
}

// publicDef is a copy of a cached definition safe to return: the store keeps
// secrets out of Def already; this clears them again defensively.
func publicDef(srv *store.Server) *configv1.McpServer {
	def := proto.CloneOf(srv.Def)
	store.PublicServer(def, srv.Secrets)
	return def
}

// PutServer implements configv1connect.ServerServiceHandler.
func (s *Service) PutServer(ctx context.Context, req *configv1.PutServerRequest) (*configv1.PutServerResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	name := req.GetServer().GetName()
	res, changed, err := s.putServer(ctx, req)
	if changed || err != nil {
		s.audit(ctx, "put", "server", name, err, slog.Bool("replace_secrets", req.GetReplaceSecrets()))
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) putServer(ctx context.Context, req *configv1.PutServerRequest) (*configv1.PutServerResponse, bool, error) {
	if req.GetServer() == nil {
		return nil, false, s.toConnectError(ctx, invalid("server: required"))
	}
	def := proto.CloneOf(req.GetServer())
	normalizeServer(def)
	if err := validName("name", def.GetName()); err != nil {
		return nil, false, s.toConnectError(ctx, err)
	}
	cur, exists := s.st.Server(def.GetName())
	var curRev int64
	if exists {
		curRev = cur.Def.GetRevision()
	}
	if err := checkExpected("mcp server", exists, curRev, req.GetExpectedRevision()); err != nil {
		return nil, false, s.toConnectError(ctx, err)
	}
	if !exists {
		if err := s.checkServerName(def.GetName()); err != nil {
			return nil, false, s.toConnectError(ctx, err)
		}
	}
	sec := &storev1.ServerSecrets{
		AuthValue:     def.GetAuthValue(),
		ClientSecret:  def.GetClientSecret(),
		StaticHeaders: def.GetStaticHeaders(),
	}
	if exists && !req.GetReplaceSecrets() {
		mergeSecrets(def.GetAuthType(), sec, cur.Secrets)
	}
	if len(sec.StaticHeaders) == 0 {
		sec.StaticHeaders = nil
	}
	// Output-only and secret-bearing fields never reach the stored definition.
	def.AuthValue, def.ClientSecret, def.StaticHeaders = "", "", nil
	def.AuthValueSet, def.ClientSecretSet, def.StaticHeaderNames, def.Revision = false, false, nil, 0
	if err := validateServer(def, sec); err != nil {
		return nil, false, s.toConnectError(ctx, err)
	}
	if exists && sameServer(def, sec, cur) {
		return &configv1.PutServerResponse{Server: publicDef(cur)}, false, nil
	}
	rev, err := s.st.PutServer(ctx, def, sec, req.GetExpectedRevision())
	if err != nil {
		return nil, false, s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	out := proto.CloneOf(def)
	store.PublicServer(out, sec)
	out.Revision = rev
	return &configv1.PutServerResponse{Server: out, Changed: true}, true, nil
}

// mergeSecrets keeps stored secrets the request left empty, as far as the
// new auth type still uses them. Static headers given without a value keep
// their stored value; no static headers at all keeps the stored set.
func mergeSecrets(at configv1.AuthType, sec, stored *storev1.ServerSecrets) {
	if sec.AuthValue == "" && usesAuthValue(at) {
		sec.AuthValue = stored.GetAuthValue()
	}
	if sec.ClientSecret == "" && at == configv1.AuthType_AUTH_TYPE_OAUTH2 {
		sec.ClientSecret = stored.GetClientSecret()
	}
	if len(sec.StaticHeaders) == 0 {
		if len(stored.GetStaticHeaders()) > 0 {
			sec.StaticHeaders = make(map[string]string, len(stored.GetStaticHeaders()))
			for k, v := range stored.GetStaticHeaders() {
				sec.StaticHeaders[k] = v
			}
		}
		return
	}
	merged := make(map[string]string, len(sec.StaticHeaders))
	for k, v := range sec.StaticHeaders {
		if v == "" {
			v = storedHeader(stored.GetStaticHeaders(), k)
		}
		merged[k] = v
	}
	sec.StaticHeaders = merged
}

func storedHeader(h map[string]string, name string) string {
	if v, ok := h[name]; ok {
		return v
	}
	canon := textproto.CanonicalMIMEHeaderKey(name)
	for k, v := range h {
		if textproto.CanonicalMIMEHeaderKey(k) == canon {
			return v
		}
	}
	return ""
}

// sameServer tells whether storing def and sec would change nothing.
func sameServer(def *configv1.McpServer, sec *storev1.ServerSecrets, cur *store.Server) bool {
	a := proto.CloneOf(cur.Def)
	a.Revision, a.AuthValueSet, a.ClientSecretSet, a.StaticHeaderNames = 0, false, false, nil
	a.AuthValue, a.ClientSecret, a.StaticHeaders = "", "", nil
	curSec := cur.Secrets
	if curSec == nil {
		curSec = &storev1.ServerSecrets{}
	}
	return proto.Equal(a, def) && proto.Equal(curSec, sec)
}

// DeleteServer implements configv1connect.ServerServiceHandler.
func (s *Service) DeleteServer(ctx context.Context, req *configv1.DeleteServerRequest) (*configv1.DeleteServerResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err := s.deleteServer(ctx, req)
	s.audit(ctx, "delete", "server", req.GetName(), err)
	if err != nil {
		return nil, err
	}
	return &configv1.DeleteServerResponse{}, nil
}

func (s *Service) deleteServer(ctx context.Context, req *configv1.DeleteServerRequest) error {
	if err := validName("name", req.GetName()); err != nil {
		return s.toConnectError(ctx, err)
	}
	if req.GetExpectedRevision() < 0 {
		return s.toConnectError(ctx, invalid("expected_revision: must not be negative"))
	}
	if err := s.checkServerUnreferenced(req.GetName()); err != nil {
		return s.toConnectError(ctx, err)
	}
	rev, err := s.st.DeleteServer(ctx, req.GetName(), req.GetExpectedRevision())
	if errors.Is(err, store.ErrNotFound) {
		err = notFound("mcp server")
	}
	if err != nil {
		return s.toConnectError(ctx, err)
	}
	// Its tool pins go with it (best effort: leftover pins only make a
	// server created again under the name block or warn on changes).
	if prev, err := s.st.DeleteToolPins(ctx, req.GetName()); err != nil {
		s.log.WarnContext(ctx, "delete tool pins", slog.String("server", req.GetName()), slog.Any("err", err))
	} else if prev > rev {
		rev = prev
	}
	s.settle(ctx, rev)
	return nil
}

// ---- principals

// ListPrincipals implements configv1connect.PrincipalServiceHandler.
func (s *Service) ListPrincipals(ctx context.Context, _ *configv1.ListPrincipalsRequest) (*configv1.ListPrincipalsResponse, error) {
	out := &configv1.ListPrincipalsResponse{}
	for _, p := range s.st.Principals() {
		out.Principals = append(out.Principals, proto.CloneOf(p))
	}
	return out, nil
}

// GetPrincipal implements configv1connect.PrincipalServiceHandler.
func (s *Service) GetPrincipal(ctx context.Context, req *configv1.GetPrincipalRequest) (*configv1.GetPrincipalResponse, error) {
	if err := validName("name", req.GetName()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	p, ok := s.st.Principal(req.GetName())
	if !ok {
		return nil, s.toConnectError(ctx, notFound("principal"))
	}
	return &configv1.GetPrincipalResponse{
		Principal:        proto.CloneOf(p),
		EffectiveServers: authorize.EffectiveServers(s.st, p),
	}, nil
}

// PutPrincipal implements configv1connect.PrincipalServiceHandler.
func (s *Service) PutPrincipal(ctx context.Context, req *configv1.PutPrincipalRequest) (*configv1.PutPrincipalResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	res, err := s.putPrincipal(ctx, req)
	if err != nil || res.GetChanged() {
		s.audit(ctx, "put", "principal", req.GetPrincipal().GetName(), err)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) putPrincipal(ctx context.Context, req *configv1.PutPrincipalRequest) (*configv1.PutPrincipalResponse, error) {
	if req.GetPrincipal() == nil {
		return nil, s.toConnectError(ctx, invalid("principal: required"))
	}
	p := proto.CloneOf(req.GetPrincipal())
	p.Revision = 0
	normalizePrincipal(p)
	if err := validatePrincipal(p); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	cur, exists := s.st.Principal(p.GetName())
	if err := checkExpected("principal", exists, cur.GetRevision(), req.GetExpectedRevision()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	// The uid is output only: made at creation, kept on replace. So are
	// the groups identity providers asserted (SetAssertedGroups writes
	// them): a client's are ignored, the stored ones kept.
	p.Uid = cur.GetUid()
	p.AssertedGroups = cur.GetAssertedGroups()
	if !exists {
		p.Uid = store.NewUID()
	}
	if exists {
		c := proto.CloneOf(cur)
		c.Revision = 0
		if proto.Equal(c, p) {
			return &configv1.PutPrincipalResponse{Principal: proto.CloneOf(cur)}, nil
		}
	}
	rev, err := s.st.PutPrincipal(ctx, p, req.GetExpectedRevision())
	if err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	p.Revision = rev
	return &configv1.PutPrincipalResponse{Principal: p, Changed: true}, nil
}

// DeletePrincipal implements configv1connect.PrincipalServiceHandler. The
// principal's keys, tokens, sessions and grants stop working with it (they
// are bound to its uid) and are deleted (see cascadePrincipal).
func (s *Service) DeletePrincipal(ctx context.Context, req *configv1.DeletePrincipalRequest) (*configv1.DeletePrincipalResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err := s.deletePrincipal(ctx, req)
	s.audit(ctx, "delete", "principal", req.GetName(), err)
	if err != nil {
		return nil, err
	}
	return &configv1.DeletePrincipalResponse{}, nil
}

func (s *Service) deletePrincipal(ctx context.Context, req *configv1.DeletePrincipalRequest) error {
	if err := validName("name", req.GetName()); err != nil {
		return s.toConnectError(ctx, err)
	}
	if req.GetExpectedRevision() < 0 {
		return s.toConnectError(ctx, invalid("expected_revision: must not be negative"))
	}
	cur, _ := s.st.Principal(req.GetName())
	rev, err := s.st.DeletePrincipal(ctx, req.GetName(), req.GetExpectedRevision())
	if errors.Is(err, store.ErrNotFound) {
		err = notFound("principal")
	}
	if err != nil {
		return s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	s.cascadePrincipal(ctx, req.GetName(), cur.GetUid())
	return nil
}

// cascadePrincipal deletes, best effort, what a deleted principal (name,
// uid) owned: its keys, the token families and sessions obtained with them,
// and its vault grants (revoked at the upstream with a Revoker). It frees
// storage; that none of it works any more does not depend on it, because
// keys, tokens, sessions and grants are bound to the principal's uid, which
// a principal created again under the same name does not get.
func (s *Service) cascadePrincipal(ctx context.Context, name, uid string) {
	var last int64
	defer func() {
		if last > 0 {
			s.settle(ctx, last)
		}
	}()
	for _, rec := range s.st.Keys() {
		k := rec.GetKey()
		if k.GetPrincipal() != name || rec.GetPrincipalUid() != uid {
			continue
		}
		rev, err := s.st.DeleteKey(ctx, k.GetId(), k.GetRevision())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.WarnContext(ctx, "delete key of a deleted principal", slog.String("key_id", k.GetId()), slog.Any("err", err))
		}
		last = max(last, rev)
		s.revokeTokens(ctx, name, k.GetId(), "")
	}
	for _, g := range s.st.Grants() {
		c := g.Conn
		if c.GetPrincipal() != name || c.GetPrincipalUid() != uid {
			continue
		}
		var err error
		if s.revoker != nil {
			_, err = s.revoker.Revoke(ctx, name, c.GetServer()) // waits for its delete to reach the cache
		} else {
			var rev int64
			rev, err = s.st.DeleteGrant(ctx, name, c.GetServer(), c.GetRevision())
			last = max(last, rev)
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.WarnContext(ctx, "delete grant of a deleted principal", slog.String("server", c.GetServer()), slog.Any("err", err))
		}
	}
	s.cascadeIdPSignIns(ctx, name)
}

// ---- API keys

// ListKeys implements configv1connect.KeyServiceHandler. Only metadata is
// returned: never the plaintext or the hash.
func (s *Service) ListKeys(ctx context.Context, req *configv1.ListKeysRequest) (*configv1.ListKeysResponse, error) {
	if req.GetPrincipal() != "" {
		if err := validName("principal", req.GetPrincipal()); err != nil {
			return nil, s.toConnectError(ctx, err)
		}
	}
	out := &configv1.ListKeysResponse{}
	for _, rec := range s.st.Keys() {
		if req.GetPrincipal() != "" && rec.GetKey().GetPrincipal() != req.GetPrincipal() {
			continue
		}
		out.Keys = append(out.Keys, proto.CloneOf(rec.GetKey()))
	}
	return out, nil
}

// CreateKey implements configv1connect.KeyServiceHandler.
func (s *Service) CreateKey(ctx context.Context, req *configv1.CreateKeyRequest) (*configv1.CreateKeyResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	res, err := s.createKey(ctx, req)
	if err != nil || res.GetCreated() {
		s.audit(ctx, "create", "api_key", res.GetApiKey().GetId(), err,
			slog.String("principal", req.GetPrincipal()), slog.Bool("pinned", req.GetKey() != ""))
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) createKey(ctx context.Context, req *configv1.CreateKeyRequest) (*configv1.CreateKeyResponse, error) {
	now := s.now()
	if err := validateKeyRequest(req, now); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	p, ok := s.st.Principal(req.GetPrincipal())
	if !ok {
		return nil, s.toConnectError(ctx, notFound("principal"))
	}
	plaintext := req.GetKey()
	if plaintext != "" {
		if rec, ok := s.st.KeyByHash(store.HashKey(plaintext)); ok {
			if rec.GetKey().GetPrincipal() != req.GetPrincipal() || rec.GetPrincipalUid() != p.GetUid() {
				// A key of an earlier, deleted principal of this name (its
				// cascade failed) is another principal's too: it stays dead.
				return nil, s.toConnectError(ctx, &publicError{code: connect.CodeAlreadyExists, msg: "key: already exists for another principal"})
			}
			return &configv1.CreateKeyResponse{ApiKey: proto.CloneOf(rec.GetKey())}, nil
		}
	} else {
		plaintext = NewKey()
	}
	rec := newKeyRecord(plaintext, p, req.GetName(), req.GetExpireTime(), now)
	rev, err := s.st.PutKey(ctx, rec, 0)
	if err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	k := proto.CloneOf(rec.GetKey())
	k.Revision = rev
	return &configv1.CreateKeyResponse{ApiKey: k, Key: plaintext, Created: true}, nil
}

// RevokeKey implements configv1connect.KeyServiceHandler. The id may be the
// key id or its display prefix (or a leading part of it, if unambiguous).
func (s *Service) RevokeKey(ctx context.Context, req *configv1.RevokeKeyRequest) (*configv1.RevokeKeyResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	res, changed, err := s.revokeKey(ctx, req)
	if err != nil || changed {
		s.audit(ctx, "revoke", "api_key", res.GetApiKey().GetId(), err)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) revokeKey(ctx context.Context, req *configv1.RevokeKeyRequest) (*configv1.RevokeKeyResponse, bool, error) {
	rec, err := s.findKey(req.GetId())
	if err != nil {
		return nil, false, s.toConnectError(ctx, err)
	}
	if rec.GetKey().GetRevoked() {
		return &configv1.RevokeKeyResponse{ApiKey: proto.CloneOf(rec.GetKey())}, false, nil
	}
	upd := proto.CloneOf(rec)
	upd.Key.Revoked = true
	upd.Key.RevokeTime = timestamppb.New(s.now())
	rev, err := s.st.PutKey(ctx, upd, rec.GetKey().GetRevision())
	if err != nil {
		return nil, false, s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	s.revokeTokens(ctx, rec.GetKey().GetPrincipal(), rec.GetKey().GetId(), "")
	k := upd.GetKey()
	k.Revision = rev
	return &configv1.RevokeKeyResponse{ApiKey: k}, true, nil
}

func (s *Service) findKey(id string) (*storev1.KeyRecord, error) {
	if id == "" {
		return nil, invalid("id: required")
	}
	if rec, ok := s.st.Key(id); ok {
		return rec, nil
	}
	if len(id) < 6 {
		return nil, invalid("id: a key id or at least 6 characters of its display prefix")
	}
	var match *storev1.KeyRecord
	for _, rec := range s.st.Keys() {
		if strings.HasPrefix(rec.GetKey().GetDisplayPrefix(), id) {
			if match != nil {
				return nil, invalid("id: prefix matches more than one key; use the key id")
			}
			match = rec
		}
	}
	if match == nil {
		return nil, notFound("api key")
	}
	return match, nil
}
