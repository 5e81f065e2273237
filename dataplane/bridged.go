package dataplane

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/dataplane/bridge"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// The aggregator uses these pieces one member at a time (agg2026.go):
// classifyRequest decides whether the client speaks 2026-07-28;
// upstreamLegacy / upstreamModernOnly (and the members' own refusals, kept
// in p.versions) say what a member speaks; a 2026-07-28 client's request to
// a 2025-only member is bridge.Downgrade'd onto a member session kept in
// the aggregator's per-process map (principal, aggregate route, client
// _meta digest, member); any member's 2026-07-28 request is bridge.Upgrade'd
// with the client's _meta; server/discover merges the members' discover or
// initialize results; requestState is sealed with mrtr.go's sealer under
// aggStateRoute (aggregate route and member) so a state cannot move between
// members, aggregates or principals.

// upstreamLegacy reports whether the upstream speaks only 2025-11-25: the
// server's protocol_version setting, or, when that is auto, what this
// process learnt from the upstream's own refusals.
func (p *Proxy) upstreamLegacy(a *authorizev1.Allow) bool {
	switch a.GetUpstreamProtocolVersion() {
	case bridge.Version20251125:
		return true
	case "":
		return p.versions.Legacy(a.GetUpstreamUrl())
	}
	return false
}

// upstreamModernOnly reports whether the upstream speaks only 2026-07-28,
// likewise.
func (p *Proxy) upstreamModernOnly(a *authorizev1.Allow) bool {
	switch a.GetUpstreamProtocolVersion() {
	case bridge.Version20260728:
		return true
	case "":
		return p.versions.ModernOnly(a.GetUpstreamUrl())
	}
	return false
}

// serveBridged serves a 2026-07-28 request on an upstream that speaks only
// 2025-11-25 (dataplane/bridge): server/discover is answered from the
// upstream's initialize result; anything else goes, without the 2026 _meta
// keys, on the upstream session opened for (principal, route, upstream,
// client _meta), opened again once when the upstream forgot it.
func (p *Proxy) serveBridged(w http.ResponseWriter, r *http.Request, log *slog.Logger, f fwd, b rpcBody) {
	ctx := r.Context()
	meta, err := bridge.ClientMetaOf(b.Canonical)
	if err == nil {
		// Server-to-client requests on the upstream session cannot reach a
		// 2026-07-28 client: the upstream is told it may not make them.
		meta, err = bridge.WithoutInputCapabilities(meta)
	}
	if err != nil {
		writeFixed(w, http.StatusBadRequest, withID(rpcInvalidRequest, f.id))
		return
	}
	url := f.allow.GetUpstreamUrl()
	key := bridge.Key{Principal: f.principal, Route: f.route, URL: url, Digest: meta.Digest()}
	header := http.Header{}
	for _, h := range f.allow.GetUpstreamHeaders() {
		header.Set(h.GetName(), h.GetValue())
	}
	body, err := bridge.Downgrade(f.body)
	if err != nil {
		writeFixed(w, http.StatusBadRequest, withID(rpcInvalidRequest, f.id))
		return
	}
	for range 2 {
		octx, cancel := context.WithTimeout(ctx, p.headerTimeout)
		s, err := p.bridged.Open(octx, key, url, header, meta)
		cancel()
		if errors.Is(err, bridge.ErrUnauthorized) {
			p.upstreamUnauthorized(w, r, log, f) // as for any upstream 401
			return
		}
		if err != nil {
			log.WarnContext(ctx, "bridge session not opened")
			writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
			return
		}
		if b.First.Method == "server/discover" {
			out, err := bridge.Discover(f.id, s.Init)
			if err != nil {
				log.WarnContext(ctx, "upstream initialize result unusable")
				writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamUnchecked, f.id))
				return
			}
			log.InfoContext(ctx, "server/discover answered from the upstream's initialize")
			writeResponse(w, response{Status: http.StatusOK, Header: fixed(0, "").Header, Body: string(out)})
			return
		}
		g := f
		g.body, g.session, g.bridged = body, s.ID, true
		if b.First.IsCall && !b.Batch {
			// The bridge session is shared by the principal's 2026-07-28
			// clients: each request goes up under an id of its own, or two
			// clients' equal ids would collide in the upstream session.
			swapped, swap, err := p.swapID(body)
			if err != nil {
				writeFixed(w, http.StatusBadRequest, withID(rpcInvalidRequest, f.id))
				return
			}
			g.body, g.swap = swapped, swap
		}
		if p.forward(w, r, log, g) != fwdStale {
			return
		}
		log.InfoContext(ctx, "bridge session gone upstream; opening a new one")
		p.bridged.Drop(key, s)
	}
	writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
}

