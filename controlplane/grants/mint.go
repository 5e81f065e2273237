package grants

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/sync/singleflight"

	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Minting defaults.
const (
	// DefaultEarly is how long before its expiry a cached token is replaced.
	DefaultEarly = 60 * time.Second
	// DefaultNoExpiryTTL is how long a token without expires_in is reused.
	DefaultNoExpiryTTL = 10 * time.Minute
	// DefaultMintTimeout bounds one call to a token endpoint.
	DefaultMintTimeout = 15 * time.Second
)

// ClientCredentials mints client_credentials tokens with
// golang.org/x/oauth2/clientcredentials and keeps them in memory only, per
// server and server revision, until Early (at most half the lifetime) before
// they expire. Concurrent
// callers for the same server share one request to the token endpoint.
type ClientCredentials struct {
	// HTTPClient calls token endpoints; http.DefaultClient when nil.
	HTTPClient *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Early, NoExpiryTTL and Timeout default to the Default* constants.
	Early, NoExpiryTTL, Timeout time.Duration

	mu     sync.Mutex
	cache  map[string]machineToken // by server name
	flight singleflight.Group
}

type machineToken struct {
	rev   int64
	token string
	useBy time.Time
}

// Token implements MachineTokens. A token endpoint failure wraps
// ErrUpstreamUnavailable.
func (c *ClientCredentials) Token(ctx context.Context, srv *store.Server) (string, error) {
	name, rev := srv.Def.GetName(), srv.Def.GetRevision()
	if tok, ok := c.cached(name, rev); ok {
		return tok, nil
	}
	ch := c.flight.DoChan(name+"\x00"+strconv.FormatInt(rev, 10), func() (any, error) {
		if tok, ok := c.cached(name, rev); ok {
			return tok, nil
		}
		// The mint outlives any one caller: waiters share it.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout())
		defer cancel()
		return c.mint(mctx, srv)
	})
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	}
}

func (c *ClientCredentials) cached(name string, rev int64) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.cache[name]
	if !ok || t.rev != rev || !c.now().Before(t.useBy) {
		return "", false
	}
	return t.token, true
}

func (c *ClientCredentials) mint(ctx context.Context, srv *store.Server) (string, error) {
	cfg := clientcredentials.Config{
		ClientID:     srv.Def.GetClientId(),
		ClientSecret: srv.Secrets.GetClientSecret(),
		TokenURL:     srv.Def.GetTokenUrl(),
		Scopes:       srv.Def.GetScopes(),
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	tok, err := cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	if err != nil {
		return "", fmt.Errorf("mint token for server %q: %w: %w", srv.Def.GetName(), ErrUpstreamUnavailable, err)
	}
	if tok.AccessToken == "" {
		return "", fmt.Errorf("mint token for server %q: %w: empty access token", srv.Def.GetName(), ErrUpstreamUnavailable)
	}
	now := c.now()
	useBy := now.Add(c.noExpiryTTL())
	if life, ok := lifetime(tok); ok {
		// An already expired token serves this call and is not cached.
		useBy = now.Add(max(0, life-min(c.early(), life/2)))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cache == nil {
		c.cache = make(map[string]machineToken)
	}
	c.cache[srv.Def.GetName()] = machineToken{rev: srv.Def.GetRevision(), token: tok.AccessToken, useBy: useBy}
	return tok.AccessToken, nil
}

func (c *ClientCredentials) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *ClientCredentials) early() time.Duration {
	if c.Early > 0 {
		return c.Early
	}
	return DefaultEarly
}

func (c *ClientCredentials) noExpiryTTL() time.Duration {
	if c.NoExpiryTTL > 0 {
		return c.NoExpiryTTL
	}
	return DefaultNoExpiryTTL
}

func (c *ClientCredentials) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultMintTimeout
}

// lifetime is the token's expires_in, read against our own clock; the
// library's Expiry (computed with time.Now) is the fallback.
func lifetime(tok *oauth2.Token) (time.Duration, bool) {
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		if v != 0 {
			return time.Duration(v * float64(time.Second)), true
		}
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n != 0 {
			return time.Duration(n) * time.Second, true
		}
	}
	if tok.Expiry.IsZero() {
		return 0, false
	}
	return time.Until(tok.Expiry), true
}

// UseBy reports until when the token Token last returned for the server
// (at its revision) may be used (its expiry minus Early): the bound of a
// data plane's reuse of a decision carrying it. False when none is held.
func (c *ClientCredentials) UseBy(server string, rev int64) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.cache[server]
	if !ok || t.rev != rev {
		return time.Time{}, false
	}
	return t.useBy, true
}
