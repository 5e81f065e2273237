package dataplane

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// Session handles.
//
// The client never sees the upstream Mcp-Session-Id: it sees
// base64url(len(keyid)|keyid|nonce|AES-GCM(upstream id, principal, route)).
// Any replica opens any handle with the key ring from GetSessionKeys.
//
// crypto/cipher (AES-GCM) is used directly rather than tink: the keys are raw
// bytes distributed by the control plane, and tink has no API to build an
// AEAD primitive from an externally supplied raw key without wrapping it in
// its own keyset format (which would add the tink output prefix and a
// keyset-handle round trip for no gain). The construction here is the
// standard one: random 96-bit nonce per seal, key id and a version label as
// associated data.

var (
	errNoKeys     = errors.New("no session keys")
	errBadHandle  = errors.New("invalid session handle")
	errUnknownKey = errors.New("unknown session key")
)

const (
	keyRefreshInterval = time.Minute
	// minRefreshGap bounds refreshes triggered by unknown key ids, so garbage
	// handles cannot make the data plane hammer the control plane.
	minRefreshGap = time.Second
	handleAAD     = "mcpgate-session-v1"
)

type sessionKey struct {
	id   string
	aead cipher.AEAD
}

type keySet struct {
	keys []sessionKey // keys[0] seals
	byID map[string]cipher.AEAD
}

type keyRing struct {
	cp  *controlPlane
	log *slog.Logger
	cur atomic.Pointer[keySet]

	mu          sync.Mutex // serializes fetches
	lastRefresh time.Time
}

func newKeyRing(cp *controlPlane, log *slog.Logger) *keyRing {
	return &keyRing{cp: cp, log: log}
}

func buildKeySet(res *authorizev1.GetSessionKeysResponse) (*keySet, error) {
	ks := &keySet{byID: map[string]cipher.AEAD{}}
	for _, k := range res.GetKeys() {
		if k.GetId() == "" || len(k.GetId()) > 255 {
			return nil, fmt.Errorf("session key id length %d", len(k.GetId()))
		}
		block, err := aes.NewCipher(k.GetKey())
		if err != nil {
			return nil, fmt.Errorf("session key %q: %w", k.GetId(), err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("session key %q: %w", k.GetId(), err)
		}
		ks.keys = append(ks.keys, sessionKey{id: k.GetId(), aead: aead})
		ks.byID[k.GetId()] = aead
	}
	if len(ks.keys) == 0 {
		return nil, errNoKeys
	}
	return ks, nil
}

// fetch loads the key ring from the control plane. Callers hold kr.mu.
func (kr *keyRing) fetch(ctx context.Context) error {
	res, err := call(ctx, kr.cp, func(ctx context.Context, c authorizev1connect.AuthorizeServiceClient) (*authorizev1.GetSessionKeysResponse, error) {
		return c.GetSessionKeys(ctx, &authorizev1.GetSessionKeysRequest{})
	})
	if err != nil {
		return fmt.Errorf("get session keys: %w", err)
	}
	ks, err := buildKeySet(res)
	if err != nil {
		return fmt.Errorf("session keys: %w", err)
	}
	kr.cur.Store(ks)
	kr.lastRefresh = time.Now()
	return nil
}

// refreshIf fetches the ring when need(current) still holds once the fetch
// lock is held (a concurrent fetch may have satisfied it). On-demand fetches
// are spaced by minRefreshGap: a caller arriving sooner waits for the slot,
// so forged key ids cannot make this replica hammer the control plane.
func (kr *keyRing) refreshIf(ctx context.Context, need func(*keySet) bool) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if !need(kr.cur.Load()) {
		return nil
	}
	if wait := minRefreshGap - time.Since(kr.lastRefresh); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return kr.fetch(ctx)
}

// current returns the key set, fetching it if none is cached yet.
func (kr *keyRing) current(ctx context.Context) (*keySet, error) {
	if ks := kr.cur.Load(); ks != nil {
		return ks, nil
	}
	if err := kr.refreshIf(ctx, func(ks *keySet) bool { return ks == nil }); err != nil {
		return nil, err
	}
	if ks := kr.cur.Load(); ks != nil {
		return ks, nil
	}
	return nil, errNoKeys
}

