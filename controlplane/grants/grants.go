// Package grants obtains upstream credentials after the decision
// (controlplane/authorize) allowed a request: client_credentials tokens
// minted in memory (ClientCredentials), and principals' vault grants, handed
// out and refreshed ahead of expiry exactly once across control-plane
// replicas: one in-process flight per grant (x/sync/singleflight), then an
// etcd lock per grant, a linearizable re-read (another replica may have
// refreshed already) and a compare-and-swap write. It is also the one place
// grants are saved (after a sign-in), revoked, and marked unusable; every
// such write is audited.
package grants

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// Config tunes Grants; the zero value is usable.
type Config struct {
	// Margin: an access token expiring within it is refreshed. 60 s when zero.
	Margin time.Duration
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
	// Audit, when set, gets one event per grant write: a refresh, a save
	// after a sign-in, a grant marked unusable. Names only, never tokens.
	Audit *audit.Logger
}

// Grants implements GrantTokens over the store.
type Grants struct {
	st  *store.Store
	cfg Config
	log *slog.Logger

	flight singleflight.Group // in-process refreshes, by grant
}

var _ GrantTokens = (*Grants)(nil)

// New returns Grants over st.
func New(st *store.Store, cfg Config, log *slog.Logger) *Grants {
	if cfg.Margin <= 0 {
		cfg.Margin = 60 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.HTTPClient == nil {
		// Refreshes run on the Authorize path when a token nears expiry,
		// many principals' against the same few token endpoints: keep
		// enough idle (TLS) connections per endpoint that a burst of them
		// does not dial and handshake each time (net/http keeps 2).
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: t}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Grants{st: st, cfg: cfg, log: log}
}

// Token returns the principal's usable upstream access token for server,
// refreshing it first when it expires within the margin. Errors:
// ErrNoGrant (no grant), ErrGrantUnusable (the grant is
// marked for re-authorization, has no refresh token left, or the upstream
// refused the refresh), ErrUpstreamUnavailable (the upstream token
// endpoint failed or timed out; the grant is kept), or a store error.
func (g *Grants) Token(ctx context.Context, principal, server string) (string, error) {
	gr, ok := g.st.Grant(principal, server)
	if !ok {
		return "", ErrNoGrant
	}
	if tok, done, err := g.usable(gr); done {
		return tok, err
	}
	tok, err := g.join(ctx, principal, server)
	if errors.Is(err, ErrUpstreamUnavailable) && g.valid(gr) {
		// Refreshing ahead of expiry failed, but the token still works.
		return gr.Token.GetAccessToken(), nil
	}
	return tok, err
}

// usable decides from a grant alone: done with a token or an error, or not
// done (a refresh is needed).
func (g *Grants) usable(gr *store.Grant) (tok string, done bool, err error) {
	if gr.Conn.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE {
		return "", true, ErrGrantUnusable
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
		return "", true, ErrGrantUnusable
	}
	return "", false, nil
}

// valid reports whether the grant's access token has not expired yet.
func (g *Grants) valid(gr *store.Grant) bool { return valid(gr, g.cfg.Now()) }

// join waits for this process's refresh of the grant, starting one if none
// is in flight. The refresh runs on its own deadline, so a caller giving up
// does not fail the others.
func (g *Grants) join(ctx context.Context, principal, server string) (string, error) {
	ch := g.flight.DoChan(principal+"\x1f"+server, func() (any, error) {
		tok, err := g.refresh(context.WithoutCancel(ctx), principal, server)
		if g.cfg.OnRefresh != nil {
			g.cfg.OnRefresh(refreshOutcome(err))
		}
		return tok, err
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

// refreshOutcome classifies a refresh result for metrics.
func refreshOutcome(err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, ErrGrantUnusable), errors.Is(err, ErrNoGrant):
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
	unlock, err := g.st.Lock(ctx, lockName(principal, server))
	if err != nil {
		return "", fmt.Errorf("refresh %s/%s: %w", principal, server, err)
	}
	defer unlock()

	// Another replica may have refreshed while we waited: read etcd itself.
	gr, err := g.st.GetGrant(ctx, principal, server)
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrNoGrant
	}
	if err != nil {
		return "", fmt.Errorf("refresh %s/%s: %w", principal, server, err)
	}
	if tok, done, err := g.usable(gr); done {
		return tok, err
	}
	srv, ok := g.st.Server(server)
	if !ok || srv.Def.GetTokenUrl() == "" {
		return "", fmt.Errorf("refresh %s/%s: %w: server has no token_url", principal, server, authorize.ErrMisconfigured)
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
		return "", fmt.Errorf("refresh %s/%s: %w: empty access token", principal, server, ErrUpstreamUnavailable)
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
			return "", ErrNoGrant
		}
		if rerr != nil {
			return "", fmt.Errorf("refresh %s/%s: %w", principal, server, rerr)
		}
		if t, done, uerr := g.usable(cur); done {
			return t, uerr
		}
		return "", ErrGrantUnusable
	case err != nil:
		// The new token works but could not be saved; a rotated refresh
		// token may be lost, so the next refresh may need a new sign-in.
		g.log.ErrorContext(ctx, "refreshed grant not saved", slog.String("principal", principal), slog.String("server", server), slog.Any("err", err))
		return nt.AccessToken, nil
	}
	g.log.InfoContext(ctx, "upstream grant refreshed", slog.String("principal", principal), slog.String("server", server), slog.Time("expiry", nt.Expiry))
	g.audit(ActionRefresh, principal, server, rev)
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
			if _, perr := g.mark(ctx, gr); perr != nil && !errors.Is(perr, store.ErrConflict) {
				g.log.WarnContext(ctx, "grant not marked for re-authorization", slog.String("principal", p), slog.String("server", s), slog.Any("err", perr))
			}
			g.log.WarnContext(ctx, "upstream refused refresh; grant needs re-authorization",
				slog.String("principal", p), slog.String("server", s), slog.Int("status", st), slog.String("error", re.ErrorCode))
			return fmt.Errorf("refresh %s/%s: %w: upstream answered %d %s", p, s, ErrGrantUnusable, st, re.ErrorCode)
		}
		g.log.WarnContext(ctx, "upstream token endpoint failed", slog.String("principal", p), slog.String("server", s), slog.Int("status", st))
		return fmt.Errorf("refresh %s/%s: %w: upstream answered %d", p, s, ErrUpstreamUnavailable, st)
	}
	g.log.WarnContext(ctx, "upstream token endpoint unreachable", slog.String("principal", p), slog.String("server", s), slog.Any("err", err))
	return fmt.Errorf("refresh %s/%s: %w: %w", p, s, ErrUpstreamUnavailable, err)
}

