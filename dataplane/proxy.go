// Package dataplane is the stateless MCP proxy: it extracts the client's
// credentials and the JSON-RPC method of each request on /{server}/mcp, asks
// the control plane's AuthorizeService for a decision, and either forwards the
// request upstream with the headers the decision carries or answers 401, 403,
// 404 or 503 itself. It links no etcd and no control-plane package
// (deps_test.go).
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/dataplane/bridge"
	"github.com/mcpgate/mcpgate/ops/audit"
	"github.com/mcpgate/mcpgate/ops/metrics"
)

// Defaults for zero Config fields.
const (
	DefaultMaxBodyBytes     = 4 << 20
	DefaultAuthorizeTimeout = 3 * time.Second
)

// Config configures a Proxy.
type Config struct {
	// PublicURL is the base URL clients use, e.g. http://127.0.0.1:8080; every
	// URL the proxy emits is built from it, never from the request's Host.
	PublicURL string
	// ControlPlaneURLs are the Connect base URLs of the control-plane
	// replicas; calls are spread over them and fail over.
	ControlPlaneURLs []string
	// DataPlaneToken is sent as Authorization: Bearer on every control-plane
	// call.
	DataPlaneToken string
	// AllowedOrigins are accepted Origin values besides the public URL's own
	// origin.
	AllowedOrigins []string
	// MaxBodyBytes bounds a request body (DefaultMaxBodyBytes when zero).
	MaxBodyBytes int64
	// AuthorizeTimeout bounds the authorization of one request
	// (DefaultAuthorizeTimeout when zero).
	AuthorizeTimeout time.Duration
	// ControlPlaneClient is used for control-plane calls and the OAuth relay
	// (http.DefaultClient's transport when nil).
	ControlPlaneClient *http.Client
	// UpstreamClient is used to reach upstream MCP servers
	// (NewUpstreamTransport when nil). It never follows redirects, whatever
	// its CheckRedirect: they would carry injected secrets.
	UpstreamClient *http.Client
	// UpstreamHeaderTimeout bounds the wait for an upstream's response
	// headers; past it the client gets 504 (DefaultUpstreamHeaderTimeout
	// when zero).
	UpstreamHeaderTimeout time.Duration
	// MaxStreamLifetime bounds how long one upstream response (an SSE stream
	// above all) is relayed; an SSE stream then ends cleanly after its last
	// complete event (DefaultMaxStreamLifetime when zero).
	MaxStreamLifetime time.Duration
	// MaxStreamsPerPrincipal bounds the GET streams and POSTs carrying
	// requests one principal may have in flight on this data plane; past it
	// the client gets 429 (DefaultMaxStreamsPerPrincipal when zero).
	MaxStreamsPerPrincipal int
	// RequestStateLifetime bounds how long a multi-round-trip requestState
	// the gateway sealed may be retried (DefaultRequestStateLifetime when
	// zero).
	RequestStateLifetime time.Duration
	// MaxBridgeSessions bounds the upstream sessions this data plane keeps
	// open for 2026-07-28 clients of 2025-only upstreams
	// (bridge.DefaultMaxSessions when zero).
	MaxBridgeSessions int
	// Metrics records requests, Authorize calls and upstream round trips
	// (nil: none).
	Metrics *metrics.DataPlane
	// Audit receives one event per MCP request (nil: none).
	Audit *audit.Logger
	// DecisionCacheSize bounds the ALLOW decisions kept for reuse (an
	// LRU); 0 turns the cache (and its invalidation stream) off.
	DecisionCacheSize int
	// DecisionCacheMaxAge is this data plane's own bound on reusing an
	// ALLOW, whatever the control plane allows
	// (DefaultDecisionCacheMaxAge when zero).
	DecisionCacheMaxAge time.Duration
}

