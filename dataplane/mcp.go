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
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	"github.com/mcpgate/mcpgate/api/wire"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

const (
	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "Mcp-Protocol-Version"
	headerMcpMethod       = "Mcp-Method"
	headerMcpName         = "Mcp-Name"
	// maxBatchCalls bounds Authorize calls per batch.
	maxBatchCalls = 16
	// smallBody is how much of a POST body is read before the request's
	// credential is known to be good.
	smallBody = 64 << 10
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
//
// The work an unauthenticated request can cause is bounded: at most
// smallBody bytes of a POST body are read (and parsed) before the
// credential is known to be good, none when there is no credential and
// Content-Length announces more. A request without a credential, or whose
// body is larger,
// first gets an identity-only decision (no method, no tool), which is
// final unless it is ALLOW; only then is the rest read, parsed and each
// call authorized. A request with a credential and a small body is parsed
// at once and authorized with one call per distinct (method, tool), as
// before: the common path makes no extra RPC.
func (p *Proxy) serveMCP(w http.ResponseWriter, r *http.Request, route string) {
	ctx := r.Context()
	log := p.log.With(slog.String("route", route), slog.String("http_method", r.Method))
	info := infoFrom(ctx)
	creds := extractCredentials(r.Header, route)
	prm := p.prmURL(route)
	base := &authorizev1.AuthorizeRequest{
		Route:         route,
		Credentials:   creds,
		HttpMethod:    r.Method,
		ClientAddress: clientIP(r),
		PublicBaseUrl: p.publicBase,
		RootAggregate: route == "",
	}

	presented := creds.GetApiKey() != "" || creds.GetBearerToken() != ""
	var body []byte
	complete := true
	if r.Method == http.MethodPost {
		if r.ContentLength > p.maxBody {
			writeFixed(w, http.StatusRequestEntityTooLarge, rpcTooLarge)
			return
		}
		limit := min(p.maxBody, smallBody)
		if presented || r.ContentLength <= limit {
			b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
			if err != nil {
				log.InfoContext(ctx, "read request body failed")
				writeFixed(w, http.StatusBadRequest, rpcParseError)
				return
			}
			if int64(len(b)) > limit {
				if limit == p.maxBody {
					writeFixed(w, http.StatusRequestEntityTooLarge, rpcTooLarge)
					return
				}
				complete = false
			}
			body = b
		} else {
			// Anonymous and announced larger: nothing is read before the
			// decision.
			complete = false
		}
	}

	if r.Method == http.MethodPost && (!presented || !complete) {
		// Identity first: the body is neither read further nor parsed for
		// a request the control plane refuses whatever it asks for.
		actx, cancel := context.WithTimeout(ctx, p.timeout)
		res, err := p.authorize(actx, base)
		cancel()
		if out := mapDecision(res, err, prm); !out.Forward {
			id, asked := "", rpcCall{}
			if complete {
				// Bounded by smallBody: echo the id, and let the audit
				// event say what the refused request asked for.
				if pb, perr := parseBody(body); perr == nil {
					id, asked = pb.ID, pb.Calls[0]
				}
			} else {
				// Unread body: close instead of draining it.
				w.Header().Set("Connection", "close")
			}
			p.refuse(w, r, log, info, res, err, out, asked, id)
			return
		}
		if !complete {
			rest, err := io.ReadAll(io.LimitReader(r.Body, p.maxBody-int64(len(body))+1))
			if err != nil {
				log.InfoContext(ctx, "read request body failed")
				writeFixed(w, http.StatusBadRequest, rpcParseError)
				return
			}
			body = append(body, rest...)
			if int64(len(body)) > p.maxBody {
				writeFixed(w, http.StatusRequestEntityTooLarge, rpcTooLarge)
				return
			}
		}
	}

	var parsed rpcBody
	var perr error
	if r.Method == http.MethodPost {
		parsed, perr = parseBody(body)
	}
	calls := parsed.Calls
	if len(calls) == 0 {
		calls = []rpcCall{{}}
	}
	actx, cancel := context.WithTimeout(ctx, p.timeout)
	var res *authorizev1.AuthorizeResponse
	var err error
	decided := calls[0] // the call the outcome is about: the first, or the one refused
	for i, c := range calls {
		if i == maxBatchCalls {
			break
		}
		req := proto.CloneOf(base)
		req.JsonrpcMethod, req.ToolName = c.Method, c.Tool
		if !parsed.Batch {
			// The names policy and aggregates resolve (the exposed name, on
			// an aggregate route).
			switch f := parsed.First; c.Method {
			case "prompts/get":
				if f.HasName {
					req.PromptName = f.Name
				}
			case "resources/read":
				if f.HasURI {
					req.ResourceUri = f.URI
				}
			case "":
				// A client's answer to an aggregate member's request.
				req.Member = p.requestMember(f.ID)
			}
		}
		res, err = p.authorize(actx, req)
		if err != nil || res.GetDecision() != authorizev1.Decision_DECISION_ALLOW {
			decided = c
			break
		}
	}
	cancel()
	out := mapDecision(res, err, prm)
	if !out.Forward {
		p.refuse(w, r, log, info, res, err, out, decided, parsed.ID)
		return
	}
	log = info.record(log, res, err, decided)

	// Authorized: only now may malformed input be called malformed.
	if perr != nil {
		writeFixed(w, http.StatusBadRequest, rpcErrorBody(perr))
		return
	}
	if len(parsed.Calls) > maxBatchCalls {
		writeFixed(w, http.StatusBadRequest, withID(rpcParseError, parsed.ID))
		return
	}
	if r.Method == http.MethodPost && !headersMatchBody(r.Header, parsed) {
		writeFixed(w, http.StatusBadRequest, withID(rpcHeaderMismatch, parsed.ID))
		return
	}

	if res.GetAggregate() != nil {
		p.serveAggregate(w, r, log, route, res, base, parsed)
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

	p.forward(w, r, log, fwd{
		route:     route,
		principal: principal,
		allow:     out.Allow,
		body:      parsed.Canonical, // exactly what was authorized
		session:   upstreamSession,
		handle:    clientHandle,
		// Every reply is filtered whatever the request: ids cannot be
		// trusted to match (issue 8 item 2).
		filter:    newToolFilter(out.Allow.GetAllowedTools(), out.Allow.GetDisallowedTools()),
		id:        parsed.ID,
		mayStream: mayStream(r.Method, parsed.Calls),
	})
}

// record notes the decision about call c for the audit and metrics, and
// returns log with the decision's attributes.
func (info *reqInfo) record(log *slog.Logger, res *authorizev1.AuthorizeResponse, err error, c rpcCall) *slog.Logger {
	info.decided(res, err)
	info.method, info.tool = c.Method, c.Tool
	return log.With(slog.String("decision", res.GetDecision().String()),
		slog.String("principal", res.GetPrincipal()),
		slog.String("key_prefix", res.GetKeyPrefix()),
		slog.String("reason", res.GetReason()),
		slog.String("jsonrpc_method", c.Method), slog.String("tool", c.Tool))
}

// refuse answers a request the control plane did not allow (or could not
// decide), recording the call the decision was about.
func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, log *slog.Logger, info *reqInfo, res *authorizev1.AuthorizeResponse, err error, out outcome, c rpcCall, id string) {
	ctx := r.Context()
	log = info.record(log, res, err, c)
	if err != nil {
		log.WarnContext(ctx, "authorize failed", slog.String("code", codeOf(err)))
	}
	log.InfoContext(ctx, "refused", slog.Int("status", out.Response.Status))
	writeResponse(w, out.Response.withID(id))
}

// rpcErrorBody is the fixed answer to a body parseBody rejected.
func rpcErrorBody(err error) string {
	switch {
	case errors.Is(err, errRPCAmbiguous):
		return rpcAmbiguous
	case errors.Is(err, errRPCInvalid):
		return rpcInvalidRequest
	}
	return rpcParseError
}

// headersMatchBody checks the 2026-07-28 Mcp-Method / Mcp-Name mirrors when
// the client sent them: each at most once, only on a single message, and
// equal to the body's method and to the params.name (tools/call,
// prompts/get) or params.uri (resources/read) the gateway read.
func headersMatchBody(h http.Header, b rpcBody) bool {
	ms, ns := valuesFold(h, headerMcpMethod), valuesFold(h, headerMcpName)
	if len(ms) == 0 && len(ns) == 0 {
		return true
	}
	if b.Batch || len(ms) > 1 || len(ns) > 1 {
		return false
	}
	m := b.First
	if len(ms) == 1 && (!m.HasMethod || ms[0] != m.Method) {
		return false
	}
	if len(ns) == 1 {
		switch m.Method {
		case "tools/call", "prompts/get":
			return m.HasName && ns[0] == m.Name
		case "resources/read":
			return m.HasURI && ns[0] == m.URI
		default:
			return false
		}
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
	return wire.ResourceMetadataURL(p.publicBase, route)
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
	session   string      // upstream Mcp-Session-Id, if any
	handle    string      // the client's handle for session
	id        string      // the JSON-RPC id of a single request, for error answers
	filter    *toolFilter // nil: nothing to filter
	mayStream bool        // counts against the principal's concurrent-stream bound
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
			replaceUpstreamHeaders(h)
			writeResponse(w, unavailable().withID(f.id))
			return
		}
		h.Set(headerSessionID, handle)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case mt == "text/event-stream":
		h.Set("X-Accel-Buffering", "no")
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(resp.StatusCode)
		p.streamSSE(uctx, w, resp.Body, log, f)
	case f.filter != nil:
		// A JSON reply (or anything a lenient client might parse as
		// JSON) is filtered whole; what cannot be checked is not relayed.
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxEventBytes+1))
		if err != nil || len(b) > maxEventBytes {
			log.WarnContext(ctx, "upstream reply unreadable")
			writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
			return
		}
		if t := bytes.TrimSpace(b); len(t) > 0 && (mt == "application/json" || t[0] == '{' || t[0] == '[') {
			if b, err = f.filter.rewrite(b); err != nil {
				log.WarnContext(ctx, "upstream reply cannot be checked")
				replaceUpstreamHeaders(h)
				writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamUnchecked, f.id))
				return
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
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

