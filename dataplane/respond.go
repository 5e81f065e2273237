package dataplane

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// Every answer the gateway makes itself, instead of relaying the upstream's
// or the control plane's, is built here, by one function family: fixed is
// the base (status, a fixed JSON body, Content-Type: application/json,
// Cache-Control: no-store); challenge (401), unavailable (503),
// tooManyStreams and rateLimited (429) add their headers to it; mapDecision maps an
// Authorize result onto them. Nothing request-specific or secret ever goes
// into a body except the echoed JSON-RPC id, so the bodies are constants.
const (
	bodyNotFound         = `{"error":"not_found","error_description":"no such endpoint"}`
	bodyBadHost          = `{"error":"forbidden","error_description":"invalid Host header"}`
	bodyBadOrigin        = `{"error":"forbidden","error_description":"origin not allowed"}`
	bodyMethodNotAllowed = `{"error":"method_not_allowed","error_description":"method not allowed"}`
	bodyUnavailable      = `{"error":"temporarily_unavailable","error_description":"control plane unavailable"}`
	bodyRelayUnreadable  = `{"error":"invalid_request","error_description":"unreadable body"}`
	bodyRelayTooLarge    = `{"error":"invalid_request","error_description":"request body too large"}`

	// JSON-RPC error bodies (id null: the gateway answers for the request as
	// a whole, before or instead of the upstream; withID echoes the id of a
	// single request).
	rpcUnauthorized      = `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"authentication required"}}`
	rpcForbidden         = `{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"forbidden"}}`
	rpcInsufficientScope = `{"jsonrpc":"2.0","id":null,"error":{"code":-32003,"message":"insufficient scope"}}`
	rpcUnknownServer     = `{"jsonrpc":"2.0","id":null,"error":{"code":-32004,"message":"unknown MCP server"}}`
	rpcUnavailable       = `{"jsonrpc":"2.0","id":null,"error":{"code":-32005,"message":"authorization temporarily unavailable"}}`
	rpcTooManyStreams    = `{"jsonrpc":"2.0","id":null,"error":{"code":-32006,"message":"too many concurrent requests for this principal"}}`
	rpcParseError        = `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}`
	rpcInvalidRequest    = `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request"}}`
	rpcAmbiguous         = `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"invalid request: duplicate or case-variant member names"}}`
	rpcHeaderMismatch    = `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"Mcp-Method or Mcp-Name header does not match the body"}}`
	rpcTooLarge          = `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"request body too large"}}`
	rpcUnknownSession    = `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"session not found"}}`
	rpcUpstreamFailed    = `{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"upstream MCP server unreachable"}}`
	rpcUpstreamUnchecked = `{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"upstream MCP server reply could not be checked"}}`
	rpcUpstreamRefused   = `{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"upstream MCP server rejected the gateway's credentials"}}`
	rpcUpstreamRedirect  = `{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"upstream MCP server answered with a redirect"}}`
	rpcUpstreamEncoding  = `{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"upstream MCP server answered with an unsupported content encoding"}}`
	rpcUpstreamTimeout   = `{"jsonrpc":"2.0","id":null,"error":{"code":-32002,"message":"upstream MCP server did not answer in time"}}`
)

// response is an answer the data plane makes instead of forwarding.
type response struct {
	Status int
	Header http.Header
	Body   string
}

// fixed is the base of every gateway-made answer: status and a fixed JSON
// body, never cached (a 401, 403 or 404 depends on the credential sent,
// a 503 or 429 on the moment).
func fixed(status int, body string) response {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	return response{Status: status, Header: h, Body: body}
}

// unavailable is the 503 answer when authorization could not be decided.
func unavailable() response {
	r := fixed(http.StatusServiceUnavailable, rpcUnavailable)
	r.Header.Set("Retry-After", "1")
	return r
}

// relayUnavailable is the 503 answer when no control plane took a relayed
// OAuth request.
func relayUnavailable() response {
	r := fixed(http.StatusServiceUnavailable, bodyUnavailable)
	r.Header.Set("Retry-After", "1")
	return r
}

// tooManyStreams is the 429 answer at the per-principal bound.
func tooManyStreams(id string) response {
	r := fixed(http.StatusTooManyRequests, rpcTooManyStreams)
	r.Header.Set("Retry-After", streamsRetryAfter)
	return r.withID(id)
}

// JSON-RPC error code of a call a rate limit refused.
const codeRateLimited = -32029

// maxRetryAfter bounds the Retry-After the data plane passes on: a day,
// the longest window.
const maxRetryAfter = 86400