// Proxy is the data-plane HTTP handler. Create it with New.
type Proxy struct {
	log            *slog.Logger
	publicBase     string // wire.PublicBase of the configured public URL
	publicOrigin   string
	authority      authority // what Host and Origin must name
	origins        map[string]bool
	maxBody        int64
	timeout        time.Duration
	headerTimeout  time.Duration
	streamLifetime time.Duration
	stateLifetime  time.Duration
	versions       *bridge.Versions
	bridged        *bridge.Sessions
	bridgeSeq      atomic.Uint64 // gateway ids of requests on shared bridge sessions
	streams        *streamLimiter
	cp             *controlPlane
	keys           *keyRing
	upstream       *http.Client
	relayClient    *http.Client
	metrics        *metrics.DataPlane
	audit          *audit.Logger
	members        memberTransport // aggregate routes' members
	reopened       *sessionMap     // aggregate members reopened by this process
	pins           *pinReporter
	dcache         *decisionCache // nil: no decision cache
	reopening      singleflight.Group
}

// New validates cfg and returns a Proxy. Call Run to keep its session keys
// fresh.
func New(cfg Config, log *slog.Logger) (*Proxy, error) {
	if log == nil {
		return nil, errors.New("dataplane: nil logger")
	}
	base, err := wire.PublicBase(cfg.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("dataplane: public URL %q must be an absolute http(s) origin (no path, query or user info)", cfg.PublicURL)
	}
	pub, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("dataplane: public URL %q: %w", cfg.PublicURL, err)
	}
	if len(cfg.ControlPlaneURLs) == 0 {
		return nil, errors.New("dataplane: no control-plane URL")
	}
	origins := map[string]bool{}
	for _, o := range cfg.AllowedOrigins {
		n := normalizeOrigin(o)
		if n == "" {
			return nil, fmt.Errorf("dataplane: allowed origin %q is not an origin", o)
		}
		origins[n] = true
	}
	auth, ok := parseAuthority(pub.Scheme, pub.Host)
	if !ok {
		return nil, fmt.Errorf("dataplane: public URL %q has an invalid host or port", cfg.PublicURL)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.AuthorizeTimeout <= 0 {
		cfg.AuthorizeTimeout = DefaultAuthorizeTimeout
	}
	cpClient := cfg.ControlPlaneClient
	if cpClient == nil {
		cpClient = &http.Client{Transport: http.DefaultTransport}
	}
	relay := *cpClient
	relay.CheckRedirect = noRedirect
	if cfg.UpstreamHeaderTimeout <= 0 {
		cfg.UpstreamHeaderTimeout = DefaultUpstreamHeaderTimeout
	}
	if cfg.MaxStreamLifetime <= 0 {
		cfg.MaxStreamLifetime = DefaultMaxStreamLifetime
	}
	if cfg.RequestStateLifetime <= 0 {
		cfg.RequestStateLifetime = DefaultRequestStateLifetime
	}
	if cfg.MaxStreamsPerPrincipal <= 0 {
		cfg.MaxStreamsPerPrincipal = DefaultMaxStreamsPerPrincipal
	}
	up := &http.Client{Transport: NewUpstreamTransport()}
	if cfg.UpstreamClient != nil {
		c := *cfg.UpstreamClient
		up = &c
	}
	up.CheckRedirect = noRedirect
	cp, err := newControlPlane(cfg.ControlPlaneURLs, cfg.DataPlaneToken, cpClient)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		log:            newLazyLogger(log),
		publicBase:     base,
		publicOrigin:   base,
		authority:      auth,
		origins:        origins,
		maxBody:        cfg.MaxBodyBytes,
		timeout:        cfg.AuthorizeTimeout,
		headerTimeout:  cfg.UpstreamHeaderTimeout,
		streamLifetime: cfg.MaxStreamLifetime,
		stateLifetime:  cfg.RequestStateLifetime,
		streams:        newStreamLimiter(cfg.MaxStreamsPerPrincipal),
		cp:             cp,
		upstream:       up,
		relayClient:    &relay,
		metrics:        cfg.Metrics,
		audit:          cfg.Audit,
	}
	p.keys = newKeyRing(cp, log)
	p.members = &httpMembers{client: up, headerTimeout: cfg.UpstreamHeaderTimeout, lifetime: cfg.MaxStreamLifetime, record: cfg.Metrics.RecordUpstream}
	p.reopened = newSessionMap(maxReopened)
	p.versions = &bridge.Versions{}
	p.bridged = bridge.NewSessions(up, cfg.MaxBridgeSessions)
	p.pins = newPinReporter(log, cp)
	if cfg.DecisionCacheSize > 0 {
		if cfg.DecisionCacheMaxAge <= 0 {
			cfg.DecisionCacheMaxAge = DefaultDecisionCacheMaxAge
		}
		p.dcache = newDecisionCache(cfg.DecisionCacheSize, cfg.DecisionCacheMaxAge, cfg.Metrics)
	}
	return p, nil
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Run refreshes the session key ring, and follows the control plane's
// invalidation stream when the decision cache is on, until ctx ends; it
// returns nil then.
func (p *Proxy) Run(ctx context.Context) error {
	if p.dcache != nil {
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.watchInvalidations(ctx)
		}()
		defer func() { <-done }()
	}
	p.keys.run(ctx, p.timeout)
	return nil
}

