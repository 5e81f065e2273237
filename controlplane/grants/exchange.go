package grants

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// RFC 8693 names.
const (
	GrantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeIDJAG       = "urn:ietf:params:oauth:token-type:id-jag"
)

// ActionExchange is the audit procedure of a token exchange.
const ActionExchange = "grants/token-exchange"

// maxExchangeBody bounds a token endpoint's answer.
const maxExchangeBody = 64 << 10

// ExchangeTokens yields the upstream access token of an oauth2
// token_exchange server for a principal. *TokenExchange implements it.
type ExchangeTokens interface {
	Token(ctx context.Context, principal string, srv *store.Server) (accessToken string, err error)
}

// TokenExchange obtains upstream tokens on a person's behalf (RFC 8693):
// it presents the person's identity provider token, kept sealed by
// store.SaveIdPToken at sign-in, as the subject token at the server's
// token_url and gets a token for the server's audience and scopes.
//
// golang.org/x/oauth2 has no RFC 8693 client: oauth2.Config.Exchange always
// sends grant_type=authorization_code and a code, and clientcredentials
// always sends grant_type=client_credentials, so neither can carry
// subject_token. This is the small client on net/http, authenticating as
// clientcredentials does (HTTP Basic with the form-encoded client id and
// secret, RFC 6749 section 2.3.1).
//
// Results are cached until Margin before they expire, sealed in etcd on a
// lease (ExchangedTokens) so every replica shares them, and in memory.
// Exactly one exchange runs per (principal, server) at a time across
// replicas (the grant's etcd lock, then a linearizable re-read) and within
// a process (singleflight).
type TokenExchange struct {
	st     *store.Store
	cfg    Config
	log    *slog.Logger
	flight singleflight.Group

	mu    sync.Mutex
	cache map[string]exchanged // by ExchangedTokenName
}

type exchanged struct {
	uid   string
	rev   int64 // the server's revision it was obtained for
	token string
	useBy time.Time
}

var _ ExchangeTokens = (*TokenExchange)(nil)

// NewTokenExchange returns a TokenExchange over st (cfg as for New).
func NewTokenExchange(st *store.Store, cfg Config, log *slog.Logger) *TokenExchange {
	g := New(st, cfg, log) // the same defaults
	return &TokenExchange{st: st, cfg: g.cfg, log: log, cache: map[string]exchanged{}}
}

// Token implements ExchangeTokens. Errors: ErrNoGrant (the person has no
// identity provider token: they must sign in with their IdP),
// ErrGrantUnusable (the upstream refused the subject token),
// ErrUpstreamUnavailable (the token endpoint failed), a store error.
func (x *TokenExchange) Token(ctx context.Context, principal string, srv *store.Server) (string, error) {
	p, ok := x.st.Principal(principal)
	if !ok {
		return "", ErrNoGrant
	}
	name := store.ExchangedTokenName(principal, srv.Def.GetName())
	if tok, ok := x.cached(name, p.GetUid(), srv.Def.GetRevision()); ok {
		return tok, nil
	}
	ch := x.flight.DoChan(name, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), x.cfg.Timeout)
		defer cancel()
		return x.obtain(ctx, principal, p.GetUid(), srv)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (x *TokenExchange) cached(name, uid string, rev int64) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.cache[name]
	if !ok || e.uid != uid || e.rev != rev || !x.cfg.Now().Before(e.useBy) {
		return "", false
	}
	return e.token, true
}

func (x *TokenExchange) remember(name, uid string, rev int64, tok *storev1.UpstreamToken) {
	useBy := x.cfg.Now().Add(DefaultNoExpiryTTL)
	if exp := tok.GetExpiry(); exp != nil {
		useBy = exp.AsTime().Add(-x.cfg.Margin)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.cache[name] = exchanged{uid: uid, rev: rev, token: tok.GetAccessToken(), useBy: useBy}
}

// obtain runs under the (principal, server) etcd lock: a token another
// replica stored meanwhile is used, else one exchange.
func (x *TokenExchange) obtain(ctx context.Context, principal, uid string, srv *store.Server) (string, error) {
	server := srv.Def.GetName()
	name := store.ExchangedTokenName(principal, server)
	if tok, ok := x.stored(ctx, principal, uid, srv); ok {
		return tok, nil
	}
	unlock, err := x.st.Lock(ctx, "exchange/"+principal+"/"+server)
	if err != nil {
		return "", fmt.Errorf("token exchange %s/%s: %w", principal, server, err)
	}
	defer unlock()
	if tok, ok := x.stored(ctx, principal, uid, srv); ok {
		return tok, nil
	}
	rec, subject, err := x.st.IdPToken(ctx, principal)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", ErrNoGrant
	case err != nil:
		return "", fmt.Errorf("token exchange %s/%s: %w", principal, server, err)
	case rec.GetPrincipalUid() != uid:
		// A token of an earlier principal of the same name.
		return "", ErrNoGrant
	case subject.GetExpiry() != nil && !x.cfg.Now().Before(subject.GetExpiry().AsTime()):
		return "", ErrNoGrant
	}
	if srv.Def.GetTokenUrl() == "" {
		return "", fmt.Errorf("token exchange %s/%s: %w: server has no token_url", principal, server, authorize.ErrMisconfigured)
	}
	tok, err := x.exchange(ctx, srv, subject)
	x.audit(principal, server, rec.GetIdentityProvider(), err)
	if err != nil {
		x.log.WarnContext(ctx, "token exchange failed", slog.String("principal", principal), slog.String("server", server), slog.Any("err", err))
		return "", err
	}
	pt, err := proto.MarshalOptions{Deterministic: true}.Marshal(tok)
	if err != nil {
		return "", err
	}
	sealed, err := x.st.Seal(pt, store.ExchangedTokenAD(principal, server))
	if err != nil {
		return "", err
	}
	ttl := DefaultNoExpiryTTL
	if exp := tok.GetExpiry(); exp != nil {
		ttl = exp.AsTime().Sub(x.cfg.Now()) - x.cfg.Margin
	}
	if ttl >= time.Second {
		rec := &storev1.ExchangedTokenRecord{Principal: principal, Server: server, PrincipalUid: uid, SealedToken: sealed}
		if _, err := x.st.ExchangedTokens().PutLeased(ctx, name, rec, ttl, -1); err != nil {
			// The token works; the next caller exchanges again.
			x.log.WarnContext(ctx, "exchanged token not cached", slog.String("principal", principal), slog.String("server", server), slog.Any("err", err))
		}
		x.remember(name, uid, srv.Def.GetRevision(), tok)
	}
	return tok.GetAccessToken(), nil
}

