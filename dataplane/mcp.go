package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

const (
	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "Mcp-Protocol-Version"
	headerMcpMethod       = "Mcp-Method"
	headerMcpName         = "Mcp-Name"
	// maxBatchCalls bounds Authorize calls per batch.
	maxBatchCalls = 16
	// maxEventBytes bounds one SSE event (or one filtered JSON reply) held in
	// memory.
	maxEventBytes = 32 << 20
)

// hopHeaders are connection-level headers (RFC 9110 §7.6.1) never copied.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// serveMCP handles POST, GET and DELETE on /{route}/mcp.
func (p *Proxy) serveMCP(w http.ResponseWriter, r *http.Request, route string) {
	ctx := r.Context()
	log := p.log.With(slog.String("route", route), slog.String("http_method", r.Method))

	var body []byte
	var parsed rpcBody
	parsedOK := true
	if r.Method == http.MethodPost {
		if r.ContentLength > p.maxBody {
			writeFixed(w, http.StatusRequestEntityTooLarge, rpcTooLarge)
			return
		}
		b, err := io.ReadAll(io.LimitReader(r.Body, p.maxBody+1))
		if err != nil {
			log.InfoContext(ctx, "read request body failed")
			writeFixed(w, http.StatusBadRequest, rpcParseError)
			return
		}
		if int64(len(b)) > p.maxBody {
			writeFixed(w, http.StatusRequestEntityTooLarge, rpcTooLarge)
			return
		}
		body = b
		parsed, parsedOK = parseBody(b)
	}
	calls := parsed.Calls
	if len(calls) == 0 {
		calls = []rpcCall{{}}
	}
	info := infoFrom(ctx)
	info.method, info.tool = calls[0].Method, calls[0].Tool

	creds := extractCredentials(r.Header, route)
	prm := p.prmURL(route)
	actx, cancel := context.WithTimeout(ctx, p.timeout)
	var res *authorizev1.AuthorizeResponse
	var err error
	for i, c := range calls {
		if i == maxBatchCalls {
			break
		}
		res, err = p.authorize(actx, &authorizev1.AuthorizeRequest{
			Route:         route,
			Credentials:   creds,
			HttpMethod:    r.Method,
			JsonrpcMethod: c.Method,
			ToolName:      c.Tool,
			ClientAddress: clientIP(r),
			PublicBaseUrl: p.publicBase,
		})
		if err != nil || res.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
			break
		}
	}
	cancel()
	info.decided(res, err)
	out := mapDecision(res, err, prm)
	log = log.With(slog.String("decision", res.GetDecision().String()),
		slog.String("principal", res.GetPrincipal()),
		slog.String("key_prefix", res.GetKeyPrefix()),
		slog.String("reason", res.GetReason()))
	if len(calls) > 0 {
		log = log.With(slog.String("jsonrpc_method", calls[0].Method), slog.String("tool", calls[0].Tool))
	}
	if err != nil {
		log.WarnContext(ctx, "authorize failed", slog.String("code", codeOf(err)))
	}
	if !out.Forward {
		log.InfoContext(ctx, "refused", slog.Int("status", out.Response.Status))
		out.Response = out.Response.withID(parsed.ID)
		writeResponse(w, out.Response)
		return
	}

	// Authorized: only now may malformed input be called malformed.
	if !parsedOK || len(parsed.Calls) > maxBatchCalls {
		writeFixed(w, http.StatusBadRequest, withID(rpcParseError, parsed.ID))
		return
	}
	if r.Method == http.MethodPost && !parsed.Batch && !headersMatchBody(r.Header, parsed.Calls[0]) {
		writeFixed(w, http.StatusBadRequest, withID(rpcHeaderMismatch, parsed.ID))
		return
	}

	principal := res.GetPrincipal()
	upstreamSession, clientHandle := "", ""
	if h := r.Header.Get(headerSessionID); h != "" {
		sctx, scancel := context.WithTimeout(ctx, p.timeout)
		s, err := p.keys.openHandle(sctx, h)
		scancel()
		switch {
		case errors.Is(err, errBadHandle), errors.Is(err, errUnknownKey):
			log.InfoContext(ctx, "unknown session handle")
			writeFixed(w, http.StatusNotFound, withID(rpcUnknownSession, parsed.ID))
			return
		case err != nil:
			log.WarnContext(ctx, "session keys unavailable", slog.String("code", codeOf(err)))
			writeResponse(w, unavailable().withID(parsed.ID))
			return
		case s.principal != principal || s.route != route:
			log.WarnContext(ctx, "session handle of another principal or route")
			writeFixed(w, http.StatusNotFound, withID(rpcUnknownSession, parsed.ID))
			return
		}
		upstreamSession = s.upstream
		clientHandle = h
	}

	var filter *toolFilter
	if len(parsed.ToolsListIDs) > 0 {
		filter = newToolFilter(out.Allow.GetAllowedTools(), out.Allow.GetDisallowedTools())
	}
	p.forward(w, r, log, fwd{
		route:     route,
		principal: principal,
		allow:     out.Allow,
		body:      body,
		session:   upstreamSession,
		handle:    clientHandle,
		filter:    filter,
		listIDs:   parsed.ToolsListIDs,
		id:        parsed.ID,
		mayStream: mayStream(r.Method, parsed.Calls),
	})
}