// streamSSE copies an event stream event by event, flushing after each.
// With a filter, every event's data is filtered (whatever its id); an event
// that cannot be checked ends the stream with a JSON-RPC error event
// instead. When the stream's lifetime ends (uctx cancelled with
// errStreamLifetime) it ends at the last complete event, so the client
// resumes with Last-Event-ID.
func (p *Proxy) streamSSE(uctx context.Context, w http.ResponseWriter, body io.Reader, log *slog.Logger, f fwd) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	br := bufio.NewReaderSize(body, 64<<10)
	var event []byte
	emit := func() bool {
		out := event
		if f.filter != nil {
			var err error
			if out, err = rewriteEvent(event, f.filter); err != nil {
				log.WarnContext(context.Background(), "upstream SSE event cannot be checked")
				_, _ = w.Write([]byte("event: message\ndata: " + withID(rpcUpstreamUnchecked, f.id) + "\n\n"))
				_ = rc.Flush()
				return false
			}
		}
		if _, err := w.Write(out); err != nil {
			return false
		}
		_ = rc.Flush()
		event = event[:0]
		return true
	}
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			event = append(event, line...)
			if len(event) > maxEventBytes {
				log.WarnContext(context.Background(), "upstream SSE event too large")
				return
			}
			if isBlankLine(line) && !emit() {
				return
			}
		}
		if err != nil {
			if errors.Is(context.Cause(uctx), errStreamLifetime) {
				log.InfoContext(uctx, "upstream stream lifetime reached; ending the stream")
				return // a partial event is dropped: the client resumes after the last one
			}
			if len(event) > 0 {
				emit()
			}
			return
		}
	}
}