// rateLimitedParts returns what a rate-limited answer names: the limit id
// when it is a name by api/wire's grammar (so it needs no escaping; any
// other value is never echoed), the window when it is one of the three,
// and the retry delay clamped to [1, maxRetryAfter] seconds.
func rateLimitedParts(rl *authorizev1.RateLimited) (id, window string, retry int64) {
	if wire.ValidServerName(rl.GetLimitId()) {
		id = rl.GetLimitId()
	}
	switch rl.GetWindow() {
	case "second", "minute", "day":
		window = rl.GetWindow()
	}
	return id, window, min(max(rl.GetRetryAfterSeconds(), 1), maxRetryAfter)
}

// rateLimitedMessage is the one text of a rate-limited call, for the
// JSON-RPC error and the tool error result alike.
func rateLimitedMessage(id string, retry int64) string {
	if id == "" {
		return "rate limit exceeded; retry in " + strconv.FormatInt(retry, 10) + " s"
	}
	return "rate limit " + id + " exceeded; retry in " + strconv.FormatInt(retry, 10) + " s"
}

// rateLimited is the 429 answer to a call a rate limit refused: Retry-After
// and a JSON-RPC error naming the limit, its window and the delay (every
// part checked against a fixed grammar, nothing else from the decision).
func rateLimited(rl *authorizev1.RateLimited) response {
	id, window, retry := rateLimitedParts(rl)
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":null,"error":{"code":`)
	b.WriteString(strconv.Itoa(codeRateLimited))
	b.WriteString(`,"message":"`)
	b.WriteString(rateLimitedMessage(id, retry))
	b.WriteString(`","data":{"limit_id":"`)
	b.WriteString(id)
	b.WriteString(`","window":"`)
	b.WriteString(window)
	b.WriteString(`","retry_after_seconds":`)
	b.WriteString(strconv.FormatInt(retry, 10))
	b.WriteString(`}}}`)
	r := fixed(http.StatusTooManyRequests, b.String())
	r.Header.Set("Retry-After", strconv.FormatInt(retry, 10))
	return r
}

// rateLimitedToolResult is the JSON-RPC response (with the request's id,
// as the client sent it) answering a tools/call a rate limit refused when
// the gateway already answers inside an SSE stream and cannot send a 429:
// a tool error result the model can act on, "rate limit <id> exceeded;
// retry in N s", with isError true.
func rateLimitedToolResult(id string, rl *authorizev1.RateLimited) string {
	lid, _, retry := rateLimitedParts(rl)
	if id == "" {
		id = "null"
	}
	return `{"jsonrpc":"2.0","id":` + id + `,"result":{"content":[{"type":"text","text":"` +
		rateLimitedMessage(lid, retry) + `"}],"isError":true}}`
}

// challenge is the 401 answer: exactly one Bearer challenge naming the
// route's metadata URL, which the data plane builds from its own public URL.
func challenge(prmURL string, scopes []string, errCode, desc string) response {
	r := fixed(http.StatusUnauthorized, rpcUnauthorized)
	r.Header.Set("WWW-Authenticate", bearerChallenge(prmURL, scopes, errCode, desc))
	return r
}

// insufficientScope is the 403 step-up answer (RFC 6750 section 3.1, MCP
// 2025-11-25 scope challenge): `Bearer error="insufficient_scope",
// scope="<every scope the operation needs, held ones included>",
// resource_metadata="<PRM URL>"`, values scrubbed like every challenge's.
func insufficientScope(prmURL string, scopes []string) response {
	r := fixed(http.StatusForbidden, rpcInsufficientScope)
	var b strings.Builder
	b.WriteString(`Bearer error="insufficient_scope"`)
	if s := scrub(strings.Join(scopes, " "), false); strings.TrimSpace(s) != "" {
		b.WriteString(`, scope="`)
		b.WriteString(s)
		b.WriteByte('"')
	}
	b.WriteString(`, resource_metadata="`)
	b.WriteString(scrub(prmURL, true))
	b.WriteByte('"')
	r.Header.Set("WWW-Authenticate", b.String())
	return r
}

// outcome is the decision mapped to HTTP: either forward with Allow, or
// answer Response.
type outcome struct {
	Forward  bool
	Allow    *authorizev1.Allow
	Response response
}

