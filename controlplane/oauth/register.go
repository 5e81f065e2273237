package oauth

import (
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// metadata serves the RFC 8414 document (also as OpenID discovery).
func (s *Server) metadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	iss := issuer(r)
	scopes := []string{}
	for _, srv := range s.st.Servers() {
		for _, sc := range authorize.OfferedScopes(srv.Def) {
			if !slices.Contains(scopes, sc) {
				scopes = append(scopes, sc)
			}
		}
	}
	sort.Strings(scopes)
	w.Header().Set("Cache-Control", "max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                         iss,
		"authorization_endpoint":                         iss + "/authorize",
		"token_endpoint":                                 iss + "/token",
		"registration_endpoint":                          iss + "/register",
		"revocation_endpoint":                            iss + "/revoke",
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token", GrantJWTBearer},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          []string{"none", "client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":     []string{"none", "client_secret_basic", "client_secret_post"},
		"scopes_supported":                               scopes,
		"authorization_response_iss_parameter_supported": true,
		"client_id_metadata_document_supported":          true,
	})
}

// clientMetadata is the registration request and response body (RFC 7591).
type clientMetadata struct {
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	ApplicationType         string   `json:"application_type,omitempty"`
	ClientID                string   `json:"client_id,omitempty"`
}

type registration struct {
	clientMetadata
	ClientIDIssuedAt      int64  `json:"client_id_issued_at"`
	ClientSecret          string `json:"client_secret,omitempty"`
	ClientSecretExpiresAt *int64 `json:"client_secret_expires_at,omitempty"`
}

// regError is a registration error (RFC 7591 section 3.2.2).
type regError struct{ code, desc string }

func (e *regError) Error() string { return e.code + ": " + e.desc }

func badMetadata(desc string) error { return &regError{"invalid_client_metadata", desc} }
func badRedirect(desc string) error { return &regError{"invalid_redirect_uri", desc} }

// register handles POST /register.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if ok, wait := s.limit.take(clientAddress(r)); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		writeJSON(w, http.StatusTooManyRequests, oauthError{"slow_down", "too many registrations from this address"})
		return
	}
	if ok, wait := s.takeRegistration(); !ok {
		w.Header().Set("Retry-After", retryAfter(wait))
		writeJSON(w, http.StatusTooManyRequests, oauthError{"slow_down", "too many registrations; try again later"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxRegisterBytes) // bounds the stored record
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSON(w, http.StatusRequestEntityTooLarge, oauthError{"invalid_client_metadata", "request body too large"})
			return
		}
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_client_metadata", "could not read the request body"})
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeJSON(w, http.StatusBadRequest, oauthError{"invalid_client_metadata", "the body must be application/json"})
		return
	}
	md, err := parseClientMetadata(body, true)
	if err != nil {
		re := err.(*regError)
		writeJSON(w, http.StatusBadRequest, oauthError{re.code, re.desc})
		return
	}
	now := s.now()
	rec := &storev1.OAuthClientRecord{
		ClientId:                random(24),
		ClientName:              md.ClientName,
		RedirectUris:            md.RedirectURIs,
		GrantTypes:              md.GrantTypes,
		ResponseTypes:           md.ResponseTypes,
		TokenEndpointAuthMethod: md.TokenEndpointAuthMethod,
		Scope:                   md.Scope,
		ApplicationType:         md.ApplicationType,
		ClientUri:               md.ClientURI,
		IssueTime:               timestamppb.New(now),
		RenewTime:               timestamppb.New(now),
	}
	resp := registration{clientMetadata: *md, ClientIDIssuedAt: now.Unix()}
	resp.ClientID = rec.ClientId
	if md.TokenEndpointAuthMethod != "none" {
		secret := random(32)
		sum := store.HashKey(secret)
		rec.SecretSha256 = sum[:]
		resp.ClientSecret = secret
		zero := int64(0)
		resp.ClientSecretExpiresAt = &zero
	}
	if _, err := s.st.OAuthClients().PutLeased(r.Context(), rec.ClientId, rec, s.cfg.UnconfirmedClientTTL, 0); err != nil {
		s.log.ErrorContext(r.Context(), "store client registration", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, oauthError{"temporarily_unavailable", "registration is temporarily unavailable"})
		return
	}
	s.log.InfoContext(r.Context(), "client registered", "client_id", rec.ClientId, "client_name", md.ClientName)
	writeJSON(w, http.StatusCreated, resp)
}