// headersMatchBody checks the 2026-07-28 Mcp-Method / Mcp-Name mirrors when
// the client sent them.
func headersMatchBody(h http.Header, c rpcCall) bool {
	if m := h.Get(headerMcpMethod); m != "" && m != c.Method {
		return false
	}
	if n := h.Get(headerMcpName); n != "" && c.Method == "tools/call" && n != c.Tool {
		return false
	}
	return true
}

func (p *Proxy) authorize(ctx context.Context, req *authorizev1.AuthorizeRequest) (*authorizev1.AuthorizeResponse, error) {
	start := time.Now()
	res, err := call(ctx, p.cp, func(ctx context.Context, c authorizev1connect.AuthorizeServiceClient) (*authorizev1.AuthorizeResponse, error) {
		return c.Authorize(ctx, req)
	})
	p.metrics.RecordAuthorize(decisionLabel(res, err), time.Since(start))
	return res, err
}

func (p *Proxy) prmURL(route string) string {
	return p.publicBase + prmPrefix + "/" + route + "/mcp"
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func codeOf(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "deadline_exceeded"
	}
	return connect.CodeOf(err).String()
}

type fwd struct {
	route     string
	principal string
	allow     *authorizev1.Allow
	body      []byte
	session   string // upstream Mcp-Session-Id, if any
	handle    string // the client's handle for session
	id        string // the JSON-RPC id of a single request, for error answers
	filter    *toolFilter
	listIDs   map[string]bool
	mayStream bool // counts against the principal's concurrent-stream bound
}

// isStrippedRequestHeader reports headers never sent upstream. The rule is
// an allowlist (ARCHITECTURE.md: any header not explicitly allowed stays at
// the gateway): the MCP transport's own headers, content negotiation and
// trace context pass; admission credentials, cookies, the client's session
// handle (replaced by the upstream's id), origins, forwarding headers and
// anything else do not. Upstreams that need more get it from the server's
// static_headers.
func isStrippedRequestHeader(k string) bool {
	switch textproto.CanonicalMIMEHeaderKey(k) {
	case "Accept", "Content-Type", "Mcp-Protocol-Version", "Last-Event-Id",
		"Mcp-Method", "Mcp-Name", "User-Agent", "Traceparent", "Tracestate", "Baggage":
		return false
	}
	return !strings.HasPrefix(strings.ToLower(k), "mcp-param-")
}

