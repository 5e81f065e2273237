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
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/metrics"
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
	// UpstreamClient is used to reach upstream MCP servers. When nil, a client
	// that never follows redirects (they would carry injected secrets) is used.
	UpstreamClient *http.Client
	// Metrics records requests, Authorize calls and upstream round trips
	// (nil: none).
	Metrics *metrics.DataPlane
	// Audit receives one event per MCP request (nil: none).
	Audit *audit.Logger
}

// Proxy is the data-plane HTTP handler. Create it with New.
type Proxy struct {
	log          *slog.Logger
	public       *url.URL
	publicBase   string // scheme://host[:port], no trailing slash
	publicOrigin string
	hosts        map[string]bool
	origins      map[string]bool
	maxBody      int64
	timeout      time.Duration
	cp           *controlPlane
	keys         *keyRing
	upstream     *http.Client
	relayClient  *http.Client
	metrics      *metrics.DataPlane
	audit        *audit.Logger
}

// New validates cfg and returns a Proxy. Call Run to keep its session keys
// fresh.
func New(cfg Config, log *slog.Logger) (*Proxy, error) {
	if log == nil {
		return nil, errors.New("dataplane: nil logger")
	}
	pub, err := url.Parse(strings.TrimRight(cfg.PublicURL, "/"))
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" {
		return nil, fmt.Errorf("dataplane: public URL %q must be an absolute http(s) URL", cfg.PublicURL)
	}
	if pub.Path != "" || pub.RawQuery != "" || pub.Fragment != "" || pub.User != nil {
		return nil, fmt.Errorf("dataplane: public URL %q must be a bare origin (no path, query or user info)", cfg.PublicURL)
	}
	pub.Scheme = strings.ToLower(pub.Scheme)
	pub.Host = strings.ToLower(pub.Host)
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
	base := pub.Scheme + "://" + pub.Host
	origins[base] = true
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
	up := cfg.UpstreamClient
	if up == nil {
		up = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), CheckRedirect: noRedirect}
	}
	cp, err := newControlPlane(cfg.ControlPlaneURLs, cfg.DataPlaneToken, cpClient)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		log:          log,
		public:       pub,
		publicBase:   base,
		publicOrigin: base,
		hosts:        allowedHosts(pub),
		origins:      origins,
		maxBody:      cfg.MaxBodyBytes,
		timeout:      cfg.AuthorizeTimeout,
		cp:           cp,
		upstream:     up,
		relayClient:  &relay,
		metrics:      cfg.Metrics,
		audit:        cfg.Audit,
	}
	p.keys = newKeyRing(cp, log)
	return p, nil
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Run refreshes the session key ring until ctx ends; it returns nil then.
func (p *Proxy) Run(ctx context.Context) error {
	p.keys.run(ctx, p.timeout)
	return nil
}

// allowedHosts is the public host:port, in both its explicit and implicit
// default-port forms, plus the loopback aliases with the same port when the
// public host is a loopback name: DNS rebinding needs a foreign name, and a
// client configured with localhost must work on a 127.0.0.1 gateway.
func allowedHosts(pub *url.URL) map[string]bool {
	hosts := map[string]bool{}
	name, port := pub.Hostname(), pub.Port()
	def := "80"
	if pub.Scheme == "https" {
		def = "443"
	}
	names := []string{name}
	if isLoopbackName(name) {
		names = []string{"127.0.0.1", "localhost", "::1"}
	}
	for _, n := range names {
		if port == "" || port == def {
			hosts[hostPort(n, "")] = true
			hosts[hostPort(n, def)] = true
		} else {
			hosts[hostPort(n, port)] = true
		}
	}
	return hosts
}

func hostPort(name, port string) string {
	if port == "" {
		if strings.Contains(name, ":") {
			return "[" + name + "]"
		}
		return name
	}
	return net.JoinHostPort(name, port)
}

func isLoopbackName(name string) bool {
	if name == "localhost" {
		return true
	}
	ip := net.ParseIP(name)
	return ip != nil && ip.IsLoopback()
}

// normalizeOrigin returns scheme://host[:port] in lower case, or "" when o is
// not an http(s) origin.
func normalizeOrigin(o string) string {
	u, err := url.Parse(strings.TrimRight(strings.TrimSpace(o), "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
		return ""
	}
	return strings.ToLower(u.Scheme + "://" + u.Host)
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
		p.log.InfoContext(r.Context(), "request",
			slog.String("kind", kind),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path), // never the query: it may hold tokens
			slog.Int("status", rec.status()),
			slog.Duration("duration", time.Since(start)))
	}()
	if !p.hosts[strings.ToLower(r.Host)] {
		kind = "bad_host"
		writeFixed(w, http.StatusForbidden, bodyBadHost)
		return
	}
	path := r.URL.Path
	switch {
	case path == prmPrefix || strings.HasPrefix(path, prmPrefix+"/"):
		kind = "prm"
		p.serveMetadata(w, r)
		return
	case isRelayPath(path):
		kind = "relay"
		p.serveRelay(w, r)
		return
	}
	route, ok := parseRoute(path)
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
		origin := normalizeOrigin(o)
		if !p.origins[origin] {
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
	allowHeaders  = "Authorization, Content-Type, Accept, MCP-Protocol-Version, Mcp-Session-Id, Last-Event-ID, Mcp-Method, Mcp-Name, X-MCPGate-API-Key, x-litellm-api-key"
)

// parseRoute accepts /{server}/mcp and /{server}/mcp/ with a non-empty,
// single-segment server name.
func parseRoute(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/")
	if !ok {
		return "", false
	}
	rest = strings.TrimSuffix(rest, "/")
	server, tail, ok := strings.Cut(rest, "/")
	if !ok || tail != "mcp" || !validServerName(server) {
		return "", false
	}
	return server, true
}

func validServerName(s string) bool {
	if s == "" || s == "." || s == ".." || s == ".well-known" || len(s) > 128 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

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