// stored reads a usable exchanged token from etcd (linearizable).
func (x *TokenExchange) stored(ctx context.Context, principal, uid string, srv *store.Server) (string, bool) {
	server := srv.Def.GetName()
	rec, _, err := x.st.ExchangedTokens().Get(ctx, store.ExchangedTokenName(principal, server))
	if err != nil || rec.GetPrincipalUid() != uid {
		return "", false
	}
	pt, err := x.st.Open(rec.GetSealedToken(), store.ExchangedTokenAD(principal, server))
	if err != nil {
		return "", false
	}
	tok := new(storev1.UpstreamToken)
	if proto.Unmarshal(pt, tok) != nil || tok.GetAccessToken() == "" {
		return "", false
	}
	if exp := tok.GetExpiry(); exp != nil && !x.cfg.Now().Add(x.cfg.Margin).Before(exp.AsTime()) {
		return "", false
	}
	x.remember(store.ExchangedTokenName(principal, server), uid, srv.Def.GetRevision(), tok)
	return tok.GetAccessToken(), true
}

// exchange makes the RFC 8693 request.
func (x *TokenExchange) exchange(ctx context.Context, srv *store.Server, subject *storev1.IdPToken) (*storev1.UpstreamToken, error) {
	typ := subject.GetSubjectTokenType()
	if typ == "" {
		typ = TokenTypeIDToken
	}
	form := url.Values{
		"grant_type":           {GrantTokenExchange},
		"subject_token":        {subject.GetSubjectToken()},
		"subject_token_type":   {typ},
		"requested_token_type": {TokenTypeAccessToken},
	}
	aud := srv.Def.GetTokenExchangeAudience()
	if aud == "" {
		aud = srv.Def.GetUrl()
	}
	form.Set("audience", aud)
	form.Set("resource", srv.Def.GetUrl())
	if sc := srv.Def.GetScopes(); len(sc) > 0 {
		form.Set("scope", strings.Join(sc, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.Def.GetTokenUrl(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpstreamUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if id := srv.Def.GetClientId(); id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(srv.Secrets.GetClientSecret()))
	}
	resp, err := x.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUpstreamUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxExchangeBody+1))
	if err != nil || len(b) > maxExchangeBody {
		return nil, fmt.Errorf("%w: unreadable or oversized answer", ErrUpstreamUnavailable)
	}
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
		Error       string `json:"error"`
	}
	_ = json.Unmarshal(b, &out)
	switch {
	case resp.StatusCode == http.StatusBadRequest && (out.Error == "invalid_grant" || out.Error == "invalid_target" || out.Error == "unauthorized_client"):
		// The upstream refused the person's token (or this exchange): the
		// person must sign in again.
		return nil, fmt.Errorf("%w: %s", ErrGrantUnusable, out.Error)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: status %d", ErrUpstreamUnavailable, resp.StatusCode)
	case out.AccessToken == "":
		return nil, fmt.Errorf("%w: no access token", ErrUpstreamUnavailable)
	case out.TokenType != "" && !strings.EqualFold(out.TokenType, "bearer") && !strings.EqualFold(out.TokenType, "N_A"):
		return nil, fmt.Errorf("%w: token type %q", ErrUpstreamUnavailable, out.TokenType)
	}
	tok := &storev1.UpstreamToken{AccessToken: out.AccessToken, TokenType: "Bearer", ClientId: srv.Def.GetClientId()}
	if out.ExpiresIn > 0 {
		tok.Expiry = timestamppb.New(x.cfg.Now().Add(time.Duration(out.ExpiresIn) * time.Second))
	}
	return tok, nil
}

func (x *TokenExchange) audit(principal, server, idp string, err error) {
	code := "ok"
	switch {
	case errors.Is(err, ErrGrantUnusable):
		code = "refused"
	case err != nil:
		code = "failed"
	}
	_ = x.cfg.Audit.Admin(audit.Admin{Time: x.cfg.Now(), Principal: principal, Procedure: ActionExchange + " " + GrantTokenExchange, Object: principal + "/" + server + " idp:" + idp, Code: code})
}

// UseBy reports until when the token Token last returned for principal
// and srv may be used (its expiry minus the margin): the bound of a data
// plane's reuse of a decision carrying it. False when none is held in
// memory (for instance one read from the store by another path).
func (x *TokenExchange) UseBy(principal string, srv *store.Server) (time.Time, bool) {
	p, ok := x.st.Principal(principal)
	if !ok {
		return time.Time{}, false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.cache[store.ExchangedTokenName(principal, srv.Def.GetName())]
	if !ok || e.uid != p.GetUid() || e.rev != srv.Def.GetRevision() {
		return time.Time{}, false
	}
	return e.useBy, true
}
