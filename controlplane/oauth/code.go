package oauth

import (
	"context"
	"errors"
	"net/url"

	"google.golang.org/protobuf/proto"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// MaxCodeFailures is how many failed token requests an authorization code
// survives. A failure proves no possession of the code's binding (wrong
// client, redirect_uri, PKCE verifier or resource), so it does not consume
// the code: a party holding a stolen code cannot burn the legitimate
// client's exchange with one request. The limit bounds what such a party
// can try; the code is deleted when it is reached.
const MaxCodeFailures = 5

var errCodeContention = tokErr("invalid_grant", "the authorization code changed concurrently")

// redeemCode consumes the code whose SHA-256 is sum when the request proves possession
// of it: the code's client, its redirect_uri, a verifier matching its PKCE
// challenge and a resource (when given) equal to its audience. A failed check
// counts against the code (compare-and-swap on its revision, keeping its
// lease) and answers the check's error. A code that is gone but was redeemed
// before revokes the tokens issued from it (RFC 6749 section 4.1.2).
func (s *Server) redeemCode(ctx context.Context, c *client, sum [32]byte, form url.Values) (*storev1.OAuthCodeRecord, *tokenError) {
	codes, id := s.st.OAuthCodes(), store.KeyID(sum)
	for range 5 {
		rec, rev, err := codes.Find(ctx, sum)
		if err != nil {
			if !isNotFound(err) {
				s.log.ErrorContext(ctx, "read code", "err", err)
				return nil, errTokenUnavailable
			}
			if used, _, err := s.st.OAuthUsedCodes().Find(ctx, sum); err == nil {
				s.log.WarnContext(ctx, "authorization code replayed; revoking its tokens", "client_id", c.id)
				s.revokeFamily(ctx, used.GetFamily())
			}
			return nil, errBadCode
		}
		if !s.now().Before(rec.GetExpireTime().AsTime()) {
			return nil, errBadCode
		}
		if terr := s.checkCode(c, rec, form); terr != nil {
			switch err := s.countCodeFailure(ctx, id, rec, rev); {
			case errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound):
				continue // changed meanwhile: judge the request again
			case err != nil:
				s.log.ErrorContext(ctx, "count code failure", "err", err)
				return nil, errTokenUnavailable
			}
			return nil, terr
		}
		switch _, err := codes.Delete(ctx, id, rev); {
		case errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound):
			continue // a failure was counted or the code redeemed meanwhile
		case err != nil:
			s.log.ErrorContext(ctx, "consume code", "err", err)
			return nil, errTokenUnavailable
		}
		if _, err := s.st.OAuthUsedCodes().Create(ctx, sum, &storev1.OAuthUsedCodeRecord{Family: rec.GetFamily(), Sha256: sum[:]}, s.cfg.RefreshTokenTTL); err != nil {
			s.log.WarnContext(ctx, "mark code used", "err", err)
		}
		return rec, nil
	}
	return nil, errCodeContention
}

// checkCode verifies the request's binding to the code.
func (s *Server) checkCode(c *client, rec *storev1.OAuthCodeRecord, form url.Values) *tokenError {
	auth := rec.GetAuthorization()
	switch {
	case auth.GetClientId() != c.id:
		return tokErr("invalid_grant", "the code was issued to another client")
	case auth.GetRedirectUri() != form.Get("redirect_uri"):
		return tokErr("invalid_grant", "redirect_uri differs from the authorization request")
	case !pkceOK(form.Get("code_verifier"), auth.GetCodeChallenge()):
		return tokErr("invalid_grant", "code_verifier does not match the code challenge")
	}
	return checkResource(form, rec.GetAudience())
}

// countCodeFailure records one failed attempt on the code at rev, deleting
// it at MaxCodeFailures.
func (s *Server) countCodeFailure(ctx context.Context, id string, rec *storev1.OAuthCodeRecord, rev int64) error {
	n := rec.GetFailedAttempts() + 1
	codes := s.st.OAuthCodes()
	if n >= MaxCodeFailures {
		_, err := codes.Delete(ctx, id, rev)
		if err == nil {
			s.log.WarnContext(ctx, "authorization code deleted after failed attempts", "client_id", rec.GetAuthorization().GetClientId(), "attempts", n)
		}
		return err
	}
	next := proto.CloneOf(rec)
	next.FailedAttempts = n
	_, err := codes.Put(ctx, id, next, rev)
	return err
}