// initializeOnModern answers a 2025-style initialize itself when the
// upstream is known to speak only 2026-07-28: from the upstream's
// server/discover, with a session handle that carries the client's
// capabilities and info. It reports false, having written nothing, when the
// initialize is to be forwarded.
func (p *Proxy) initializeOnModern(w http.ResponseWriter, r *http.Request, log *slog.Logger, f fwd, b rpcBody) bool {
	ctx := r.Context()
	url := f.allow.GetUpstreamUrl()
	if !p.upstreamModernOnly(f.allow) {
		return false
	}
	meta, requested, err := bridge.ClientMetaOfInitialize(b.Canonical)
	if err != nil {
		writeFixed(w, http.StatusBadRequest, withID(rpcInvalidRequest, f.id))
		return true
	}
	header := http.Header{}
	for _, h := range f.allow.GetUpstreamHeaders() {
		header.Set(h.GetName(), h.GetValue())
	}
	pctx, cancel := context.WithTimeout(ctx, p.headerTimeout)
	disc, modernOnly, err := bridge.ProbeDiscover(pctx, p.upstream, url, header, meta)
	cancel()
	if errors.Is(err, bridge.ErrUnauthorized) {
		p.upstreamUnauthorized(w, r, log, f)
		return true
	}
	if err != nil || disc == nil {
		log.WarnContext(ctx, "upstream server/discover failed")
		writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
		return true
	}
	if !modernOnly {
		return false // it learnt 2025-11-25 since: forward
	}
	out, err := bridge.InitializeFromDiscover(f.id, requested, disc)
	if err != nil {
		log.WarnContext(ctx, "upstream discover result unusable")
		writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamUnchecked, f.id))
		return true
	}
	meta, err = bridge.WithoutInputCapabilities(meta)
	enc := ""
	if err == nil {
		enc, err = bridge.EncodeMeta(meta)
	}
	if err != nil || len(enc) > maxBridgeMeta {
		// What the client declared does not fit a handle: it is served as
		// one that declared nothing.
		enc = noClientMeta
	}
	handle, err := p.sealSession(ctx, sessionBinding{principal: f.principal, route: f.route, bridge: enc})
	if err != nil {
		log.WarnContext(ctx, "cannot seal session", slog.String("code", codeOf(err)))
		writeResponse(w, unavailable().withID(f.id))
		return true
	}
	res := fixed(http.StatusOK, string(out))
	res.Header.Set(headerSessionID, handle)
	log.InfoContext(ctx, "initialize answered from the upstream's server/discover (2026-07-28-only upstream)")
	writeResponse(w, res)
	return true
}

// noClientMeta is the bridge meta of a 2025 client whose initialize went
// to the upstream before the gateway knew it speaks only 2026-07-28: no
// declared capabilities (so the upstream asks it for nothing the gateway
// could not relay).
const noClientMeta = `{"caps":{}}`

// maxBridgeMeta bounds the client capabilities and info a session handle
// carries.
const maxBridgeMeta = 8 << 10

// serveUpgraded serves a request of a 2025-11-25 client's bridge session
// on a 2026-07-28-only upstream: calls are sent as 2026-07-28 requests with
// the client's _meta; what 2026-07-28 removed is answered here (ping,
// notifications/initialized, DELETE); there is no GET stream (405).
func (p *Proxy) serveUpgraded(w http.ResponseWriter, r *http.Request, log *slog.Logger, f fwd, b rpcBody, enc string) {
	meta, err := bridge.DecodeMeta(enc)
	if err != nil {
		writeFixed(w, http.StatusNotFound, withID(rpcUnknownSession, f.id))
		return
	}
	m := b.First
	switch {
	case r.Method == http.MethodGet:
		writeFixed(w, http.StatusMethodNotAllowed, bodyMethodNotAllowed)
		return
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent) // nothing is held upstream
		return
	case b.Batch:
		writeFixed(w, http.StatusBadRequest, rpcInvalidRequest)
		return
	case !m.HasMethod || m.Method == "notifications/initialized":
		w.WriteHeader(http.StatusAccepted) // responses and the handshake's end stay here
		return
	case m.IsCall && m.Method == "ping":
		writeResponse(w, fixed(http.StatusOK, `{"jsonrpc":"2.0","id":`+f.id+`,"result":{}}`))
		return
	}
	g := f
	g.upgraded, g.upMethod, g.session, g.handle = true, m.Method, "", ""
	if g.sealer == nil {
		var ok bool
		if g.sealer, ok = p.newSealer(w, r, log, b, f.principal, f.route); !ok {
			return
		}
	}
	if needsName(m.Method) {
		g.upName = msgName(m)
	}
	if m.IsCall {
		if g.body, err = bridge.Upgrade(f.body, meta); err != nil {
			writeFixed(w, http.StatusBadRequest, withID(rpcInvalidRequest, f.id))
			return
		}
	}
	p.forward(w, r, log, g)
}

// idSwap is a request's id as the client sent it and the gateway id it
// went upstream under.
type idSwap struct {
	gateway, client jsontext.Value
}

// swapID gives the request in body a gateway id, unique in this process.
func (p *Proxy) swapID(body []byte) ([]byte, *idSwap, error) {
	top, err := objectMembers(body, messageMembers)
	if err != nil {
		return nil, nil, err
	}
	i := find(top, "id")
	if i < 0 {
		return body, nil, nil
	}
	gw := jsontext.Value(strconv.AppendQuote([]byte(nil), "mcpgate-bridge-"+strconv.FormatUint(p.bridgeSeq.Add(1), 10)))
	swap := &idSwap{gateway: gw, client: top[i].value}
	top[i].value = gw
	out, err := encodeObject(top)
	if err != nil {
		return nil, nil, err
	}
	return out, swap, nil
}

// idRewriter gives replies carrying a swapped id the client's id back,
// after the inner rewriter (filter, sealer) has run.
type idRewriter struct {
	inner messageRewriter // may be nil
	swap  *idSwap
}

func (rw *idRewriter) rewrite(msg []byte) ([]byte, error) {
	if rw.inner != nil {
		var err error
		if msg, err = rw.inner.rewrite(msg); err != nil {
			return nil, err
		}
	}
	return rewriteMessages(msg, func(v jsontext.Value) (jsontext.Value, bool, error) {
		top, err := objectMembers(v, messageMembers)
		if err != nil {
			return nil, false, err
		}
		i := find(top, "id")
		if i < 0 || !bytes.Equal(top[i].value, rw.swap.gateway) {
			return v, false, nil
		}
		top[i].value = rw.swap.client
		n, err := encodeObject(top)
		return n, err == nil, err
	})
}
