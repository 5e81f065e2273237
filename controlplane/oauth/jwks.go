package oauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"encoding/json"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// Key-set cache policy.
const (
	// jwksMaxAge is how long a fetched key set is used without fetching it
	// again.
	jwksMaxAge = time.Hour
	// jwksMinRefresh bounds refetches on an unknown key id: a stream of
	// assertions with made-up kids makes at most one fetch per issuer per
	// jwksMinRefresh.
	jwksMinRefresh = 30 * time.Second
	// jwksFetchTimeout bounds discovery plus key-set fetch.
	jwksFetchTimeout = 10 * time.Second
	// maxJWKSBytes bounds a discovery document or key set.
	maxJWKSBytes = 1 << 20
)

var (
	// errUnknownKID: the issuer's key set has no key with the assertion's
	// key id, even after a refetch.
	errUnknownKID = errors.New("unknown key id")
	// errIdPUnavailable: the issuer's discovery document or key set could
	// not be fetched.
	errIdPUnavailable = errors.New("identity provider unavailable")
)

// keySets caches identity providers' JSON Web Key Sets by issuer, found
// through OpenID discovery. A key id not in the cached set refetches it
// (key rotation), at most once per jwksMinRefresh; concurrent fetches of
// one issuer are coalesced.
type keySets struct {
	client *http.Client
	now    func() time.Time
	// discover returns issuer's jwks_uri from its (cached) OpenID
	// discovery document: the same discovery the sign-in uses (see
	// Server.provider), so each issuer is discovered once.
	discover func(ctx context.Context, issuer string) (string, error)
	group    singleflight.Group
	mu       sync.Mutex
	sets     map[string]*keySet
}

type keySet struct {
	keys    jose.JSONWebKeySet
	fetched time.Time
}

func newKeySets(client *http.Client, now func() time.Time, discover func(context.Context, string) (string, error)) *keySets {
	return &keySets{client: client, now: now, discover: discover, sets: map[string]*keySet{}}
}

// key returns the public key of issuer with key id kid.
func (k *keySets) key(ctx context.Context, issuer, kid string) (*jose.JSONWebKey, error) {
	k.mu.Lock()
	ks := k.sets[issuer]
	k.mu.Unlock()
	now := k.now()
	if ks != nil && now.Sub(ks.fetched) < jwksMaxAge {
		if key := find(ks, kid); key != nil {
			return key, nil
		}
		if now.Sub(ks.fetched) < jwksMinRefresh {
			return nil, errUnknownKID
		}
	}
	v, err, _ := k.group.Do(issuer, func() (any, error) {
		// The fetch outlives any one caller: waiters share it.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
		defer cancel()
		return k.fetch(fctx, issuer)
	})
	if err != nil {
		if ks != nil {
			// The provider is down: the keys fetched before still verify.
			if key := find(ks, kid); key != nil {
				return key, nil
			}
		}
		return nil, err
	}
	ks = v.(*keySet)
	k.mu.Lock()
	k.sets[issuer] = ks
	k.mu.Unlock()
	if key := find(ks, kid); key != nil {
		return key, nil
	}
	return nil, errUnknownKID
}

func find(ks *keySet, kid string) *jose.JSONWebKey {
	for _, key := range ks.keys.Key(kid) {
		if key.Valid() && key.IsPublic() && (key.Use == "" || key.Use == "sig") {
			return &key
		}
	}
	return nil
}

// fetch discovers issuer's jwks_uri and fetches the key set.
func (k *keySets) fetch(ctx context.Context, issuer string) (*keySet, error) {
	uri, err := k.discover(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errIdPUnavailable, err)
	}
	if uri == "" {
		return nil, fmt.Errorf("%w: discovery names no jwks_uri", errIdPUnavailable)
	}
	ks := &keySet{fetched: k.now()}
	if err := k.getJSON(ctx, uri, &ks.keys); err != nil {
		return nil, err
	}
	return ks, nil
}

func (k *keySets) getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", errIdPUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errIdPUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: status %d", errIdPUnavailable, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil || len(b) > maxJWKSBytes {
		return fmt.Errorf("%w: unreadable or oversized body", errIdPUnavailable)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", errIdPUnavailable, err)
	}
	return nil
}
