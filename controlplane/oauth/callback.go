package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// callback handles GET /oauth/callback, the upstream's redirect back to
// the gateway.
func (s *Server) callback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	bad := func(msg string) { s.errorPage(w, r, http.StatusBadRequest, "Sign-in failed", msg) }
	if state == "" || len(state) > 200 || len(q["state"]) > 1 {
		bad("The sign-in response has no valid state. Start again.")
		return
	}
	sum := store.HashKey(state)
	rec, _, err := s.st.OAuthStates().Find(ctx, sum)
	if err != nil || !s.now().Before(rec.GetExpireTime().AsTime()) {
		bad("This sign-in is unknown, expired or already finished. Start again.")
		return
	}
	sess, ok := s.session(r)
	if !ok || sess.id != rec.GetSession() || sess.rec.GetPrincipal() != rec.GetPrincipal() {
		bad("This sign-in was started in another browser session. Start again from this browser.")
		return
	}
	if _, err := s.st.OAuthStates().Take(ctx, sum); err != nil {
		bad("This sign-in is unknown, expired or already finished. Start again.")
		return
	}
	auth := rec.GetAuthorization()
	srv, ok := s.st.Server(rec.GetServer())
	if !ok {
		bad("The server of this sign-in no longer exists.")
		return
	}
	if !issOK(q, srv.Def.GetIssuer()) {
		s.log.WarnContext(ctx, "upstream iss missing or mismatched", "server", rec.GetServer())
		bad(msgBadIssuer)
		return
	}
	if q.Get("error") != "" {
		s.log.InfoContext(ctx, "upstream authorization refused", "server", rec.GetServer(), "principal", rec.GetPrincipal())
		if auth != nil {
			redirectError(w, r, auth.GetRedirectUri(), auth.GetState(), "access_denied", "the upstream sign-in was not completed")
			return
		}
		s.errorPage(w, r, http.StatusForbidden, "Not connected", "The sign-in at "+srv.Def.GetName()+" was cancelled or refused. Nothing was saved.")
		return
	}
	code := q.Get("code")
	if code == "" {
		bad("The sign-in response has no authorization code.")
		return
	}
	xctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient), 20*time.Second)
	defer cancel()
	tok, err := upstreamConfig(issuer(r), srv, rec.GetScopes()).Exchange(xctx, code, oauth2.VerifierOption(rec.GetCodeVerifier()))
	if err != nil {
		s.log.WarnContext(ctx, "upstream code exchange failed", "server", rec.GetServer(), "err", exchangeErr(err))
		if auth != nil {
			redirectError(w, r, auth.GetRedirectUri(), auth.GetState(), "server_error", "the upstream token exchange failed")
			return
		}
		s.errorPage(w, r, http.StatusBadGateway, "Not connected", "The server's sign-in did not give the gateway a token. Try again later.")
		return
	}
	scopes := rec.GetScopes()
	if sc, ok := tok.Extra("scope").(string); ok && sc != "" {
		scopes = strings.Fields(sc)
	}
	if err := s.grants.Store(ctx, rec.GetPrincipal(), rec.GetServer(), tok, scopes, srv.Def.GetClientId()); err != nil {
		s.log.ErrorContext(ctx, "store upstream grant", "server", rec.GetServer(), "err", err)
		if auth != nil {
			redirectError(w, r, auth.GetRedirectUri(), auth.GetState(), "temporarily_unavailable", "try again in a moment")
			return
		}
		s.errorPage(w, r, http.StatusServiceUnavailable, "Not connected", "The gateway could not save the connection. Try again in a moment.")
		return
	}
	s.log.InfoContext(ctx, "upstream grant stored", "server", rec.GetServer(), "principal", rec.GetPrincipal())
	if auth == nil {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, issuer(r)+"/connections", http.StatusSeeOther)
		return
	}
	s.issueCode(w, r, auth)
}

// exchangeErr describes an exchange failure without the response body.
func exchangeErr(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			return "token endpoint error " + re.ErrorCode
		}
		if re.Response != nil {
			return "token endpoint status " + re.Response.Status
		}
	}
	return "token endpoint unreachable"
}

// msgBadIssuer is the fixed text for an authorization response without the
// configured upstream's iss or with another one.
const msgBadIssuer = "The sign-in response came from an unexpected issuer. Nothing was saved."

// issOK applies RFC 9207 to an upstream authorization response (success or
// error): when the server's issuer is configured, the response must carry
// exactly one iss equal to it by simple string comparison (section 2.4); a
// missing iss is refused too, or an attacker's mix-up response would only
// have to leave it out. Without a configured issuer nothing is checked.
func issOK(q url.Values, want string) bool {
	if want == "" {
		return true
	}
	got := q["iss"]
	return len(got) == 1 && got[0] == want
}

// storeGrants is the Grants used without a refresher: it saves grants like
// the refresher does and revokes them locally only.
type storeGrants struct {
	st  *store.Store
	now func() time.Time
}

// Store saves the grant the one way grants are saved (grants.Save).
func (g storeGrants) Store(ctx context.Context, principal, server string, tok *oauth2.Token, scopes []string, clientID string) error {
	rev, err := grants.Save(ctx, g.st, g.now(), principal, server, tok, scopes, clientID)
	if err != nil {
		return err
	}
	return g.st.WaitRevision(ctx, rev)
}

func (g storeGrants) Revoke(ctx context.Context, principal, server string) (bool, error) {
	rev, err := g.st.DeleteGrant(ctx, principal, server, 0)
	if err != nil {
		return false, err
	}
	return false, g.st.WaitRevision(ctx, rev)
}
