// Package refresh hands out principals' upstream access tokens from the
// vault and refreshes them ahead of expiry, exactly once across control-plane
// replicas: one in-process flight per grant, then an etcd lock per grant, a
// linearizable re-read (another replica may have refreshed already) and a
// compare-and-swap write. It also saves new grants and revokes them.
package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Config tunes Grants; the zero value is usable.
type Config struct {
	// Margin: an access token expiring within it is refreshed. 60 s when zero.
	Margin time.Duration
	// LockTTL is the lease of the per-grant etcd lock in seconds (a crashed
	// holder releases it after that long). 15 when zero.
	LockTTL int
	// Timeout bounds one refresh: lock, re-read, token request, write.
	// 30 s when zero.
	Timeout time.Duration
	// HTTPClient makes the token and revocation requests. A client with a
	// 10 s timeout when nil.
	HTTPClient *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// OnRefresh, when set, is told the outcome of every refresh attempt:
	// "success", "revoked" (the upstream refused the grant) or "failed".
	OnRefresh func(outcome string)
}

// Grants implements authorize.GrantTokens over the store.
type Grants struct {
	st  *store.Store
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	flights map[string]*flight // in-process refreshes, by grant
}

type flight struct {
	done chan struct{}
	tok  string
	err  error
}

var _ authorize.GrantTokens = (*Grants)(nil)

// New returns Grants over st.
func New(st *store.Store, cfg Config, log *slog.Logger) *Grants {
	if cfg.Margin <= 0 {
		cfg.Margin = 60 * time.Second
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 15
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Grants{st: st, cfg: cfg, log: log, flights: map[string]*flight{}}
}

// Token returns the principal's usable upstream access token for server,
// refreshing it first when it expires within the margin. Errors:
// authorize.ErrNoGrant (no grant), authorize.ErrGrantUnusable (the grant is
// marked for re-authorization, has no refresh token left, or the upstream
// refused the refresh), authorize.ErrUpstreamUnavailable (the upstream token
// endpoint failed or timed out; the grant is kept), or a store error.
func (g *Grants) Token(ctx context.Context, principal, server string) (string, error) {
	gr, ok := g.st.Grant(principal, server)
	if !ok {
		return "", authorize.ErrNoGrant
	}
	if tok, done, err := g.usable(gr); done {
		return tok, err
	}
	tok, err := g.join(ctx, principal, server)
	if errors.Is(err, authorize.ErrUpstreamUnavailable) && g.valid(gr) {
		// Refreshing ahead of expiry failed, but the token still works.
		return gr.Token.GetAccessToken(), nil
	}
	return tok, err
}

// usable decides from a grant alone: done with a token or an error, or not
// done (a refresh is needed).
func (g *Grants) usable(gr *store.Grant) (tok string, done bool, err error) {
	if gr.Conn.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE {
		return "", true, authorize.ErrGrantUnusable
	}
	at := gr.Token.GetAccessToken()
	exp := gr.Token.GetExpiry()
	if at != "" && (exp == nil || g.cfg.Now().Add(g.cfg.Margin).Before(exp.AsTime())) {
		return at, true, nil
	}
	if gr.Token.GetRefreshToken() == "" {
		if g.valid(gr) {
			return at, true, nil
		}
		return "", true, authorize.ErrGrantUnusable
	}
	return "", false, nil
}

// valid reports whether the grant's access token has not expired yet.
func (g *Grants) valid(gr *store.Grant) bool {
	exp := gr.Token.GetExpiry()
	return gr.Conn.GetState() == vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE &&
		gr.Token.GetAccessToken() != "" && (exp == nil || g.cfg.Now().Before(exp.AsTime()))
}

// join waits for this process's refresh of the grant, starting one if none
// is in flight. The refresh runs on its own deadline, so a caller giving up
// does not fail the others.
func (g *Grants) join(ctx context.Context, principal, server string) (string, error) {
	k := principal + "\x1f" + server
	g.mu.Lock()
	f, ok := g.flights[k]
	if !ok {
		f = &flight{done: make(chan struct{})}
		g.flights[k] = f
		rctx := context.WithoutCancel(ctx)
		go func() {
			f.tok, f.err = g.refresh(rctx, principal, server)
			if g.cfg.OnRefresh != nil {
				g.cfg.OnRefresh(refreshOutcome(f.err))
			}
			g.mu.Lock()
			delete(g.flights, k)
			g.mu.Unlock()
			close(f.done)
		}()
	}
	g.mu.Unlock()
	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// refreshOutcome classifies a refresh result for metrics.
func refreshOutcome(err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, authorize.ErrGrantUnusable), errors.Is(err, authorize.ErrNoGrant):
		return "revoked"
	default:
		return "failed"
	}
}

func lockName(principal, server string) string { return "grant/" + principal + "/" + server }

