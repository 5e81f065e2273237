package store

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// Kinds of the OAuth authorization server's records: short-lived (on
// leases) and not cached, read straight from etcd.
const (
	KindOAuthClient   = "oauthclients"
	KindOAuthRequest  = "oauthrequests" // markers of answered (used) sealed requests
	KindOAuthCode     = "oauthcodes"
	KindOAuthUsedCode = "oauthusedcodes"
	KindOAuthFamily   = "oauthfamilies"
	KindOAuthRefresh  = "oauthrefresh"
	KindOAuthConsent  = "oauthconsents"
	KindOAuthState    = "oauthstates"
	KindOAuthSession  = "oauthsessions"
)

// ErrCorrupt: a stored record does not decode. It always comes with
// ErrNotFound (it is no usable record).
var ErrCorrupt = errors.New("undecodable record")

// Records is the typed view of one kind of uncached record: every read
// decodes, every write encodes, with the store's lease and compare-and-swap
// semantics. A record that does not decode is ErrNotFound and ErrCorrupt.
type Records[T proto.Message] struct {
	s    *Store
	kind string
	newT func() T
}

func records[T proto.Message](s *Store, kind string, newT func() T) Records[T] {
	return Records[T]{s: s, kind: kind, newT: newT}
}

func (r Records[T]) decode(b []byte) (T, error) {
	v := r.newT()
	if err := proto.Unmarshal(b, v); err != nil {
		var zero T
		return zero, fmt.Errorf("decode %s: %w: %w: %w", r.kind, ErrNotFound, ErrCorrupt, err)
	}
	return v, nil
}

// Get reads the record called name (linearizable) and its revision.
func (r Records[T]) Get(ctx context.Context, name string) (T, int64, error) {
	var zero T
	b, rev, err := r.s.Get(ctx, r.kind, name)
	if err != nil {
		return zero, 0, err
	}
	v, err := r.decode(b)
	return v, rev, err
}

// Put writes the record iff its revision equals expected (0 = create, -1 =
// unconditional), keeping the lease it has.
func (r Records[T]) Put(ctx context.Context, name string, v T, expected int64) (int64, error) {
	b, err := proto.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("marshal %s: %w", r.kind, err)
	}
	return r.s.put(ctx, key(r.kind, name), b, expected, clientv3.WithIgnoreLease())
}

// PutLeased writes the record on a fresh lease of ttl iff its revision
// equals expected (0 = create, -1 = unconditional); the record disappears
// by itself when the lease expires.
func (r Records[T]) PutLeased(ctx context.Context, name string, v T, ttl time.Duration, expected int64) (int64, error) {
	b, err := proto.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("marshal %s: %w", r.kind, err)
	}
	return r.s.PutLeasedAt(ctx, r.kind, name, b, ttl, expected)
}

// Delete deletes the record iff its revision equals expected (0 = any).
func (r Records[T]) Delete(ctx context.Context, name string, expected int64) (int64, error) {
	return r.s.del(ctx, key(r.kind, name), expected)
}

// List reads every record of the kind, by name; undecodable ones are left
// out.
func (r Records[T]) List(ctx context.Context) (map[string]T, error) {
	raw, err := r.s.List(ctx, r.kind)
	if err != nil {
		return nil, err
	}
	out := make(map[string]T, len(raw))
	for n, b := range raw {
		if v, err := r.decode(b); err == nil {
			out[n] = v
		}
	}
	return out, nil
}

// hashed is a record named by the id of a secret's SHA-256 that carries
// the whole hash.
type hashed interface {
	proto.Message
	GetSha256() []byte
}

// SecretRecords is the typed view of records named after a secret (a code,
// a refresh token, a state, a session cookie): stored under KeyID of the
// secret's SHA-256, found only when the whole stored hash equals the
// presented one (constant time), never by the id alone.
type SecretRecords[T hashed] struct {
	Records[T]
}

// Find reads the record of the secret whose SHA-256 is sum. A record whose
// stored hash differs (or is missing) is ErrNotFound.
func (r SecretRecords[T]) Find(ctx context.Context, sum [32]byte) (T, int64, error) {
	var zero T
	v, rev, err := r.Get(ctx, KeyID(sum))
	if err != nil {
		return zero, 0, err
	}
	if !sameHash(v.GetSha256(), sum) {
		return zero, 0, fmt.Errorf("find %s: %w", r.kind, ErrNotFound)
	}
	return v, rev, nil
}