func (kr *keyRing) run(ctx context.Context, timeout time.Duration) {
	t := time.NewTicker(keyRefreshInterval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		kr.mu.Lock()
		err := kr.fetch(rctx)
		kr.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			kr.log.WarnContext(ctx, "session key refresh failed", slog.String("code", codeOf(err)))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sessionBinding is what a handle seals.
type sessionBinding struct {
	upstream  string
	principal string
	route     string
	// bridge, when set, marks a 2025-11-25 client's session on a
	// 2026-07-28-only upstream: the client's capabilities and info
	// (bridge.EncodeMeta); upstream is then empty.
	bridge string
}

func appendField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readField(b []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return "", nil, false
	}
	return string(b[k : k+int(n)]), b[k+int(n):], true
}

func aad(keyID string) []byte { return []byte(handleAAD + "|" + keyID) }

// seal returns the client-visible handle for s with the first key.
func (ks *keySet) seal(s sessionBinding) (string, error) {
	k := ks.keys[0]
	var pt []byte
	pt = appendField(pt, s.upstream)
	pt = appendField(pt, s.principal)
	pt = appendField(pt, s.route)
	if s.bridge != "" {
		pt = appendField(pt, s.bridge)
	}
	out := []byte{byte(len(k.id))}
	out = append(out, k.id...)
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("session nonce: %w", err)
	}
	out = append(out, nonce...)
	out = k.aead.Seal(out, nonce, pt, aad(k.id))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// open returns the binding in handle, errUnknownKey when its key id is not in
// the ring, errBadHandle otherwise.
func (ks *keySet) open(handle string) (sessionBinding, error) {
	raw, err := base64.RawURLEncoding.DecodeString(handle)
	if err != nil || len(raw) < 1 {
		return sessionBinding{}, errBadHandle
	}
	n := int(raw[0])
	if len(raw) < 1+n {
		return sessionBinding{}, errBadHandle
	}
	id := string(raw[1 : 1+n])
	aead, ok := ks.byID[id]
	if !ok && n == 0 {
		return sessionBinding{}, errBadHandle
	}
	if !ok {
		return sessionBinding{}, errUnknownKey
	}
	rest := raw[1+n:]
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return sessionBinding{}, errBadHandle
	}
	pt, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], aad(id))
	if err != nil {
		return sessionBinding{}, errBadHandle
	}
	var s sessionBinding
	var ok1, ok2, ok3 bool
	s.upstream, pt, ok1 = readField(pt)
	s.principal, pt, ok2 = readField(pt)
	s.route, pt, ok3 = readField(pt)
	if !ok1 || !ok2 || !ok3 {
		return sessionBinding{}, errBadHandle
	}
	if len(pt) != 0 { // a bridge session (handles without it stay valid)
		var ok4 bool
		if s.bridge, pt, ok4 = readField(pt); !ok4 || s.bridge == "" || len(pt) != 0 {
			return sessionBinding{}, errBadHandle
		}
	}
	return s, nil
}

// openHandle opens handle, refreshing the ring once when the key id is
// unknown (a rotation this replica has not seen yet).
func (kr *keyRing) openHandle(ctx context.Context, handle string) (sessionBinding, error) {
	ks, err := kr.current(ctx)
	if err != nil {
		return sessionBinding{}, err
	}
	s, err := ks.open(handle)
	if !errors.Is(err, errUnknownKey) {
		return s, err
	}
	id := handleKeyID(handle)
	if err := kr.refreshIf(ctx, func(ks *keySet) bool { return ks == nil || ks.byID[id] == nil }); err != nil {
		return sessionBinding{}, err
	}
	if ks = kr.cur.Load(); ks == nil {
		return sessionBinding{}, errNoKeys
	}
	return ks.open(handle)
}

// handleKeyID is the key id a well-formed handle names.
func handleKeyID(handle string) string {
	raw, err := base64.RawURLEncoding.DecodeString(handle)
	if err != nil || len(raw) < 1 || len(raw) < 1+int(raw[0]) {
		return ""
	}
	return string(raw[1 : 1+int(raw[0])])
}