// validateMetadata checks and completes client metadata; dcr is false for
// client ID metadata documents (always public clients).
func validateMetadata(md *clientMetadata, dcr bool) error {
	if len(md.RedirectURIs) == 0 {
		return badRedirect("redirect_uris is required")
	}
	if len(md.RedirectURIs) > maxRedirectURIs {
		return badRedirect("too many redirect_uris")
	}
	for _, u := range md.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return err
		}
	}
	if md.TokenEndpointAuthMethod == "" {
		md.TokenEndpointAuthMethod = "client_secret_basic"
		if !dcr {
			md.TokenEndpointAuthMethod = "none"
		}
	}
	switch md.TokenEndpointAuthMethod {
	case "none":
	case "client_secret_basic", "client_secret_post":
		if !dcr {
			return badMetadata("a client ID metadata document client must use token_endpoint_auth_method none")
		}
	default:
		return badMetadata("unsupported token_endpoint_auth_method")
	}
	if len(md.GrantTypes) == 0 {
		md.GrantTypes = []string{"authorization_code"}
	}
	for _, g := range md.GrantTypes {
		if g != "authorization_code" && g != "refresh_token" && g != GrantJWTBearer {
			return badMetadata("unsupported grant type; only authorization_code, refresh_token and " + GrantJWTBearer + " are allowed")
		}
	}
	if !slices.Contains(md.GrantTypes, "authorization_code") {
		return badMetadata("grant_types must include authorization_code")
	}
	if len(md.ResponseTypes) == 0 {
		md.ResponseTypes = []string{"code"}
	}
	for _, rt := range md.ResponseTypes {
		if rt != "code" {
			return badMetadata("unsupported response type; only code is allowed")
		}
	}
	if len(md.ClientName) > maxNameLen || len(md.ClientURI) > maxURILen || len(md.Scope) > maxScopeLen || len(md.ClientID) > maxURILen {
		return badMetadata(descTooLong)
	}
	for _, v := range []string{md.ClientName, md.ClientURI, md.Scope, md.ClientID, md.ApplicationType, md.TokenEndpointAuthMethod} {
		if unsafeText(v) {
			return badMetadata(descUnsafeText)
		}
	}
	switch md.ApplicationType {
	case "", "web", "native":
	default:
		return badMetadata("application_type must be web or native")
	}
	return nil
}

var forbiddenSchemes = []string{"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ftp", "ws", "wss"}

// checkRedirectURI applies the redirect URI policy: https anywhere, http
// only on loopback (any port at authorization time), RFC 8252 private-use
// schemes (a reversed domain name: com.example.app:/cb); never a fragment,
// user info, control or format characters, or any other scheme.
func checkRedirectURI(raw string) error {
	if len(raw) > maxURILen || strings.Contains(raw, "#") {
		return badRedirect("redirect URIs must not contain a fragment")
	}
	if unsafeText(raw) {
		return badRedirect(descUnsafeRedirect)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return badRedirect("redirect URIs must be absolute URIs")
	}
	scheme := strings.ToLower(u.Scheme)
	if slices.Contains(forbiddenSchemes, scheme) {
		return badRedirect("redirect URI scheme not allowed")
	}
	if u.User != nil {
		return badRedirect("redirect URIs must not contain user information")
	}
	switch scheme {
	case "https":
		if u.Host == "" {
			return badRedirect("https redirect URIs need a host")
		}
	case "http":
		if !isLoopbackHost(u.Hostname()) {
			return badRedirect("http redirect URIs must use a loopback host (127.0.0.1, [::1] or localhost)")
		}
	default:
		if !privateUseScheme(scheme) && !slices.Contains(knownClientSchemes, scheme) {
			return badRedirect(descPrivateScheme)
		}
		if u.Opaque == "" && u.Host == "" && u.Path == "" {
			return badRedirect("private-use redirect URIs need a path")
		}
	}
	return nil
}

// knownClientSchemes are custom schemes without the RFC 8252 section 7.1
// reverse-DNS form that widely used MCP clients register anyway: Cursor
// registers cursor://anysphere.cursor-mcp/oauth/callback, and refusing one
// URI fails its whole registration. Like every private-use URI they match
// only exactly. Anything else needs the dotted form.
var knownClientSchemes = []string{"cursor"}

func isLoopbackHost(h string) bool {
	return h == "127.0.0.1" || h == "::1" || strings.EqualFold(h, "localhost")
}

// redirectMatches is exact string matching, except that a loopback http
// redirect URI may use any port.
func redirectMatches(registered, requested string) bool {
	if registered == requested {
		return true
	}
	a, err1 := url.Parse(registered)
	b, err2 := url.Parse(requested)
	if err1 != nil || err2 != nil || a.Scheme != "http" || b.Scheme != "http" ||
		!isLoopbackHost(a.Hostname()) || a.Hostname() != b.Hostname() {
		return false
	}
	strip := func(u *url.URL) string {
		c := *u
		c.Host = u.Hostname()
		if strings.Contains(c.Host, ":") {
			c.Host = "[" + c.Host + "]"
		}
		return c.String()
	}
	// The requested URI must round-trip so that only the port differs.
	if b.String() != requested {
		return false
	}
	return strip(a) == strip(b)
}

// client is a resolved OAuth client: registered or a metadata document.
type client struct {
	id           string
	name         string
	redirectURIs []string
	authMethod   string
	secretSHA256 []byte
	grantTypes   []string
	cimd         bool
	rec          *storev1.OAuthClientRecord
	rev          int64
}

var errUnknownClient = errors.New("unknown client")

