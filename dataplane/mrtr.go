package dataplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// Multi-round-trip requests (2026-07-28, SEP-2322).
//
// An upstream that needs input answers a tools/call, prompts/get or
// resources/read with resultType "input_required" and an opaque
// requestState the client echoes on its retry. The client never sees the
// upstream's state: the gateway replaces it with its own sealed value,
// AES-GCM with the session key ring (the same keys as session handles, a
// different associated-data label, so neither can stand for the other),
// binding the principal, the route, the method and name of the request, the
// upstream's state and an expiry. A retry's requestState is opened, its
// binding checked, and the upstream's original state forwarded; anything
// else (forged, another principal's or route's, another tool's, expired,
// not sealed by the gateway) is the fixed rpcBadRequestState.

const (
	stateAAD = "mcpgate-request-state-v1"
	// DefaultRequestStateLifetime bounds how long a sealed requestState may
	// be retried.
	DefaultRequestStateLifetime = 10 * time.Minute
)

var errBadState = errors.New("invalid request state")

const rpcBadRequestState = `{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"invalid or expired requestState"}}`

// stateBinding is what a sealed requestState carries.
type stateBinding struct {
	principal string
	route     string
	method    string
	name      string // params.name, or params.uri for resources/read
	upstream  string // the upstream's own requestState
	expires   time.Time
}

func stateAADFor(keyID string) []byte { return []byte(stateAAD + "|" + keyID) }

// sealState returns the client-visible requestState for s.
func (ks *keySet) sealState(s stateBinding) (string, error) {
	k := ks.keys[0]
	var pt []byte
	pt = appendField(pt, s.principal)
	pt = appendField(pt, s.route)
	pt = appendField(pt, s.method)
	pt = appendField(pt, s.name)
	pt = appendField(pt, s.upstream)
	pt = binary.BigEndian.AppendUint64(pt, uint64(s.expires.Unix()))
	out := []byte{byte(len(k.id))}
	out = append(out, k.id...)
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("request state nonce: %w", err)
	}
	out = append(out, nonce...)
	out = k.aead.Seal(out, nonce, pt, stateAADFor(k.id))
	return base64.RawURLEncoding.EncodeToString(out), nil
}

// openState returns the binding sealed in state: errUnknownKey when its key
// id is not in the ring, errBadState otherwise.
func (ks *keySet) openState(state string) (stateBinding, error) {
	raw, err := base64.RawURLEncoding.DecodeString(state)
	if err != nil || len(raw) < 2 {
		return stateBinding{}, errBadState
	}
	n := int(raw[0])
	if n == 0 || len(raw) < 1+n {
		return stateBinding{}, errBadState
	}
	id := string(raw[1 : 1+n])
	aead, ok := ks.byID[id]
	if !ok {
		return stateBinding{}, errUnknownKey
	}
	rest := raw[1+n:]
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return stateBinding{}, errBadState
	}
	pt, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], stateAADFor(id))
	if err != nil {
		return stateBinding{}, errBadState
	}
	var s stateBinding
	oks := [5]bool{}
	s.principal, pt, oks[0] = readField(pt)
	s.route, pt, oks[1] = readField(pt)
	s.method, pt, oks[2] = readField(pt)
	s.name, pt, oks[3] = readField(pt)
	s.upstream, pt, oks[4] = readField(pt)
	if oks != [5]bool{true, true, true, true, true} || len(pt) != 8 {
		return stateBinding{}, errBadState
	}
	s.expires = time.Unix(int64(binary.BigEndian.Uint64(pt)), 0)
	return s, nil
}

// openRequestState opens state, refreshing the ring once when its key id is
// unknown (a rotation this replica has not seen yet). A state sealed under
// a key the ring no longer has is errBadState.
func (kr *keyRing) openRequestState(ctx context.Context, state string) (stateBinding, error) {
	ks, err := kr.current(ctx)
	if err != nil {
		return stateBinding{}, err
	}
	s, err := ks.openState(state)
	if !errors.Is(err, errUnknownKey) {
		return s, err
	}
	id := handleKeyID(state)
	if err := kr.refreshIf(ctx, func(ks *keySet) bool { return ks == nil || ks.byID[id] == nil }); err != nil {
		return stateBinding{}, err
	}
	if ks = kr.cur.Load(); ks == nil {
		return stateBinding{}, errNoKeys
	}
	s, err = ks.openState(state)
	if errors.Is(err, errUnknownKey) {
		return stateBinding{}, errBadState
	}
	return s, err
}

// checkState reports whether an opened state may be used by this request.
func (s stateBinding) matches(principal, route, method, name string, now time.Time) bool {
	return s.principal == principal && s.route == route && s.method == method &&
		s.name == name && now.Before(s.expires)
}

// msgName is what Mcp-Name mirrors for m: params.uri for resources/read,
// params.name otherwise.
func msgName(m rpcMsg) string {
	if m.Method == "resources/read" {
		return m.URI
	}
	return m.Name
}

