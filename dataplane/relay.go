package dataplane

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"

	"github.com/mcpgate/mcpgate/api/wire"
)

// The OAuth authorization server (issuer = the public URL) lives in the
// control plane; the data plane relays the wire.IsRelayPath endpoints to
// <control plane>wire.RelayPrefix<path>?<query>, authenticated as a data
// plane. The client's own Authorization moves to
// wire.HeaderClientAuthorization.
const relayMaxResponseBodySize = 1 << 20

// isStrippedRelayHeader drops what a client must not be able to forge
// towards the control plane (wire.IsGatewayHeader: every X-MCPGate-* header
// except the API key, which the sign-in endpoints may read) and the
// client's Authorization (re-sent as wire.HeaderClientAuthorization).
func isStrippedRelayHeader(k string) bool {
	c := textproto.CanonicalMIMEHeaderKey(k)
	if c == "Authorization" || c == "Host" || c == "Content-Length" {
		return true
	}
	return wire.IsGatewayHeader(c)
}

func (p *Proxy) serveRelay(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	body, err := io.ReadAll(io.LimitReader(r.Body, p.maxBody+1))
	if err != nil {
		writeFixed(w, http.StatusBadRequest, bodyRelayUnreadable)
		return
	}
	if int64(len(body)) > p.maxBody {
		writeFixed(w, http.StatusRequestEntityTooLarge, bodyRelayTooLarge)
		return
	}
	idempotent := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
	target := wire.RelayPrefix + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	for i, rep := range p.cp.relayTargets() {
		if i > 0 && !idempotent {
			break // never replay a POST (a code or a consent) on another replica
		}
		rctx, cancel := context.WithTimeout(ctx, p.timeout)
		resp, err := p.relayOnce(rctx, r, rep.base+target, body)
		if err != nil {
			cancel()
			rep.markFailed()
			if ctx.Err() != nil {
				return
			}
			continue
		}
		rep.markOK()
		copyEndToEnd(w.Header(), resp.Header, func(k string) bool {
			return textproto.CanonicalMIMEHeaderKey(k) == "Content-Length"
		})
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, io.LimitReader(resp.Body, relayMaxResponseBodySize))
		resp.Body.Close()
		cancel()
		return
	}
	p.log.WarnContext(ctx, "oauth relay: control plane unavailable", slog.String("path", r.URL.Path))
	writeResponse(w, relayUnavailable())
}

func (p *Proxy) relayOnce(ctx context.Context, r *http.Request, target string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, target, rd)
	if err != nil {
		return nil, err
	}
	copyEndToEnd(req.Header, r.Header, isStrippedRelayHeader)
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set(wire.HeaderClientAuthorization, a)
	}
	if p.cp.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.cp.token)
	}
	req.Header.Set(wire.HeaderPublicURL, p.publicBase)
	req.Header.Set(wire.HeaderClientAddress, clientIP(r))
	return p.relayClient.Do(req)
}
