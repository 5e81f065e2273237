package dataplane

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/mcpgate/mcpgate/dataplane/bridge"
)

// serveBridged serves a 2026-07-28 request on an upstream that speaks only
// 2025-11-25 (dataplane/bridge): server/discover is answered from the
// upstream's initialize result; anything else goes, without the 2026 _meta
// keys, on the upstream session opened for (principal, route, upstream,
// client _meta), opened again once when the upstream forgot it.
func (p *Proxy) serveBridged(w http.ResponseWriter, r *http.Request, log *slog.Logger, f fwd, b rpcBody) {
	ctx := r.Context()
	meta, err := bridge.ClientMetaOf(b.Canonical)
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
		if p.forward(w, r, log, g) != fwdStale {
			return
		}
		log.InfoContext(ctx, "bridge session gone upstream; opening a new one")
		p.bridged.Drop(key, s)
	}
	writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
}