// Take reads and deletes the record of the secret whose SHA-256 is sum in
// one round trip (a delete returning the deleted record): exactly one
// caller gets it. A record whose stored hash differs is ErrNotFound (it is
// consumed all the same: only a collision on the id's 96 bits, far beyond
// reach, could name it).
func (r SecretRecords[T]) Take(ctx context.Context, sum [32]byte) (T, error) {
	var zero T
	b, err := r.s.take(ctx, r.kind, KeyID(sum))
	if err != nil {
		return zero, err
	}
	v, err := r.decode(b)
	if err != nil {
		return zero, err
	}
	if !sameHash(v.GetSha256(), sum) {
		return zero, fmt.Errorf("take %s: %w", r.kind, ErrNotFound)
	}
	return v, nil
}

// Create writes v, which must carry sum as its hash, as the record of that
// secret on a fresh lease of ttl (create only).
func (r SecretRecords[T]) Create(ctx context.Context, sum [32]byte, v T, ttl time.Duration) (int64, error) {
	if !sameHash(v.GetSha256(), sum) {
		return 0, fmt.Errorf("create %s: the record does not carry its secret's hash", r.kind)
	}
	return r.PutLeased(ctx, KeyID(sum), v, ttl, 0)
}

// sameHash compares a stored hash with a presented one in constant time.
func sameHash(stored []byte, sum [32]byte) bool {
	return len(stored) == len(sum) && subtle.ConstantTimeCompare(stored, sum[:]) == 1
}

// OAuthClients are the registered OAuth clients, by client id.
func (s *Store) OAuthClients() Records[*storev1.OAuthClientRecord] {
	return records(s, KindOAuthClient, func() *storev1.OAuthClientRecord { return new(storev1.OAuthClientRecord) })
}

// OAuthConsents are the remembered consents, by consent name.
func (s *Store) OAuthConsents() Records[*storev1.OAuthConsentRecord] {
	return records(s, KindOAuthConsent, func() *storev1.OAuthConsentRecord { return new(storev1.OAuthConsentRecord) })
}

// OAuthFamilies are the token families, by family id.
func (s *Store) OAuthFamilies() Records[*storev1.OAuthFamilyRecord] {
	return records(s, KindOAuthFamily, func() *storev1.OAuthFamilyRecord { return new(storev1.OAuthFamilyRecord) })
}

// OAuthSessions are the sign-in sessions, by their cookie's hash.
func (s *Store) OAuthSessions() SecretRecords[*storev1.OAuthSessionRecord] {
	return SecretRecords[*storev1.OAuthSessionRecord]{records(s, KindOAuthSession, func() *storev1.OAuthSessionRecord { return new(storev1.OAuthSessionRecord) })}
}

// OAuthStates are the pending upstream authorizations, by their state's
// hash.
func (s *Store) OAuthStates() SecretRecords[*storev1.OAuthStateRecord] {
	return SecretRecords[*storev1.OAuthStateRecord]{records(s, KindOAuthState, func() *storev1.OAuthStateRecord { return new(storev1.OAuthStateRecord) })}
}

// OAuthCodes are the gateway's authorization codes, by their hash.
func (s *Store) OAuthCodes() SecretRecords[*storev1.OAuthCodeRecord] {
	return SecretRecords[*storev1.OAuthCodeRecord]{records(s, KindOAuthCode, func() *storev1.OAuthCodeRecord { return new(storev1.OAuthCodeRecord) })}
}

// OAuthUsedCodes mark redeemed codes, by the code's hash.
func (s *Store) OAuthUsedCodes() SecretRecords[*storev1.OAuthUsedCodeRecord] {
	return SecretRecords[*storev1.OAuthUsedCodeRecord]{records(s, KindOAuthUsedCode, func() *storev1.OAuthUsedCodeRecord { return new(storev1.OAuthUsedCodeRecord) })}
}

// OAuthRefreshTokens are the refresh tokens, by their hash.
func (s *Store) OAuthRefreshTokens() SecretRecords[*storev1.OAuthRefreshRecord] {
	return SecretRecords[*storev1.OAuthRefreshRecord]{records(s, KindOAuthRefresh, func() *storev1.OAuthRefreshRecord { return new(storev1.OAuthRefreshRecord) })}
}

// AccessTokens are the gateway's access tokens read straight from etcd
// (Authorize reads them from the cache: AccessToken).
func (s *Store) AccessTokens() SecretRecords[*storev1.AccessTokenRecord] {
	return SecretRecords[*storev1.AccessTokenRecord]{records(s, KindAccessToken, func() *storev1.AccessTokenRecord { return new(storev1.AccessTokenRecord) })}
}

// MarkOAuthRequestUsed records, on a lease of ttl, that the sealed
// authorization request named name was answered (create only: a second
// answer is ErrConflict).
func (s *Store) MarkOAuthRequestUsed(ctx context.Context, name string, ttl time.Duration) (int64, error) {
	return s.PutLeasedAt(ctx, KindOAuthRequest, name, nil, ttl, 0)
}