// readLine reads one line including its terminator (\n or \r\n). A lone
// \r (also a line end for SSE parsers) stays inside the line; with a
// filter, rewriteEvent refuses such events.
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

// rewriteEvent filters the data of one SSE event. An event without data,
// or with blank data, is returned as is; one whose data is not exactly
// decodable JSON-RPC, or that holds a lone \r (which SSE parsers take for
// a line end the gateway did not see), is errUnchecked.
func rewriteEvent(event []byte, filter *toolFilter) ([]byte, error) {
	if i := bytes.IndexByte(event, '\r'); i >= 0 {
		for j := i; j < len(event); j++ {
			if event[j] == '\r' && (j+1 == len(event) || event[j+1] != '\n') {
				return nil, errUnchecked
			}
		}
	}
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
		if bytes.Equal(trim, []byte("data")) {
			data = append(data, nil)
			continue
		}
		other = append(other, l)
	}
	if len(data) == 0 {
		return event, nil
	}
	joined := bytes.Join(data, []byte("\n"))
	if len(bytes.TrimSpace(joined)) == 0 {
		return event, nil
	}
	nd, err := filter.rewrite(joined)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(nd, joined) {
		return event, nil
	}
	var out []byte
	for _, l := range other {
		out = append(out, l...)
		if !bytes.HasSuffix(l, []byte("\n")) {
			out = append(out, '\n')
		}
	}
	for _, l := range bytes.Split(nd, []byte("\n")) {
		out = append(out, "data: "...)
		out = append(out, l...)
		out = append(out, '\n')
	}
	return append(out, '\n'), nil
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
	p.reportUnauthorized(ctx, f.route, f.principal, log)
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
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

// reportUnauthorized tells the control plane that server refused
// principal's vault grant.
func (p *Proxy) reportUnauthorized(ctx context.Context, server, principal string, log *slog.Logger) {
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if _, err := call(cctx, p.cp, func(ctx context.Context, c authorizev1connect.AuthorizeServiceClient) (*authorizev1.ReportUpstreamUnauthorizedResponse, error) {
		return c.ReportUpstreamUnauthorized(ctx, &authorizev1.ReportUpstreamUnauthorizedRequest{Route: server, Principal: principal})
	}); err != nil {
		log.WarnContext(ctx, "report upstream unauthorized failed", slog.String("code", codeOf(err)))
	}
}

func (p *Proxy) describe(ctx context.Context, route string) (*authorizev1.DescribeRouteResponse, error) {
	return call(ctx, p.cp, func(ctx context.Context, c authorizev1connect.AuthorizeServiceClient) (*authorizev1.DescribeRouteResponse, error) {
		return c.DescribeRoute(ctx, &authorizev1.DescribeRouteRequest{Route: route})
	})
}