// copyEndToEnd copies src to dst minus hop-by-hop headers (including those
// named by Connection) and minus what skip rejects.
func copyEndToEnd(dst, src http.Header, skip func(string) bool) {
	hop := map[string]bool{}
	for _, h := range hopHeaders {
		hop[h] = true
	}
	for _, v := range src.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				hop[textproto.CanonicalMIMEHeaderKey(f)] = true
			}
		}
	}
	for k, vs := range src {
		if hop[textproto.CanonicalMIMEHeaderKey(k)] || (skip != nil && skip(k)) {
			continue
		}
		dst[k] = append([]string(nil), vs...)
	}
}

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, log *slog.Logger, f fwd) {
	ctx := r.Context()
	if f.mayStream {
		release, ok := p.streams.acquire(f.principal)
		if !ok {
			log.InfoContext(ctx, "too many concurrent streams for the principal")
			writeResponse(w, tooManyStreams(f.id))
			return
		}
		defer release() // before ServeHTTP returns, so before the client sees the end
	}
	// The upstream exchange runs on its own context so the bounds can end it
	// with a cause: no response headers in time, or a body relayed too long.
	uctx, ucancel := context.WithCancelCause(ctx)
	defer ucancel(nil)
	var rd io.Reader
	if f.body != nil {
		// The buffered body, never the client's stream (golang/go#40747).
		rd = bytes.NewReader(f.body)
	}
	up, err := http.NewRequestWithContext(uctx, r.Method, f.allow.GetUpstreamUrl(), rd)
	if err != nil {
		log.ErrorContext(ctx, "bad upstream URL from control plane")
		writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
		return
	}
	copyEndToEnd(up.Header, r.Header, isStrippedRequestHeader)
	if f.session != "" {
		up.Header.Set(headerSessionID, f.session)
	}
	for _, h := range f.allow.GetUpstreamHeaders() {
		up.Header.Set(h.GetName(), h.GetValue())
	}
	upStart := time.Now()
	headerTimer := time.AfterFunc(p.headerTimeout, func() { ucancel(errUpstreamHeaderTimeout) })
	resp, err := p.upstream.Do(up)
	// Stop fails when the timer fired: then the exchange is cancelled even
	// if the headers made it just in time.
	timedOut := !headerTimer.Stop()
	upStatus := 0
	if err == nil {
		upStatus = resp.StatusCode
		defer resp.Body.Close()
	}
	infoFrom(ctx).upstream = upStatus
	p.metrics.RecordUpstream(f.route, upStatus, time.Since(upStart))
	switch {
	case ctx.Err() != nil:
		return // the client is gone
	case timedOut:
		log.WarnContext(ctx, "upstream response headers timed out")
		writeFixed(w, http.StatusGatewayTimeout, withID(rpcUpstreamTimeout, f.id))
		return
	case err != nil:
		log.WarnContext(ctx, "upstream unreachable")
		writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
		return
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		// Never relayed: a client following it would re-send its request,
		// gateway credentials included, wherever the upstream pointed.
		log.WarnContext(ctx, "upstream answered with a redirect", slog.Int("upstream_status", resp.StatusCode))
		writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamRedirect, f.id))
		return
	case resp.StatusCode == http.StatusUnauthorized:
		p.upstreamUnauthorized(w, r, log, f)
		return
	case encodedBody(resp.Header):
		log.WarnContext(ctx, "upstream answered with an unsupported content encoding")
		writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamEncoding, f.id))
		return
	}
	lifetime := time.AfterFunc(p.streamLifetime, func() { ucancel(errStreamLifetime) })
	defer lifetime.Stop()

	h := w.Header()
	copyResponseHeaders(h, resp.Header)
	if sid := resp.Header.Get(headerSessionID); sid != "" && sid == f.session {
		h.Set(headerSessionID, f.handle) // same session: keep the client's handle stable
	} else if sid != "" {
		handle, err := p.sealSession(ctx, sessionBinding{upstream: sid, principal: f.principal, route: f.route})
		if err != nil {
			log.WarnContext(ctx, "cannot seal session", slog.String("code", codeOf(err)))
			for k := range h {
				if k != "Access-Control-Expose-Headers" && k != "Access-Control-Allow-Origin" && k != "Vary" {
					delete(h, k)
				}
			}
			writeResponse(w, unavailable().withID(f.id))
			return
		}
		h.Set(headerSessionID, handle)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch mt {
	case "text/event-stream":
		h.Set("X-Accel-Buffering", "no")
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(resp.StatusCode)
		p.streamSSE(uctx, w, resp.Body, log, f)
	case "application/json":
		if f.filter != nil {
			b, err := io.ReadAll(io.LimitReader(resp.Body, maxEventBytes+1))
			if err != nil || len(b) > maxEventBytes {
				log.WarnContext(ctx, "upstream tools/list reply unreadable")
				writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
				return
			}
			b = f.filter.rewrite(b, f.listIDs)
			w.WriteHeader(resp.StatusCode)
			_, _ = w.Write(b)
			return
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	default:
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}
	log.InfoContext(ctx, "forwarded", slog.Int("upstream_status", resp.StatusCode))
}

func (p *Proxy) sealSession(ctx context.Context, s sessionBinding) (string, error) {
	sctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ks, err := p.keys.current(sctx)
	if err != nil {
		return "", err
	}
	return ks.seal(s)
}

// streamSSE copies an event stream event by event, flushing after each, and
// rewrites the tools/list response event when filtering applies. When the
// stream's lifetime ends (uctx cancelled with errStreamLifetime) it ends at
// the last complete event, so the client resumes with Last-Event-ID.
func (p *Proxy) streamSSE(uctx context.Context, w http.ResponseWriter, body io.Reader, log *slog.Logger, f fwd) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	br := bufio.NewReaderSize(body, 64<<10)
	var event []byte
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			event = append(event, line...)
			if len(event) > maxEventBytes {
				log.WarnContext(context.Background(), "upstream SSE event too large")
				return
			}
			if isBlankLine(line) {
				if f.filter != nil {
					event = rewriteEvent(event, f)
				}
				if _, werr := w.Write(event); werr != nil {
					return
				}
				_ = rc.Flush()
				event = event[:0]
			}
		}
		if err != nil {
			if errors.Is(context.Cause(uctx), errStreamLifetime) {
				log.InfoContext(uctx, "upstream stream lifetime reached; ending the stream")
				return // a partial event is dropped: the client resumes after the last one
			}
			if len(event) > 0 {
				_, _ = w.Write(event)
				_ = rc.Flush()
			}
			return
		}
	}
}

