package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// Kinds of the identity-provider records.
const (
	// KindIdentityProvider holds the configured identity providers
	// (cached), by name.
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

func decodeIdentityProvider(_ string, value []byte, rev int64) (any, error) {
	var p configv1.IdentityProvider
	if err := proto.Unmarshal(value, &p); err != nil {
		return nil, fmt.Errorf("decode identity provider: %w", err)
	}
	p.Revision = rev
	return &p, nil
}

// IdentityProvider returns the cached identity provider called name.
func (s *Store) IdentityProvider(name string) (*configv1.IdentityProvider, bool) {
	return cached[*configv1.IdentityProvider](s.cache, KindIdentityProvider, name)
}

// IdentityProviders returns every cached identity provider, sorted by name.
func (s *Store) IdentityProviders() []*configv1.IdentityProvider {
	out := cachedList[*configv1.IdentityProvider](s.cache, KindIdentityProvider)
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// PutIdentityProvider stores p (without its client secret, which this
// accessor does not keep) iff the stored revision equals expected (0 =
// create, -1 = unconditional). It is the minimal writer the ID-JAG grant's
// tests use until the identity-provider admin API lands.
func (s *Store) PutIdentityProvider(ctx context.Context, p *configv1.IdentityProvider, expected int64) (int64, error) {
	p = proto.CloneOf(p)
	p.Revision, p.ClientSecretSet = 0, false
	b, err := proto.Marshal(p)
	if err != nil {
		return 0, fmt.Errorf("marshal identity provider: %w", err)
	}
	return s.put(ctx, key(KindIdentityProvider, p.GetName()), b, expected)
}

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

// DeleteIdentityProvider deletes the provider called name iff its revision
// equals expected (0 = any).
func (s *Store) DeleteIdentityProvider(ctx context.Context, name string, expected int64) (int64, error) {
	return s.del(ctx, key(KindIdentityProvider, name), expected)
}
