package dataplane

import (
	"errors"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// Defaults for the upstream bounds (zero Config fields).
const (
	// DefaultUpstreamHeaderTimeout bounds the wait for an upstream's response
	// headers. An SSE upstream answers headers at once; a JSON-response
	// upstream only when the call is done, so this is also the longest tool
	// call such an upstream can run. 60 s is the common reverse-proxy read
	// timeout (nginx proxy_read_timeout, cloud load balancers): upstreams
	// that need longer stream their answer.
	DefaultUpstreamHeaderTimeout = 60 * time.Second
	// DefaultMaxStreamLifetime bounds how long one upstream response body (an
	// SSE stream above all) is relayed. At the limit the stream ends cleanly
	// at an event boundary and clients reconnect with Last-Event-ID; an hour
	// makes that a rare event for any real client while keeping a
	// forgotten or hostile stream from pinning gateway resources forever.
	DefaultMaxStreamLifetime = time.Hour
	// DefaultMaxStreamsPerPrincipal bounds the exchanges one principal may
	// have in flight through one data plane. An SDK client holds one
	// standalone GET stream per session plus one per concurrent call; 32
	// leaves room for several sessions and parallel agents per principal
	// while bounding what one key can pin (goroutines, upstream
	// connections, up to maxEventBytes of buffer each).
	DefaultMaxStreamsPerPrincipal = 32
	// streamsRetryAfter is the Retry-After (seconds) of a 429: streams are
	// long-lived, so an immediate retry would only be refused again.
	streamsRetryAfter = "5"
)

// Upstream connection pool: a data plane serves many concurrent calls to
// few upstream hosts, and net/http's default of 2 idle connections per host
// makes every call beyond the second dial and close a connection (about
// 1,300 new connections a second at 16 concurrent calls, profiled). Keep
// enough idle connections for the concurrency a data plane serves.
const (
	// UpstreamMaxIdleConnsPerHost bounds the idle connections kept to one
	// upstream host: well above DefaultMaxStreamsPerPrincipal, so a busy
	// principal's steady load reuses connections.
	UpstreamMaxIdleConnsPerHost = 256
	// UpstreamMaxIdleConns bounds idle connections over all upstream hosts.
	UpstreamMaxIdleConns = 4096
	// upstreamIdleConnTimeout closes a connection idle this long.
	upstreamIdleConnTimeout = 90 * time.Second
)

// NewUpstreamTransport is the transport a data plane reaches upstreams with
// when Config.UpstreamClient is nil: http.DefaultTransport's dialer, proxy
// and TLS settings (HTTP/2 by ALPN to TLS upstreams), with an idle pool
// sized for a gateway (UpstreamMaxIdleConnsPerHost).
func NewUpstreamTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = UpstreamMaxIdleConns
	t.MaxIdleConnsPerHost = UpstreamMaxIdleConnsPerHost
	t.IdleConnTimeout = upstreamIdleConnTimeout
	return t
}

var (
	// errUpstreamHeaderTimeout and errStreamLifetime are the causes with
	// which an upstream request's context is cancelled by a bound.
	errUpstreamHeaderTimeout = errors.New("upstream response headers timed out")
	errStreamLifetime        = errors.New("upstream stream lifetime reached")
)

// isRelayedResponseHeader is the allowlist of upstream response headers
// passed to the client (ARCHITECTURE.md: nothing an upstream returns can
// steer a client's credentials). Representation and caching metadata, the
// retry hint and the MCP transport's own headers pass. Mcp-Session-Id is
// replaced by a sealed handle, WWW-Authenticate is never relayed (an
// upstream 401 becomes the gateway's own challenge), Content-Length is
// computed by the gateway, and Location, Refresh, Link, Set-Cookie, CSP,
// CORS and everything else stay at the gateway.
func isRelayedResponseHeader(k string) bool {
	switch textproto.CanonicalMIMEHeaderKey(k) {
	case "Content-Type", "Cache-Control", "Retry-After", "Allow", "Mcp-Protocol-Version":
		return true
	}
	return false
}

// copyResponseHeaders sets on dst the allowlisted headers of src.
func copyResponseHeaders(dst, src http.Header) {
	for k, vs := range src {
		if isRelayedResponseHeader(k) {
			dst[textproto.CanonicalMIMEHeaderKey(k)] = append([]string(nil), vs...)
		}
	}
}

// encodedBody reports a response body the gateway cannot read or relay:
// the transport asks for gzip and decodes it itself, so any remaining
// Content-Encoding is one nobody asked for (and would hide a tools/list
// reply from the filter).
func encodedBody(h http.Header) bool {
	for _, v := range h.Values("Content-Encoding") {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" && !strings.EqualFold(e, "identity") {
				return true
			}
		}
	}
	return false
}

// mayStream reports whether a request may hold an upstream exchange open
// for long and so counts against the per-principal bound: every GET (the
// standalone SSE stream) and every POST carrying a JSON-RPC request.
// DELETE and POSTs of only notifications and responses do not: the
// upstream answers them at once (202), and a client at its bound must
// still be able to cancel calls, answer an upstream's elicitation or
// sampling request (which a blocked call is waiting for) and end its
// session.
func mayStream(method string, calls []rpcCall) bool {
	switch method {
	case http.MethodGet:
		return true
	case http.MethodPost:
		for _, c := range calls {
			if c.Method != "" && !strings.HasPrefix(c.Method, "notifications/") {
				return true
			}
		}
	}
	return false
}

// streamLimiter counts the exchanges in flight per principal.
type streamLimiter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newStreamLimiter(max int) *streamLimiter {
	return &streamLimiter{max: max, n: map[string]int{}}
}

// acquire takes a slot for principal; ok is false at the bound. release
// must be called exactly once when ok.
func (l *streamLimiter) acquire(principal string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[principal] >= l.max {
		return nil, false
	}
	l.n[principal]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.n[principal]--; l.n[principal] <= 0 {
				delete(l.n, principal)
			}
		})
	}, true
}
