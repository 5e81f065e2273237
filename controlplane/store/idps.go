package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// Kinds of the identity-provider records.
const (
	// KindIdentityProvider holds the configured identity providers
	// (cached), by name, as IdentityProviderRecords (see idp.go).
	KindIdentityProvider = "identityproviders"
	// KindUsedAssertion marks redeemed identity assertions (ID-JAG jti),
	// on leases ending with the assertion.
	KindUsedAssertion = "usedassertions"
	// KindIdPToken holds a person's sealed identity provider token, by
	// principal name.
	KindIdPToken = "idptokens"
	// KindExchangedToken caches upstream tokens obtained by token exchange,
	// sealed, on leases ending with the token.
	KindExchangedToken = "exchangedtokens"
)

// UsedAssertions mark redeemed identity assertions, by the SHA-256 of
// AssertionID(issuer, jti).
func (s *Store) UsedAssertions() SecretRecords[*storev1.UsedAssertionRecord] {
	return SecretRecords[*storev1.UsedAssertionRecord]{records(s, KindUsedAssertion, func() *storev1.UsedAssertionRecord { return new(storev1.UsedAssertionRecord) })}
}

// AssertionID is what a used assertion is recorded under: its issuer and
// jti (a jti is unique per issuer only).
func AssertionID(issuer, jti string) string { return issuer + " " + jti }

// IdPTokens are people's sealed identity provider tokens, by principal.
func (s *Store) IdPTokens() Records[*storev1.IdPTokenRecord] {
	return records(s, KindIdPToken, func() *storev1.IdPTokenRecord { return new(storev1.IdPTokenRecord) })
}

// ExchangedTokens are the cached token-exchange results, by
// ExchangedTokenName(principal, server).
func (s *Store) ExchangedTokens() Records[*storev1.ExchangedTokenRecord] {
	return records(s, KindExchangedToken, func() *storev1.ExchangedTokenRecord { return new(storev1.ExchangedTokenRecord) })
}

// ExchangedTokenName names the cached exchange result of (principal,
// server).
func ExchangedTokenName(principal, server string) string { return grantName(principal, server) }

// IdPTokenAD binds a person's sealed IdP token to the principal.
func IdPTokenAD(principal string) []byte { return []byte("mcpgate/idp-token/" + principal) }

// ExchangedTokenAD binds a sealed exchanged token to (principal, server).
func ExchangedTokenAD(principal, server string) []byte {
	return []byte("mcpgate/exchanged-token/" + principal + "\x1f" + server)
}

// SaveIdPToken keeps the identity provider token of principal (whose uid
// is uid), signed in through the provider idp, sealed, for token exchanges
// on the person's behalf; it replaces any previous one. The OIDC sign-in
// calls it after a successful sign-in. The record lives on a lease that
// ends with the token's expiry (no expiry: 12 hours).
func (s *Store) SaveIdPToken(ctx context.Context, principal, uid, idp string, tok *storev1.IdPToken) (int64, error) {
	pt, err := proto.MarshalOptions{Deterministic: true}.Marshal(tok)
	if err != nil {
		return 0, fmt.Errorf("marshal idp token: %w", err)
	}
	sealed, err := s.seal.Seal(pt, IdPTokenAD(principal))
	if err != nil {
		return 0, err
	}
	ttl := 12 * time.Hour
	if exp := tok.GetExpiry(); exp != nil {
		ttl = time.Until(exp.AsTime())
		if ttl < time.Second {
			return 0, fmt.Errorf("save idp token: %w", ErrExpired)
		}
	}
	rec := &storev1.IdPTokenRecord{Principal: principal, PrincipalUid: uid, IdentityProvider: idp, SealedToken: sealed}
	return s.IdPTokens().PutLeased(ctx, principal, rec, ttl, -1)
}

// IdPToken reads and opens the identity provider token kept for principal
// (linearizable). A missing, undecodable or unopenable record is
// ErrNotFound.
func (s *Store) IdPToken(ctx context.Context, principal string) (*storev1.IdPTokenRecord, *storev1.IdPToken, error) {
	rec, _, err := s.IdPTokens().Get(ctx, principal)
	if err != nil {
		return nil, nil, err
	}
	pt, err := s.seal.Open(rec.GetSealedToken(), IdPTokenAD(principal))
	if err != nil {
		return nil, nil, fmt.Errorf("open idp token: %w: %w", ErrNotFound, err)
	}
	tok := new(storev1.IdPToken)
	if err := proto.Unmarshal(pt, tok); err != nil {
		return nil, nil, fmt.Errorf("decode idp token: %w: %w", ErrNotFound, err)
	}
	return rec, tok, nil
}

// ErrExpired: a token to keep has already expired.
var ErrExpired = errors.New("already expired")
