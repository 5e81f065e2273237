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
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/dataplane/bridge"

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
		req.ResourceUri, req.PromptName = c.Resource, c.Prompt
		if !parsed.Batch && c.Method == "" {
			// A client's answer to an aggregate member's request.
			req.Member = p.requestMember(parsed.First.ID)
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
	var cls classification
	if r.Method == http.MethodPost {
		if cls = classifyRequest(r.Header, parsed); cls.Status != 0 {
			log.InfoContext(ctx, "request refused by protocol rules", slog.Int("status", cls.Status))
			writeFixed(w, cls.Status, withID(cls.Refusal, parsed.ID))
			return
		}
	}

	if res.GetAggregate() != nil {
		p.serveAggregate(w, r, log, route, res, base, parsed, cls)
		return
	}

	principal := res.GetPrincipal()
	fwdBody := parsed.Canonical // exactly what was authorized
	if hasRequestState(parsed) {
		var ok bool
		if fwdBody, ok = p.openRetryState(w, r, log, parsed, principal, route); !ok {
			return
		}
	}
	upstreamSession, clientHandle, bridgeMeta := "", "", ""
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
		bridgeMeta = s.bridge
	}

	filter := newListFilter(out.Allow).withPins(out.Allow.GetToolPinning())
	if filter != nil && filter.pins != nil {
		// What the reply showed that is not pinned (yet, or any more).
		defer func() { p.pins.add(route, filter.pins.reports()) }()
	}
	var sealer *stateSealer
	if cls.Modern || bridgeMeta != "" || p.upstreamModernOnly(out.Allow) {
		// A 2026-07-28 exchange: an input_required result's requestState
		// reaches the client sealed.
		var ok bool
		if sealer, ok = p.newSealer(w, r, log, parsed, principal, route); !ok {
			return
		}
	}
	f := fwd{
		route:     route,
		principal: principal,
		allow:     out.Allow,
		body:      fwdBody,
		session:   upstreamSession,
		handle:    clientHandle,
		// Every reply is filtered whatever the request: ids cannot be
		// trusted to match (issue 8 item 2).
		filter:    filter,
		sealer:    sealer,
		id:        parsed.ID,
		mayStream: mayStream(r.Method, parsed.Calls),
		modern:    cls.Modern,
		discover:  parsed.First.Method == "server/discover",
		probe:     out.Allow.GetUpstreamProtocolVersion() == "",
	}
	if bridgeMeta != "" && !cls.Modern {
		p.serveUpgraded(w, r, log, f, parsed, bridgeMeta)
		return
	}
	isInitialize := r.Method == http.MethodPost && !cls.Modern && !parsed.Batch && parsed.First.IsCall &&
		parsed.First.Method == "initialize" && clientHandle == ""
	if isInitialize && p.initializeOnModern(w, r, log, f, parsed) {
		return
	}
	// server/discover is never bridged: a client that can fall back (the
	// Go SDK's default client tries server/discover first) must get the
	// upstream's own answer and negotiate 2025-11-25 with it exactly as it
	// would directly, sessions and streams included. Only 2026-07-28
	// requests proper are bridged.
	if cls.Modern && !f.discover && p.upstreamLegacy(out.Allow) {
		p.serveBridged(w, r, log, f, parsed)
		return
	}
	if r.Method == http.MethodPost && !cls.Modern && p.upstreamModernOnly(out.Allow) {
		p.serveUpgraded(w, r, log, f, parsed, noClientMeta)
		return
	}
	f.legacyClient = r.Method == http.MethodPost && !cls.Modern
	switch p.forward(w, r, log, f) {
	case fwdLegacy:
		// The upstream turned the 2026-07-28 request down as a 2025-only
		// server (nothing was processed): bridge it, and from now on.
		log.InfoContext(ctx, "upstream speaks only 2025-11-25; bridging 2026-07-28 requests")
		p.serveBridged(w, r, log, f, parsed)
	case fwdModernOnly:
		log.InfoContext(ctx, "upstream speaks only 2026-07-28; sending 2025-11-25 requests as 2026-07-28")
		if isInitialize && p.initializeOnModern(w, r, log, f, parsed) {
			return
		}
		p.serveUpgraded(w, r, log, f, parsed, noClientMeta)
	}
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
		slog.String("jsonrpc_method", c.Method), slog.String("tool", c.Tool),
		slog.String("rule_id", res.GetRuleId()),
		slog.String("limit_id", info.limit))
}