// authority is what a request's Host, and an Origin besides the configured
// ones, must name: the public URL's host and port, where a loopback public
// host stands for every loopback name (localhost, 127.0.0.0/8, [::1]) — DNS
// rebinding needs a foreign name, and a client or a page configured with
// localhost must work on a 127.0.0.1 gateway and vice versa. Ports compare
// with the scheme's default filled in (no leading zeros), so "localhost" and
// "localhost:80" are the same authority of an http URL. The Host check and
// the Origin check both use matches, so they accept exactly the same hosts.
type authority struct {
	scheme   string // http or https
	name     string // lower case; an IPv6 address without brackets
	port     string // explicit, or the scheme's default
	loopback bool
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

// parseAuthority splits host[:port] (an IPv6 address in brackets) for
// scheme. It accepts only what a URL's authority can hold: no user info, a
// bracketed name must be an IPv6 address, a port is 1 to 5 digits.
func parseAuthority(scheme, hostport string) (authority, bool) {
	a := authority{scheme: strings.ToLower(scheme)}
	hp := strings.ToLower(hostport)
	var name, port string
	if rest, ok := strings.CutPrefix(hp, "["); ok {
		n, after, ok := strings.Cut(rest, "]")
		if !ok {
			return authority{}, false
		}
		if ip, err := netip.ParseAddr(n); err != nil || !ip.Is6() || ip.Zone() != "" {
			return authority{}, false
		}
		name = n
		if after != "" {
			if port, ok = strings.CutPrefix(after, ":"); !ok {
				return authority{}, false
			}
		}
	} else {
		var hasPort bool
		name, port, hasPort = strings.Cut(hp, ":")
		if strings.Contains(port, ":") || hasPort && port == "" {
			return authority{}, false
		}
	}
	if name == "" || strings.ContainsAny(name, "@/\\?#%") {
		return authority{}, false
	}
	if port == "" {
		port = defaultPort(a.scheme)
	}
	if len(port) > 5 || port[0] == '0' || strings.Trim(port, "0123456789") != "" {
		return authority{}, false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return authority{}, false
	}
	a.name, a.port = name, strconv.Itoa(n)
	a.loopback = isLoopbackName(name)
	return a, true
}

// matches reports whether o (parsed with the same rules) names the public
// authority: same scheme and port, and the same host or, for a loopback
// public host, any loopback name.
func (a authority) matches(o authority) bool {
	if o.scheme != a.scheme || o.port != a.port {
		return false
	}
	if a.loopback {
		return o.loopback
	}
	return o.name == a.name
}

// hostAllowed is the Host check.
func (p *Proxy) hostAllowed(host string) bool {
	h, ok := parseAuthority(p.authority.scheme, host)
	return ok && p.authority.matches(h)
}

// originAllowed is the Origin check: a configured origin, or one naming
// the public authority (see authority). It returns the normalized origin.
func (p *Proxy) originAllowed(o string) (string, bool) {
	n := normalizeOrigin(o)
	if n == "" {
		return "", false
	}
	if p.origins[n] {
		return n, true
	}
	scheme, host, _ := strings.Cut(n, "://")
	a, ok := parseAuthority(scheme, host)
	return n, ok && p.authority.matches(a)
}

// isLoopbackName is localhost, an IPv4 loopback address in dotted-quad form
// (127.0.0.0/8) or the IPv6 loopback address in its canonical form: the
// names a browser or a client can use for this host without DNS.
func isLoopbackName(name string) bool {
	if name == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(name)
	if err != nil || ip.Zone() != "" || ip.String() != name {
		return false
	}
	return ip.Is4() && ip.IsLoopback() || ip == netip.IPv6Loopback()
}

// normalizeOrigin returns scheme://host[:port] in lower case without the
// scheme's default port, or "" when o is not an http(s) origin.
func normalizeOrigin(o string) string {
	u, err := url.Parse(strings.TrimRight(strings.TrimSpace(o), "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil || u.Opaque != "" {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Host)
	if p := u.Port(); p != "" && p == defaultPort(scheme) {
		host = strings.TrimSuffix(host, ":"+p)
	}
	return scheme + "://" + host
}

// ServeHTTP routes a request. The Host check comes before everything else;
// the Origin check before anything on an MCP route.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	w = rec
	w.Header().Set("Access-Control-Expose-Headers", exposeHeaders)
	kind := "unknown"
	var info *reqInfo // set for MCP requests: metrics and the audit event
	defer func() {
		if info != nil {
			p.observe(info, rec.status(), rec.Header().Get(headerSessionID), time.Since(start))
		}
		// Debug: the audit log is the per-request record; a line per
		// request on stderr cost 5% of the CPU under load (profiled).
		if !p.log.Enabled(r.Context(), slog.LevelDebug) {
			return
		}
		p.log.DebugContext(r.Context(), "request",
			slog.String("kind", kind),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path), // never the query: it may hold tokens
			slog.Int("status", rec.status()),
			slog.Duration("duration", time.Since(start)))
	}()
	if !p.hostAllowed(r.Host) {
		kind = "bad_host"
		writeFixed(w, http.StatusForbidden, bodyBadHost)
		return
	}
	path := r.URL.Path
	switch {
	case path == wire.PRMPrefix || strings.HasPrefix(path, wire.PRMPrefix+"/"):
		kind = "prm"
		p.serveMetadata(w, r)
		return
	case wire.IsRelayPath(path):
		kind = "relay"
		p.serveRelay(w, r)
		return
	}
	route, ok := wire.ParseRoutePath(path)
	if !ok {
		kind = "not_found"
		writeFixed(w, http.StatusNotFound, bodyNotFound)
		return
	}
	kind = "mcp"
	if r.Method != http.MethodOptions {
		r, info = withInfo(r, route)
		defer p.metrics.InFlight()()
	}
	if o := r.Header.Get("Origin"); o != "" {
		origin, ok := p.originAllowed(o)
		if !ok {
			writeFixed(w, http.StatusForbidden, bodyBadOrigin)
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Add("Vary", "Origin")
	}
	switch r.Method {
	case http.MethodOptions:
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", allowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPost, http.MethodGet, http.MethodDelete:
		p.serveMCP(w, r, route)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE, OPTIONS")
		writeFixed(w, http.StatusMethodNotAllowed, bodyMethodNotAllowed)
	}
}

const (
	exposeHeaders = "WWW-Authenticate, Mcp-Session-Id, MCP-Protocol-Version"
	allowHeaders  = "Authorization, Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id, Last-Event-ID, Mcp-Method, Mcp-Name, " + wire.HeaderAPIKey + ", x-litellm-api-key"
)

// statusRecorder remembers the status for the request log and keeps
// flushing available to the SSE path.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}