// readLine reads one line including its terminator (\n, \r\n or a lone \r
// is treated only through \n here; SSE servers in practice end lines with
// \n or \r\n).
func readLine(br *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := br.ReadSlice('\n')
		out = append(out, chunk...)
		if err == bufio.ErrBufferFull {
			if len(out) > maxEventBytes {
				return out, err
			}
			continue
		}
		return out, err
	}
}

func isBlankLine(l []byte) bool {
	return bytes.Equal(l, []byte("\n")) || bytes.Equal(l, []byte("\r\n"))
}

// rewriteEvent filters the data of one SSE event (terminated by a blank
// line) when it is a tools/list response; other events are returned as is.
func rewriteEvent(event []byte, f fwd) []byte {
	lines := bytes.SplitAfter(event, []byte("\n"))
	var data [][]byte
	var other [][]byte
	for _, l := range lines {
		if len(l) == 0 || isBlankLine(l) {
			continue
		}
		trim := bytes.TrimRight(l, "\r\n")
		if v, ok := bytes.CutPrefix(trim, []byte("data:")); ok {
			data = append(data, bytes.TrimPrefix(v, []byte(" ")))
			continue
		}
		other = append(other, l)
	}
	if len(data) == 0 {
		return event
	}
	joined := bytes.Join(data, []byte("\n"))
	nd := f.filter.rewrite(joined, f.listIDs)
	if bytes.Equal(nd, joined) {
		return event
	}
	var out []byte
	for _, l := range other {
		out = append(out, l...)
	}
	for _, l := range bytes.Split(nd, []byte("\n")) {
		out = append(out, "data: "...)
		out = append(out, l...)
		out = append(out, '\n')
	}
	return append(out, '\n')
}

// upstreamUnauthorized handles an upstream 401: never relayed. For a vault
// grant the grant is reported unusable and the client gets the gateway's own
// challenge; otherwise 502.
func (p *Proxy) upstreamUnauthorized(w http.ResponseWriter, r *http.Request, log *slog.Logger, f fwd) {
	ctx := r.Context()
	if !f.allow.GetVaultGrant() {
		log.WarnContext(ctx, "upstream rejected static credentials")
		writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamRefused, f.id))
		return
	}
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if _, err := call(cctx, p.cp, func(ctx context.Context, c authorizev1connect.AuthorizeServiceClient) (*authorizev1.ReportUpstreamUnauthorizedResponse, error) {
		return c.ReportUpstreamUnauthorized(ctx, &authorizev1.ReportUpstreamUnauthorizedRequest{Route: f.route, Principal: f.principal})
	}); err != nil {
		log.WarnContext(ctx, "report upstream unauthorized failed", slog.String("code", codeOf(err)))
	}
	d, err := p.describe(cctx, f.route)
	switch {
	case err != nil:
		writeResponse(w, unavailable().withID(f.id))
	case !d.GetFound():
		writeFixed(w, http.StatusNotFound, withID(rpcUnknownServer, f.id))
	default:
		log.InfoContext(ctx, "upstream grant rejected; challenging")
		writeResponse(w, challenge(p.prmURL(f.route), d.GetScopes(), "", "").withID(f.id))
	}
}

func (p *Proxy) describe(ctx context.Context, route string) (*authorizev1.DescribeRouteResponse, error) {
	return call(ctx, p.cp, func(ctx context.Context, c authorizev1connect.AuthorizeServiceClient) (*authorizev1.DescribeRouteResponse, error) {
		return c.DescribeRoute(ctx, &authorizev1.DescribeRouteRequest{Route: route})
	})
}