// refuse answers a request the control plane did not allow (or could not
// decide), recording the call the decision was about.
func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, log *slog.Logger, info *reqInfo, res *authorizev1.AuthorizeResponse, err error, out outcome, c rpcCall, id string) {
	ctx := r.Context()
	log = info.record(log, res, err, c)
	if err != nil {
		log.WarnContext(ctx, "authorize failed", slog.String("code", codeOf(err)))
	}
	log.LogAttrs(ctx, slog.LevelDebug, "refused", slog.Int("status", out.Response.Status)) // the audit log has every refusal
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

// authorize decides req: a reusable cached ALLOW when the decision cache
// has one, else the Authorize RPC (whose ALLOW may then be cached). The
// request's info counts both, so its audit event says whether every
// decision it needed was a cached one.
func (p *Proxy) authorize(ctx context.Context, req *authorizev1.AuthorizeRequest) (*authorizev1.AuthorizeResponse, error) {
	info := infoFrom(ctx)
	info.authCalls++
	var key [32]byte
	keyed := false
	if p.dcache != nil {
		key, keyed = requestKey(req)
		if keyed {
			if res, ok := p.dcache.lookup(key); ok {
				info.cacheHits++
				return res, nil
			}
		}
	}
	start := time.Now()
	res, err := call(ctx, p.cp, func(ctx context.Context, c authorizev1connect.AuthorizeServiceClient) (*authorizev1.AuthorizeResponse, error) {
		return c.Authorize(ctx, req)
	})
	p.metrics.RecordAuthorize(decisionLabel(res, err), time.Since(start))
	if err == nil && p.dcache != nil {
		p.dcache.observe(res.GetDecisionRevision())
		if keyed {
			p.dcache.store(key, req.GetRoute(), res)
		}
	}
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
	session   string       // upstream Mcp-Session-Id, if any
	handle    string       // the client's handle for session
	id        string       // the JSON-RPC id of a single request, for error answers
	filter    *toolFilter  // nil: no tool filter
	sealer    *stateSealer // nil: requestState is not sealed (not a 2026-07-28 call)
	mayStream bool         // counts against the principal's concurrent-stream bound
	// modern: a 2026-07-28 request; an upstream answering it as a
	// 2025-only server is reported as fwdLegacy instead of relayed.
	modern bool
	// discover: the request is server/discover.
	discover bool
	// bridged: the request goes on a bridge session (2026-07-28 client,
	// 2025-only upstream); a 404 is reported as fwdStale instead of relayed.
	bridged bool
	// upgraded: a 2025-11-25 client's request sent as 2026-07-28 to an
	// upstream that speaks only that, with these Mcp-Method / Mcp-Name.
	upgraded         bool
	upMethod, upName string
	// probe: the server's protocol_version is auto, so the upstream's
	// refusals teach this process what it speaks.
	probe bool
	// legacyClient: a 2025-style POST; an upstream refusing it as a
	// 2026-07-28-only server is reported as fwdModernOnly.
	legacyClient bool
	// swap: the request went upstream under a gateway id (a shared bridge
	// session); replies carrying it get the client's id back.
	swap *idSwap
}

// fwdResult is what forward did.
type fwdResult int

const (
	fwdDone       fwdResult = iota // answered the client
	fwdLegacy                      // nothing written: the upstream speaks only 2025-11-25
	fwdStale                       // nothing written: the bridge session is gone upstream
	fwdModernOnly                  // nothing written: the upstream speaks only 2026-07-28
)

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

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, log *slog.Logger, f fwd) fwdResult {
	ctx := r.Context()
	rewriter := replyRewriterFor(f.filter, f.sealer)
	if f.swap != nil {
		rewriter = &idRewriter{inner: rewriter, swap: f.swap}
	}
	if f.mayStream {
		release, ok := p.streams.acquire(f.principal)
		if !ok {
			log.InfoContext(ctx, "too many concurrent streams for the principal")
			writeResponse(w, tooManyStreams(f.id))
			return fwdDone
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
		return fwdDone
	}
	copyEndToEnd(up.Header, r.Header, isStrippedRequestHeader)
	if f.bridged {
		up.Header.Set(headerProtocolVersion, bridge.Version20251125)
	}
	if f.upgraded {
		up.Header.Set(headerProtocolVersion, bridge.Version20260728)
		up.Header.Set(headerMcpMethod, f.upMethod)
		up.Header.Del(headerMcpName)
		if f.upName != "" {
			up.Header.Set(headerMcpName, f.upName)
		}
	}
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
		return fwdDone // the client is gone
	case timedOut:
		log.WarnContext(ctx, "upstream response headers timed out")
		writeFixed(w, http.StatusGatewayTimeout, withID(rpcUpstreamTimeout, f.id))
		return fwdDone
	case err != nil:
		log.WarnContext(ctx, "upstream unreachable")
		writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
		return fwdDone
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		// Never relayed: a client following it would re-send its request,
		// gateway credentials included, wherever the upstream pointed.
		log.WarnContext(ctx, "upstream answered with a redirect", slog.Int("upstream_status", resp.StatusCode))
		writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamRedirect, f.id))
		return fwdDone
	case f.bridged && resp.StatusCode == http.StatusNotFound:
		return fwdStale
	case f.probe && f.modern && !f.bridged && resp.StatusCode == http.StatusBadRequest:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, smallBody))
		if bridge.IsLegacyRejection(resp.StatusCode, b) {
			p.versions.SetLegacy(f.allow.GetUpstreamUrl())
			if !f.discover {
				return fwdLegacy
			}
		}
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), resp.Body))
	case f.probe && f.legacyClient && resp.StatusCode == http.StatusBadRequest:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, smallBody))
		if bridge.IsModernOnlyRejection(resp.StatusCode, b) {
			p.versions.SetModernOnly(f.allow.GetUpstreamUrl())
			return fwdModernOnly
		}
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), resp.Body))
	case f.probe && f.modern && !f.bridged && f.discover && resp.StatusCode == http.StatusOK:
		// A 2025-only server may answer server/discover listing only
		// older versions (the Go SDK's stateful servers do).
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxEventBytes+1))
		if err != nil || len(b) > maxEventBytes {
			log.WarnContext(ctx, "upstream reply unreadable")
			writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
			return fwdDone
		}
		if bridge.IsLegacyDiscover(resp.Header.Get("Content-Type"), b) {
			// Learnt, and relayed as the upstream answered (see serveMCP).
			p.versions.SetLegacy(f.allow.GetUpstreamUrl())
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		p.upstreamUnauthorized(w, r, log, f)
		return fwdDone
	case encodedBody(resp.Header):
		log.WarnContext(ctx, "upstream answered with an unsupported content encoding")
		writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamEncoding, f.id))
		return fwdDone
	}
	lifetime := time.AfterFunc(p.streamLifetime, func() { ucancel(errStreamLifetime) })
	defer lifetime.Stop()

	h := w.Header()
	copyResponseHeaders(h, resp.Header)
	if f.bridged || f.modern {
		// 2026-07-28 has no sessions; a bridge session stays the gateway's.
		h.Del(headerSessionID)
	} else if sid := resp.Header.Get(headerSessionID); sid != "" && sid == f.session {
		h.Set(headerSessionID, f.handle) // same session: keep the client's handle stable
	} else if sid != "" {
		handle, err := p.sealSession(ctx, sessionBinding{upstream: sid, principal: f.principal, route: f.route})
		if err != nil {
			log.WarnContext(ctx, "cannot seal session", slog.String("code", codeOf(err)))
			replaceUpstreamHeaders(h)
			writeResponse(w, unavailable().withID(f.id))
			return fwdDone
		}
		h.Set(headerSessionID, handle)
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case mt == "text/event-stream":
		h.Set("X-Accel-Buffering", "no")
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(resp.StatusCode)
		p.streamSSE(uctx, w, resp.Body, log, f, rewriter)
	case rewriter != nil:
		// A JSON reply (or anything a lenient client might parse as
		// JSON) is filtered whole; what cannot be checked is not relayed.
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxEventBytes+1))
		if err != nil || len(b) > maxEventBytes {
			log.WarnContext(ctx, "upstream reply unreadable")
			writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamFailed, f.id))
			return fwdDone
		}
		if t := bytes.TrimSpace(b); len(t) > 0 && (mt == "application/json" || t[0] == '{' || t[0] == '[') {
			if b, err = rewriter.rewrite(b); err != nil {
				log.WarnContext(ctx, "upstream reply cannot be checked")
				replaceUpstreamHeaders(h)
				writeFixed(w, http.StatusBadGateway, withID(rpcUpstreamUnchecked, f.id))
				return fwdDone
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
	default:
		w.WriteHeader(resp.StatusCode)
		buf := copyBuffers.Get().(*[]byte)
		_, _ = io.CopyBuffer(w, resp.Body, *buf)
		copyBuffers.Put(buf)
	}
	// Debug: the audit log is the per-request record.
	log.LogAttrs(ctx, slog.LevelDebug, "forwarded", slog.Int("upstream_status", resp.StatusCode))
	return fwdDone
}

// Buffers reused across requests: a fresh 32 KiB copy buffer per JSON
// reply and 64 KiB reader per SSE reply were most of the data plane's
// allocations per call (profiled), and so of its GC work.
var (
	copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	sseReaders  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}
)

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
func (p *Proxy) streamSSE(uctx context.Context, w http.ResponseWriter, body io.Reader, log *slog.Logger, f fwd, rewriter messageRewriter) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	br := sseReaders.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() { br.Reset(nil); sseReaders.Put(br) }()
	var event []byte
	emit := func() bool {
		out := event
		if rewriter != nil {
			var err error
			if out, err = rewriteEvent(event, rewriter); err != nil {
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
func rewriteEvent(event []byte, filter messageRewriter) ([]byte, error) {
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
	if p.dcache != nil {
		// Whatever credential a cached decision carried for this route
		// was refused: decide again next time.
		p.dcache.forget(f.principal, f.route)
	}
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