// refresh runs under the grant's etcd lock.
func (g *Grants) refresh(ctx context.Context, principal, server string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	unlock, err := g.st.Lock(ctx, lockName(principal, server), g.cfg.LockTTL)
	if err != nil {
		return "", fmt.Errorf("refresh %s/%s: %w", principal, server, err)
	}
	defer unlock()

	// Another replica may have refreshed while we waited: read etcd itself.
	gr, err := g.st.GetGrant(ctx, principal, server)
	if errors.Is(err, store.ErrNotFound) {
		return "", authorize.ErrNoGrant
	}
	if err != nil {
		return "", fmt.Errorf("refresh %s/%s: %w", principal, server, err)
	}
	if tok, done, err := g.usable(gr); done {
		return tok, err
	}
	srv, ok := g.st.Server(server)
	if !ok || srv.Def.GetTokenUrl() == "" {
		return "", fmt.Errorf("refresh %s/%s: server has no token_url", principal, server)
	}
	conf := &oauth2.Config{
		ClientID:     srv.Def.GetClientId(),
		ClientSecret: srv.Secrets.GetClientSecret(),
		Endpoint:     oauth2.Endpoint{TokenURL: srv.Def.GetTokenUrl()},
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, g.cfg.HTTPClient)
	nt, err := conf.TokenSource(hctx, &oauth2.Token{RefreshToken: gr.Token.GetRefreshToken(), Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return "", g.failed(ctx, gr, err)
	}
	if nt.AccessToken == "" {
		return "", fmt.Errorf("refresh %s/%s: %w: empty access token", principal, server, authorize.ErrUpstreamUnavailable)
	}

	now := g.cfg.Now()
	tok := proto.CloneOf(gr.Token)
	tok.AccessToken, tok.TokenType, tok.Expiry = nt.AccessToken, nt.TokenType, nil
	if nt.RefreshToken != "" {
		tok.RefreshToken = nt.RefreshToken // rotated; otherwise keep the old one
	}
	conn := proto.CloneOf(gr.Conn)
	conn.UpdateTime, conn.AccessTokenExpireTime = timestamppb.New(now), nil
	if !nt.Expiry.IsZero() {
		tok.Expiry = timestamppb.New(nt.Expiry)
		conn.AccessTokenExpireTime = tok.Expiry
	}
	conn.HasRefreshToken = tok.RefreshToken != ""
	if s, _ := nt.Extra("scope").(string); s != "" {
		conn.Scopes = strings.Fields(s)
	}
	rev, err := g.st.PutGrant(ctx, conn, tok, gr.Revision)
	switch {
	case errors.Is(err, store.ErrConflict):
		// Revoked or replaced by a new sign-in while we held the lock: the
		// stored record wins.
		cur, rerr := g.st.GetGrant(ctx, principal, server)
		if errors.Is(rerr, store.ErrNotFound) {
			return "", authorize.ErrNoGrant
		}
		if rerr != nil {
			return "", fmt.Errorf("refresh %s/%s: %w", principal, server, rerr)
		}
		if t, done, uerr := g.usable(cur); done {
			return t, uerr
		}
		return "", authorize.ErrGrantUnusable
	case err != nil:
		// The new token works but could not be saved; a rotated refresh
		// token may be lost, so the next refresh may need a new sign-in.
		g.log.ErrorContext(ctx, "refreshed grant not saved", slog.String("principal", principal), slog.String("server", server), slog.Any("err", err))
		return nt.AccessToken, nil
	}
	g.log.InfoContext(ctx, "upstream grant refreshed", slog.String("principal", principal), slog.String("server", server), slog.Time("expiry", nt.Expiry))
	// Let this replica's cache catch up so the next Token is served from it.
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
	_ = g.st.WaitRevision(wctx, rev)
	wcancel()
	return nt.AccessToken, nil
}

// failed classifies a failed refresh: the upstream refusing the grant (4xx)
// marks it NEEDS_REAUTH; anything else leaves it as it is.
func (g *Grants) failed(ctx context.Context, gr *store.Grant, err error) error {
	p, s := gr.Conn.GetPrincipal(), gr.Conn.GetServer()
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		st := re.Response.StatusCode
		if st >= 400 && st < 500 && st != http.StatusRequestTimeout && st != http.StatusTooManyRequests {
			conn := proto.CloneOf(gr.Conn)
			conn.State = vaultv1.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH
			conn.UpdateTime = timestamppb.New(g.cfg.Now())
			if _, perr := g.st.PutGrant(ctx, conn, gr.Token, gr.Revision); perr != nil {
				g.log.WarnContext(ctx, "grant not marked for re-authorization", slog.String("principal", p), slog.String("server", s), slog.Any("err", perr))
			}
			g.log.WarnContext(ctx, "upstream refused refresh; grant needs re-authorization",
				slog.String("principal", p), slog.String("server", s), slog.Int("status", st), slog.String("error", re.ErrorCode))
			return fmt.Errorf("refresh %s/%s: %w: upstream answered %d %s", p, s, authorize.ErrGrantUnusable, st, re.ErrorCode)
		}
		g.log.WarnContext(ctx, "upstream token endpoint failed", slog.String("principal", p), slog.String("server", s), slog.Int("status", st))
		return fmt.Errorf("refresh %s/%s: %w: upstream answered %d", p, s, authorize.ErrUpstreamUnavailable, st)
	}
	g.log.WarnContext(ctx, "upstream token endpoint unreachable", slog.String("principal", p), slog.String("server", s), slog.Any("err", err))
	return fmt.Errorf("refresh %s/%s: %w: %w", p, s, authorize.ErrUpstreamUnavailable, err)
}