// lookupClient finds a registered client. A client ID metadata document URL
// is fetched only when fetch is true (at /authorize); elsewhere it is a
// public client known by its URL.
func (s *Server) lookupClient(ctx context.Context, id string, fetch bool) (*client, error) {
	if id == "" || len(id) > 2000 {
		return nil, errUnknownClient
	}
	if strings.HasPrefix(id, "https://") {
		if !fetch {
			return &client{id: id, name: id, authMethod: "none", cimd: true, grantTypes: []string{"authorization_code", "refresh_token"}}, nil
		}
		return s.fetchCIMD(ctx, id)
	}
	rec, rev, err := s.st.OAuthClients().Get(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil, errUnknownClient
		}
		return nil, err
	}
	name := rec.GetClientName()
	if name == "" {
		name = rec.GetClientId()
	}
	return &client{id: id, name: name, redirectURIs: rec.GetRedirectUris(), authMethod: rec.GetTokenEndpointAuthMethod(),
		secretSHA256: rec.GetSecretSha256(), grantTypes: rec.GetGrantTypes(), rec: rec, rev: rev}, nil
}

// touchClient renews a registered client's lease at most once a day, so
// registrations that stay unused expire.
func (s *Server) touchClient(ctx context.Context, c *client) {
	if c.rec == nil || !confirmed(c.rec) || s.now().Sub(c.rec.GetRenewTime().AsTime()) < 24*time.Hour {
		return
	}
	rec := proto.CloneOf(c.rec)
	rec.RenewTime = timestamppb.New(s.now())
	if _, err := s.st.OAuthClients().PutLeased(ctx, c.id, rec, s.cfg.ClientIdleTTL, c.rev); err != nil {
		s.log.DebugContext(ctx, "renew client lease", "err", err)
	}
}

// cimdError is a client ID metadata document failure, shown on the error
// page with its fixed text.
type cimdError struct{ desc string }

func (e *cimdError) Error() string { return e.desc }

// fetchCIMD fetches and validates a client ID metadata document.
func (s *Server) fetchCIMD(ctx context.Context, id string) (*client, error) {
	u, err := url.Parse(id)
	if err != nil || unsafeText(id) || u.Scheme != "https" || u.Host == "" || u.Path == "" || u.Path == "/" ||
		u.Fragment != "" || u.User != nil || strings.Contains(u.Path, "/./") || strings.Contains(u.Path, "/../") {
		return nil, &cimdError{"The client ID is not a valid metadata document URL."}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, &cimdError{"The client ID is not a valid metadata document URL."}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.cfg.CIMDClient.Do(req)
	if err != nil {
		s.log.InfoContext(ctx, "fetch client metadata document", "client_id", id, "err", err)
		return nil, &cimdError{"The client's metadata document could not be fetched."}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &cimdError{"The client's metadata document could not be fetched."}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil || len(body) > MaxBodyBytes {
		return nil, &cimdError{"The client's metadata document is too large or unreadable."}
	}
	md, err := parseClientMetadata(body, false)
	if err != nil {
		return nil, &cimdError{"The client's metadata document is invalid: " + err.(*regError).desc + "."}
	}
	if md.ClientID != id {
		return nil, &cimdError{"The client's metadata document names a different client_id."}
	}
	name := md.ClientName
	if name == "" {
		name = id
	}
	return &client{id: id, name: name, redirectURIs: md.RedirectURIs, authMethod: "none", grantTypes: md.GrantTypes, cimd: true}, nil
}

// errBlockedAddress refuses a dial to a non-public address.
var errBlockedAddress = errors.New("address not allowed")

// safeClient dials only global unicast addresses: the check runs on the
// resolved address right before connecting, so DNS cannot swap it.
func safeClient() *http.Client {
	d := &net.Dialer{
		Timeout: 5 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !publicAddr(ap.Addr()) {
				return errBlockedAddress
			}
			return nil
		},
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            d.DialContext,
			TLSHandshakeTimeout:    5 * time.Second,
			ResponseHeaderTimeout:  5 * time.Second,
			MaxResponseHeaderBytes: 16 << 10,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// publicAddr reports whether a may be dialed for a metadata document: a
// global unicast address outside every special-purpose range. IPv4-mapped
// addresses are judged by their IPv4 address; every other IPv6 form that
// embeds or translates an IPv4 address (IPv4-compatible, SIIT, NAT64, 6to4,
// Teredo) is refused whole, because the host behind it may be a loopback or
// private IPv4 one.
func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.Zone() != "" || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsMulticast() || a.IsUnspecified() || a.IsInterfaceLocalMulticast() || !a.IsGlobalUnicast() {
		return false
	}
	for _, p := range blockedPrefixes {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// blockedPrefixes are special-purpose ranges (IANA IPv4 and IPv6
// special-purpose address registries) that netip's predicates let through.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGN)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (::a.b.c.d, deprecated)
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (SIIT)
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64 well-known prefix
	netip.MustParsePrefix("64:ff9b:1::/48"),  // NAT64 local-use prefixes
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/23"),       // IETF protocol assignments, Teredo 2001::/32 included
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4
	netip.MustParsePrefix("3fff::/20"),       // documentation
	netip.MustParsePrefix("5f00::/16"),       // SRv6 SIDs
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}