// Store saves a new grant (after a sign-in) with Save and waits until this
// replica's cache shows it.
func (g *Grants) Store(ctx context.Context, principal, server string, tok *oauth2.Token, scopes []string, clientID string) error {
	rev, err := Save(ctx, g.st, g.cfg.Now(), principal, server, tok, scopes, clientID)
	if err != nil {
		return err
	}
	g.audit(ActionSave, principal, server, rev)
	if err := g.st.WaitRevision(ctx, rev); err != nil {
		return fmt.Errorf("store grant %s/%s: %w", principal, server, err)
	}
	return nil
}

// Save is the one way a new grant (after a sign-in) is written: ACTIVE, the
// token sealed in the vault, replacing any previous grant of the principal
// for server whatever its revision (a fresh sign-in wins over a stored
// grant, refreshed or not; a concurrent refresh's compare-and-swap then
// fails and the saved grant stands). A previous grant's create time is
// kept: it is the same connection, renewed. It returns the write's
// revision.
func Save(ctx context.Context, st *store.Store, now time.Time, principal, server string, tok *oauth2.Token, scopes []string, clientID string) (int64, error) {
	if tok == nil || tok.AccessToken == "" {
		return 0, fmt.Errorf("store grant %s/%s: no access token", principal, server)
	}
	ts := timestamppb.New(now)
	conn := &vaultv1.Connection{
		Principal: principal, Server: server, Scopes: slices.Clone(scopes),
		State:      vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE,
		CreateTime: ts, UpdateTime: ts,
		HasRefreshToken: tok.RefreshToken != "",
	}
	if old, err := st.GetGrant(ctx, principal, server); err == nil && old.Conn.GetCreateTime() != nil {
		conn.CreateTime = old.Conn.GetCreateTime()
	}
	ut := &storev1.UpstreamToken{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, ClientId: clientID}
	if !tok.Expiry.IsZero() {
		ut.Expiry = timestamppb.New(tok.Expiry)
		conn.AccessTokenExpireTime = ut.Expiry
	}
	rev, err := st.PutGrant(ctx, conn, ut, -1)
	if err != nil {
		return 0, fmt.Errorf("store grant %s/%s: %w", principal, server, err)
	}
	return rev, nil
}