// mapDecision is the one, pure and total mapping from an Authorize result to
// HTTP. err != nil means "could not decide". Any value it does not know —
// unspecified, a future enum number, ALLOW without an Allow, CHALLENGE
// without a Challenge — fails closed with 503, never forwarding and never
// 500. prmURL is the route's protected-resource metadata URL, built from the
// configured public URL.
func mapDecision(res *authorizev1.AuthorizeResponse, err error, prmURL string) outcome {
	if err != nil || res == nil {
		return outcome{Response: unavailable()}
	}
	switch res.GetDecision() {
	case authorizev1.Decision_DECISION_ALLOW:
		if res.GetAggregate() != nil {
			// An aggregate route: the data plane answers as the MCP
			// server, from the members' own decisions.
			return outcome{Forward: true}
		}
		a := res.GetAllow()
		if a == nil || a.GetUpstreamUrl() == "" {
			return outcome{Response: unavailable()}
		}
		return outcome{Forward: true, Allow: a}
	case authorizev1.Decision_DECISION_CHALLENGE:
		c := res.GetChallenge()
		if c == nil {
			return outcome{Response: unavailable()}
		}
		return outcome{Response: challenge(prmURL, c.GetScopes(), c.GetError(), c.GetErrorDescription())}
	case authorizev1.Decision_DECISION_DENY:
		if is := res.GetDeny().GetInsufficientScope(); is != nil {
			return outcome{Response: insufficientScope(prmURL, is.GetScopes())}
		}
		return outcome{Response: fixed(http.StatusForbidden, rpcForbidden)}
	case authorizev1.Decision_DECISION_NOT_FOUND:
		return outcome{Response: fixed(http.StatusNotFound, rpcUnknownServer)}
	case authorizev1.Decision_DECISION_RATE_LIMITED:
		rl := res.GetRateLimited()
		if rl == nil {
			return outcome{Response: unavailable()}
		}
		return outcome{Response: rateLimited(rl)}
	default:
		return outcome{Response: unavailable()}
	}
}

// bearerChallenge formats `Bearer resource_metadata="…", scope="…"[,
// error="…", error_description="…"]` with quoted values. Client parsers
// split on commas and match name= anywhere, so values are scrubbed of
// quotes, backslashes, commas and equals signs.
func bearerChallenge(prmURL string, scopes []string, errCode, desc string) string {
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata="`)
	b.WriteString(scrub(prmURL, true))
	b.WriteByte('"')
	if s := scrub(strings.Join(scopes, " "), false); strings.TrimSpace(s) != "" {
		b.WriteString(`, scope="`)
		b.WriteString(s)
		b.WriteByte('"')
	}
	if e := scrub(errCode, false); e != "" {
		b.WriteString(`, error="`)
		b.WriteString(e)
		b.WriteByte('"')
		if d := scrub(desc, false); d != "" {
			b.WriteString(`, error_description="`)
			b.WriteString(d)
			b.WriteByte('"')
		}
	}
	return b.String()
}

// scrub keeps printable ASCII minus the characters that break challenge
// parsers; a URL keeps '=' (query strings are never part of it anyway).
func scrub(s string, isURL bool) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r < 0x20 || r > 0x7e, r == '"', r == '\\', r == ',':
			return -1
		case r == '=' && !isURL:
			return -1
		}
		return r
	}, s)
}

// withID is r with the request's id echoed in its JSON-RPC error body.
func (r response) withID(id string) response {
	r.Body = withID(r.Body, id)
	return r
}

// writeFixed writes fixed(status, body).
func writeFixed(w http.ResponseWriter, status int, body string) {
	writeResponse(w, fixed(status, body))
}

// writeResponse writes a gateway-made answer.
func writeResponse(w http.ResponseWriter, res response) {
	for k, vs := range res.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(res.Status)
	_, _ = w.Write([]byte(res.Body))
}

// replaceUpstreamHeaders drops the upstream response headers already copied
// to h, keeping the gateway's own CORS headers, before a gateway-made answer
// replaces the upstream's.
func replaceUpstreamHeaders(h http.Header) {
	for k := range h {
		if k != "Access-Control-Expose-Headers" && k != "Access-Control-Allow-Origin" && k != "Vary" {
			delete(h, k)
		}
	}
}

// The aggregator's answers (dataplane/aggregate.go), where the gateway is
// the MCP server itself: JSON-RPC results and errors in a 200 reply, the
// error message fixed by the caller (a member server's configured name at
// most, never anything a member or the client sent).

func rpcErrorData(id jsontext.Value, code int, message string, data jsontext.Value) jsontext.Value {
	if id == nil {
		id = jsontext.Value("null")
	}
	b := make([]byte, 0, len(id)+len(message)+len(data)+64)
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b, _ = jsontext.AppendQuote(b, message)
	if data != nil {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	}
	return append(b, "}}"...)
}

func rpcErrorMsg(id jsontext.Value, code int, message string) jsontext.Value {
	return rpcErrorData(id, code, message, nil)
}

func writeJSON(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func writeRPCError(w http.ResponseWriter, id jsontext.Value, code int, message string) {
	writeJSON(w, rpcErrorMsg(id, code, message))
}

func writeResult(w http.ResponseWriter, id, result jsontext.Value) {
	b := make([]byte, 0, len(id)+len(result)+40)
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	b = append(b, id...)
	b = append(b, `,"result":`...)
	b = append(b, result...)
	writeJSON(w, append(b, '}'))
}