// Store saves a new grant (after a sign-in), replacing any previous one:
// ACTIVE, with the token sealed in the vault.
func (g *Grants) Store(ctx context.Context, principal, server string, tok *oauth2.Token, scopes []string, clientID string) error {
	if tok == nil || tok.AccessToken == "" {
		return errors.New("store grant: no access token")
	}
	now := timestamppb.New(g.cfg.Now())
	conn := &vaultv1.Connection{
		Principal: principal, Server: server, Scopes: scopes,
		State:      vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE,
		CreateTime: now, UpdateTime: now,
		HasRefreshToken: tok.RefreshToken != "",
	}
	ut := &storev1.UpstreamToken{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, ClientId: clientID}
	if !tok.Expiry.IsZero() {
		ut.Expiry = timestamppb.New(tok.Expiry)
		conn.AccessTokenExpireTime = ut.Expiry
	}
	rev, err := g.st.PutGrant(ctx, conn, ut, -1)
	if err != nil {
		return fmt.Errorf("store grant %s/%s: %w", principal, server, err)
	}
	if err := g.st.WaitRevision(ctx, rev); err != nil {
		return fmt.Errorf("store grant %s/%s: %w", principal, server, err)
	}
	return nil
}

// errNoGrant is what Revoke returns when there is nothing to revoke; it
// matches both authorize.ErrNoGrant and store.ErrNotFound.
var errNoGrant = fmt.Errorf("%w: %w", authorize.ErrNoGrant, store.ErrNotFound)

// Revoke deletes the principal's grant for server and, when the server has
// a revocation_url, revokes its refresh token (or access token) at the
// upstream (RFC 7009) with the gateway's client credentials. An upstream
// failure is logged and reported as upstreamRevoked=false; the grant is
// deleted either way. No grant: an error matching authorize.ErrNoGrant and
// store.ErrNotFound.
func (g *Grants) Revoke(ctx context.Context, principal, server string) (upstreamRevoked bool, err error) {
	// Hold the grant's lock so no refresh swaps the token under us.
	unlock, err := g.st.Lock(ctx, lockName(principal, server), g.cfg.LockTTL)
	if err != nil {
		return false, fmt.Errorf("revoke %s/%s: %w", principal, server, err)
	}
	defer unlock()
	gr, err := g.st.GetGrant(ctx, principal, server)
	if errors.Is(err, store.ErrNotFound) {
		return false, errNoGrant
	}
	if err != nil {
		return false, fmt.Errorf("revoke %s/%s: %w", principal, server, err)
	}
	rev, err := g.st.DeleteGrant(ctx, principal, server, gr.Revision)
	if errors.Is(err, store.ErrNotFound) {
		return false, errNoGrant
	}
	if err != nil {
		return false, fmt.Errorf("revoke %s/%s: %w", principal, server, err)
	}
	_ = g.st.WaitRevision(ctx, rev)
	srv, ok := g.st.Server(server)
	if !ok || srv.Def.GetRevocationUrl() == "" {
		return false, nil
	}
	token, hint := gr.Token.GetRefreshToken(), "refresh_token"
	if token == "" {
		token, hint = gr.Token.GetAccessToken(), "access_token"
	}
	if token == "" {
		return false, nil
	}
	if err := g.revokeUpstream(ctx, srv, token, hint); err != nil {
		g.log.WarnContext(ctx, "upstream revocation failed; grant deleted anyway",
			slog.String("principal", principal), slog.String("server", server), slog.Any("err", err))
		return false, nil
	}
	g.log.InfoContext(ctx, "grant revoked", slog.String("principal", principal), slog.String("server", server))
	return true, nil
}

func (g *Grants) revokeUpstream(ctx context.Context, srv *store.Server, token, hint string) error {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	id, secret := srv.Def.GetClientId(), srv.Secrets.GetClientSecret()
	if secret == "" {
		form.Set("client_id", id)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.Def.GetRevocationUrl(), strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("revocation request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		// RFC 6749 section 2.3.1: form-encode both before Basic.
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := g.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("revocation request: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revocation endpoint answered %d", resp.StatusCode)
	}
	return nil
}