// replaceRequestState re-encodes a canonical single-message body with
// params.requestState set to state.
func replaceRequestState(canonical []byte, state string) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(canonical))
	w := &walker{dec: jsontext.NewDecoder(bytes.NewReader(canonical)), enc: jsontext.NewEncoder(&buf), state: &state}
	if _, err := w.message(); err != nil {
		return nil, err
	}
	if _, err := w.dec.ReadToken(); err != io.EOF {
		return nil, errRPCParse
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// stateSealer replaces result.requestState in upstream replies with the
// gateway's sealed value.
type stateSealer struct {
	ks   *keySet
	bind stateBinding // everything but upstream
}

// sealOne seals result.requestState of one message object.
func (s *stateSealer) sealOne(v jsontext.Value) (jsontext.Value, bool, error) {
	top, err := objectMembers(v, messageMembers)
	if err != nil {
		return nil, false, err
	}
	ri := find(top, "result")
	if ri < 0 || top[ri].value.Kind() != '{' {
		return v, false, nil
	}
	res, err := objectMembers(top[ri].value, stateResultMembers)
	if err != nil {
		return nil, false, err
	}
	si := find(res, "requestState")
	if si < 0 {
		return v, false, nil
	}
	if res[si].value.Kind() != '"' {
		return nil, false, errUnchecked
	}
	up, err := jsontext.AppendUnquote(nil, res[si].value)
	if err != nil {
		return nil, false, errUnchecked
	}
	b := s.bind
	b.upstream = string(up)
	sealed, err := s.ks.sealState(b)
	if err != nil {
		return nil, false, err
	}
	q, err := jsontext.AppendQuote(nil, sealed)
	if err != nil {
		return nil, false, errUnchecked
	}
	res[si].value = q
	if top[ri].value, err = encodeObject(res); err != nil {
		return nil, false, errUnchecked
	}
	out, err := encodeObject(top)
	if err != nil {
		return nil, false, errUnchecked
	}
	return out, true, nil
}

// stateResultMembers are the result members the sealer reads.
var stateResultMembers = []string{"requestState", "resultType", "tools"}

// hasRequestState reports whether any message of b carries
// params.requestState.
func hasRequestState(b rpcBody) bool {
	for _, m := range b.Msgs {
		if m.HasState {
			return true
		}
	}
	return false
}

// openRetryState checks the requestState of a retried request and returns
// the body to forward, with the upstream's original state. Only a single
// call may carry one; on false the answer has been written.
func (p *Proxy) openRetryState(w http.ResponseWriter, r *http.Request, log *slog.Logger, b rpcBody, principal, route string) ([]byte, bool) {
	ctx := r.Context()
	m := b.First
	bad := func(why string) ([]byte, bool) {
		log.InfoContext(ctx, "requestState refused", slog.String("why", why))
		writeFixed(w, http.StatusBadRequest, withID(rpcBadRequestState, b.ID))
		return nil, false
	}
	if b.Batch || !m.IsCall || m.State == "" {
		return bad("malformed")
	}
	sctx, cancel := context.WithTimeout(ctx, p.timeout)
	s, err := p.keys.openRequestState(sctx, m.State)
	cancel()
	switch {
	case errors.Is(err, errBadState):
		return bad("not sealed by the gateway")
	case err != nil:
		log.WarnContext(ctx, "session keys unavailable", slog.String("code", codeOf(err)))
		writeResponse(w, unavailable().withID(b.ID))
		return nil, false
	case !s.matches(principal, route, m.Method, msgName(m), time.Now()):
		return bad("binding or expiry")
	}
	out, err := replaceRequestState(b.Canonical, s.upstream)
	if err != nil {
		return bad("malformed")
	}
	return out, true
}

// replyRewriter filters tools and seals requestState in upstream replies.
type replyRewriter struct {
	filter *toolFilter
	sealer *stateSealer
}

// replyRewriterFor is nil when there is nothing to rewrite.
func replyRewriterFor(f *toolFilter, s *stateSealer) messageRewriter {
	if f == nil && s == nil {
		return nil
	}
	return &replyRewriter{filter: f, sealer: s}
}

func (rw *replyRewriter) rewrite(msg []byte) ([]byte, error) {
	var err error
	if rw.filter != nil {
		if msg, err = rw.filter.rewrite(msg); err != nil {
			return nil, err
		}
	}
	if rw.sealer != nil {
		return rewriteMessages(msg, rw.sealer.sealOne)
	}
	return msg, nil
}

// newSealer is the requestState sealer for a single tools/call,
// prompts/get or resources/read (nil for anything else); on false the
// answer (503: no session keys) has been written.
func (p *Proxy) newSealer(w http.ResponseWriter, r *http.Request, log *slog.Logger, b rpcBody, principal, route string) (*stateSealer, bool) {
	m := b.First
	if b.Batch || !m.IsCall || !needsName(m.Method) {
		return nil, true
	}
	ctx := r.Context()
	sctx, cancel := context.WithTimeout(ctx, p.timeout)
	ks, err := p.keys.current(sctx)
	cancel()
	if err != nil {
		log.WarnContext(ctx, "session keys unavailable", slog.String("code", codeOf(err)))
		writeResponse(w, unavailable().withID(b.ID))
		return nil, false
	}
	return &stateSealer{ks: ks, bind: stateBinding{
		principal: principal, route: route, method: m.Method, name: msgName(m),
		expires: time.Now().Add(p.stateLifetime),
	}}, true
}