// MarkUnusable marks the principal's grant for server NEEDS_REAUTH (the
// upstream refused its access token), by compare-and-swap on the revision
// this replica's cache read it at, and waits until the cache shows the
// mark. A grant that is missing, already marked, or changed meanwhile
// (refreshed, replaced) is left alone: marked is false.
func (g *Grants) MarkUnusable(ctx context.Context, principal, server string) (marked bool, err error) {
	gr, ok := g.st.Grant(principal, server)
	if !ok || gr.Conn.GetState() == vaultv1.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH {
		return false, nil
	}
	rev, err := g.mark(ctx, gr)
	switch {
	case errors.Is(err, store.ErrConflict):
		return false, nil
	case err != nil:
		return false, err
	}
	// Read your writes: the next decision on this replica sees the mark.
	return true, g.st.WaitRevision(ctx, rev)
}

// mark writes gr as NEEDS_REAUTH if it is still at its revision.
func (g *Grants) mark(ctx context.Context, gr *store.Grant) (int64, error) {
	conn := proto.CloneOf(gr.Conn)
	conn.State = vaultv1.ConnectionState_CONNECTION_STATE_NEEDS_REAUTH
	conn.UpdateTime = timestamppb.New(g.cfg.Now())
	rev, err := g.st.PutGrant(ctx, conn, gr.Token, gr.Revision)
	if err == nil {
		g.audit(ActionMarkUnusable, gr.Conn.GetPrincipal(), gr.Conn.GetServer(), rev)
	}
	return rev, err
}

// Audited grant writes (the Procedure of their audit events).
const (
	ActionRefresh      = "grants/refresh"
	ActionSave         = "grants/save"
	ActionMarkUnusable = "grants/mark_unusable"
)

func (g *Grants) audit(action, principal, server string, rev int64) {
	_ = g.cfg.Audit.Admin(audit.Admin{Time: g.cfg.Now(), Procedure: action, Object: principal + "/" + server, Code: "ok", Revision: rev})
}

// errNoGrant is what Revoke returns when there is nothing to revoke; it
// matches both ErrNoGrant and store.ErrNotFound.
var errNoGrant = fmt.Errorf("%w: %w", ErrNoGrant, store.ErrNotFound)

// Revoke deletes the principal's grant for server and, when the server has
// a revocation_url, revokes its refresh token (or access token) at the
// upstream (RFC 7009) with the gateway's client credentials. An upstream
// failure is logged and reported as upstreamRevoked=false; the grant is
// deleted either way. No grant: an error matching ErrNoGrant and
// store.ErrNotFound.
func (g *Grants) Revoke(ctx context.Context, principal, server string) (upstreamRevoked bool, err error) {
	// Hold the grant's lock so no refresh swaps the token under us.
	unlock, err := g.st.Lock(ctx, lockName(principal, server))
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
