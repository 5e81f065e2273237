package configapi

import (
	"fmt"
	"net/textproto"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// invalidError is a validation failure. Its text is fixed by this package,
// names the field and never contains a secret, so it is sent to clients.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// keyRE is the shape of a gateway API key.
var keyRE = regexp.MustCompile(`^mcpg_[A-Za-z0-9]{32,}$`)

// validName checks a server or principal name against the server-name
// grammar of api/wire, the one the data plane routes by. The name itself is
// never echoed.
func validName(field, name string) error {
	if name == "" {
		return invalid("%s: required", field)
	}
	if !wire.ValidServerName(name) {
		return invalid("%s: %s", field, wire.ServerNameRule)
	}
	return nil
}

// validURL checks an absolute http(s) URL with a host and no credentials.
// The URL is never echoed: it may carry secrets in its query.
func validURL(field, raw string) error {
	if raw == "" {
		return invalid("%s: required", field)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return invalid("%s: not a valid URL", field)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalid("%s: must be an absolute http or https URL", field)
	}
	if u.Host == "" || u.Hostname() == "" {
		return invalid("%s: must have a host", field)
	}
	if u.User != nil {
		return invalid("%s: must not contain credentials", field)
	}
	if u.Fragment != "" {
		return invalid("%s: must not contain a fragment", field)
	}
	return nil
}

// usesAuthValue tells whether an auth type takes auth_value.
func usesAuthValue(t configv1.AuthType) bool {
	switch t {
	case configv1.AuthType_AUTH_TYPE_API_KEY, configv1.AuthType_AUTH_TYPE_BEARER_TOKEN,
		configv1.AuthType_AUTH_TYPE_BASIC, configv1.AuthType_AUTH_TYPE_AUTHORIZATION,
		configv1.AuthType_AUTH_TYPE_TOKEN:
		return true
	}
	return false
}

// hopByHop are headers that belong to one connection, and reserved are
// headers the gateway itself owns: admission credentials, framing, sessions.
var reservedHeaders = map[string]string{
	"Connection":          "hop-by-hop",
	"Keep-Alive":          "hop-by-hop",
	"Proxy-Connection":    "hop-by-hop",
	"Proxy-Authenticate":  "hop-by-hop",
	"Proxy-Authorization": "hop-by-hop",
	"Te":                  "hop-by-hop",
	"Trailer":             "hop-by-hop",
	"Transfer-Encoding":   "hop-by-hop",
	"Upgrade":             "hop-by-hop",
	"Host":                "reserved",
	"Content-Length":      "reserved",
	"Mcp-Session-Id":      "reserved",
	textproto.CanonicalMIMEHeaderKey(wire.HeaderAPIKey):        "an admission header",
	textproto.CanonicalMIMEHeaderKey(wire.HeaderLiteLLMAPIKey): "an admission header",
}

func validStaticHeader(name, value string, authType configv1.AuthType) error {
	if !wire.ValidHeaderName(name) {
		return invalid("static_headers: header name %q is not a valid HTTP token", truncate(name))
	}
	canon := textproto.CanonicalMIMEHeaderKey(name)
	if why, ok := reservedHeaders[canon]; ok {
		return invalid("static_headers: %s is %s and cannot be set", canon, why)
	}
	if wire.IsPassthroughHeader(canon) {
		return invalid("static_headers: %s is a passthrough header and cannot be set", canon)
	}
	if canon == "Authorization" && authType != configv1.AuthType_AUTH_TYPE_NONE {
		return invalid("static_headers: Authorization is only allowed with auth_type none")
	}
	if value == "" {
		return invalid("static_headers[%s]: value required", canon)
	}
	if !wire.ValidHeaderValue(value) {
		return invalid("static_headers[%s]: value contains control characters", canon)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// normalizeServer fills defaults so that equal definitions compare equal.
func normalizeServer(def *configv1.McpServer) {
	if def.Transport == configv1.Transport_TRANSPORT_UNSPECIFIED {
		def.Transport = configv1.Transport_TRANSPORT_HTTP
	}
	if def.AuthType == configv1.AuthType_AUTH_TYPE_UNSPECIFIED {
		def.AuthType = configv1.AuthType_AUTH_TYPE_NONE
	}
}

// validateServer checks a normalized definition together with the secrets
// it will be stored with (after merging with the stored ones). Secret values
// never appear in messages.
func validateServer(def *configv1.McpServer, sec *storev1.ServerSecrets) error {
	if err := validName("name", def.GetName()); err != nil {
		return err
	}
	if err := validURL("url", def.GetUrl()); err != nil {
		return err
	}
	switch def.GetTransport() {
	case configv1.Transport_TRANSPORT_HTTP, configv1.Transport_TRANSPORT_SSE:
	default:
		return invalid("transport: must be http or sse")
	}
	at := def.GetAuthType()
	switch {
	case usesAuthValue(at):
		if sec.GetAuthValue() == "" {
			return invalid("auth_value: required for auth_type %s", authTypeName(at))
		}
		if !wire.ValidHeaderValue(sec.GetAuthValue()) {
			return invalid("auth_value: contains control characters")
		}
		if at == configv1.AuthType_AUTH_TYPE_BASIC {
			user, _, ok := strings.Cut(sec.GetAuthValue(), ":")
			if !ok || user == "" {
				return invalid("auth_value: must be user:password for auth_type basic")
			}
		}
	case at == configv1.AuthType_AUTH_TYPE_NONE, at == configv1.AuthType_AUTH_TYPE_PASSTHROUGH, at == configv1.AuthType_AUTH_TYPE_OAUTH2:
		if sec.GetAuthValue() != "" {
			return invalid("auth_value: not allowed with auth_type %s", authTypeName(at))
		}
	default:
		return invalid("auth_type: unknown value")
	}
	if at == configv1.AuthType_AUTH_TYPE_OAUTH2 {
		switch def.GetOauth2Flow() {
		case configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE:
			if def.GetAuthorizationUrl() == "" {
				return invalid("authorization_url: required for oauth2_flow authorization_code")
			}
		case configv1.OAuth2Flow_O_AUTH2_FLOW_CLIENT_CREDENTIALS:
			if sec.GetClientSecret() == "" {
				return invalid("client_secret: required for oauth2_flow client_credentials")
			}
		case configv1.OAuth2Flow_O_AUTH2_FLOW_TOKEN_EXCHANGE:
		case configv1.OAuth2Flow_O_AUTH2_FLOW_UNSPECIFIED:
			return invalid("oauth2_flow: required for auth_type oauth2")
		default:
			return invalid("oauth2_flow: must be authorization_code, client_credentials or token_exchange")
		}
		if def.GetClientId() == "" {
			return invalid("client_id: required for auth_type oauth2")
		}
		if def.GetTokenUrl() == "" {
			return invalid("token_url: required for auth_type oauth2")
		}
	} else {
		if def.GetOauth2Flow() != configv1.OAuth2Flow_O_AUTH2_FLOW_UNSPECIFIED {
			return invalid("oauth2_flow: only allowed with auth_type oauth2")
		}
		if sec.GetClientSecret() != "" {
			return invalid("client_secret: only allowed with auth_type oauth2")
		}
	}
	for _, f := range []struct{ field, v string }{
		{"authorization_url", def.GetAuthorizationUrl()},
		{"token_url", def.GetTokenUrl()},
		{"revocation_url", def.GetRevocationUrl()},
		{"issuer", def.GetIssuer()},
	} {
		if f.v == "" {
			continue
		}
		if err := validURL(f.field, f.v); err != nil {
			return err
		}
	}
	if !wire.ValidHeaderValue(sec.GetClientSecret()) {
		return invalid("client_secret: contains control characters")
	}
	for i, sc := range def.GetScopes() {
		if sc == "" || strings.ContainsAny(sc, " \t\r\n\"\\") {
			return invalid("scopes[%d]: must be a non-empty scope token without spaces or quotes", i)
		}
	}
	seen := map[string]bool{}
	for name, value := range sec.GetStaticHeaders() {
		if err := validStaticHeader(name, value, at); err != nil {
			return err
		}
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if seen[canon] {
			return invalid("static_headers: %s given more than once", canon)
		}
		seen[canon] = true
	}
	allowed := map[string]bool{}
	for i, t := range def.GetAllowedTools() {
		if strings.TrimSpace(t) == "" {
			return invalid("allowed_tools[%d]: must not be empty", i)
		}
		allowed[t] = true
	}
	for i, t := range def.GetDisallowedTools() {
		if strings.TrimSpace(t) == "" {
			return invalid("disallowed_tools[%d]: must not be empty", i)
		}
		if allowed[t] {
			return invalid("disallowed_tools[%d]: tool %q is also in allowed_tools", i, truncate(t))
		}
	}
	if len(def.GetDescription()) > 4096 {
		return invalid("description: longer than 4096 bytes")
	}
	if err := validateToolScopes(def); err != nil {
		return err
	}
	switch def.GetOnToolChange() {
	case configv1.ToolChangeMode_TOOL_CHANGE_MODE_UNSPECIFIED, configv1.ToolChangeMode_TOOL_CHANGE_MODE_WARN, configv1.ToolChangeMode_TOOL_CHANGE_MODE_BLOCK:
	default:
		return invalid("on_tool_change: must be warn or block")
	}
	switch def.GetProtocolVersion() {
	case "", "2025-11-25", "2026-07-28":
	default:
		return invalid("protocol_version: must be empty (auto), 2025-11-25 or 2026-07-28")
	}
	return nil
}

// Bounds of tool_scopes.
const (
	maxToolScopeRules = 256
	maxRuleScopes     = 32
)

// validScopeToken reports whether sc is an RFC 6749 scope token the
// gateway's challenges can carry unchanged: printable ASCII without space,
// quote, backslash, comma or equals sign, at most 200 bytes.
func validScopeToken(sc string) bool {
	if sc == "" || len(sc) > 200 {
		return false
	}
	for i := 0; i < len(sc); i++ {
		c := sc[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

// validateToolScopes checks tool_scopes: a glob (path.Match syntax) per
// rule, at least one scope, and valid scope tokens. Upstream scopes need an
// oauth2 authorization_code server (only its grants are per person).
func validateToolScopes(def *configv1.McpServer) error {
	rules := def.GetToolScopes()
	if len(rules) > maxToolScopeRules {
		return invalid("tool_scopes: at most %d rules", maxToolScopeRules)
	}
	for i, r := range rules {
		if strings.TrimSpace(r.GetTool()) == "" || len(r.GetTool()) > 128 {
			return invalid("tool_scopes[%d].tool: required, at most 128 bytes", i)
		}
		if _, err := path.Match(r.GetTool(), ""); err != nil {
			return invalid("tool_scopes[%d].tool: malformed glob", i)
		}
		if len(r.GetScopes()) == 0 && len(r.GetUpstreamScopes()) == 0 {
			return invalid("tool_scopes[%d]: scopes or upstream_scopes required", i)
		}
		if len(r.GetScopes()) > maxRuleScopes || len(r.GetUpstreamScopes()) > maxRuleScopes {
			return invalid("tool_scopes[%d]: at most %d scopes each", i, maxRuleScopes)
		}
		for j, sc := range r.GetScopes() {
			if !validScopeToken(sc) {
				return invalid("tool_scopes[%d].scopes[%d]: must be a scope token without spaces, quotes, commas or equals signs", i, j)
			}
		}
		for j, sc := range r.GetUpstreamScopes() {
			if !validScopeToken(sc) {
				return invalid("tool_scopes[%d].upstream_scopes[%d]: must be a scope token without spaces, quotes, commas or equals signs", i, j)
			}
		}
		if len(r.GetUpstreamScopes()) > 0 && (def.GetAuthType() != configv1.AuthType_AUTH_TYPE_OAUTH2 ||
			def.GetOauth2Flow() != configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE) {
			return invalid("tool_scopes[%d].upstream_scopes: only with auth_type oauth2 and oauth2_flow authorization_code", i)
		}
	}
	return nil
}

func authTypeName(t configv1.AuthType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "AUTH_TYPE_"))
}

// normalizePrincipal fills defaults.
func normalizePrincipal(p *configv1.Principal) {
	if p.Role == configv1.Role_ROLE_UNSPECIFIED {
		p.Role = configv1.Role_ROLE_MEMBER
	}
}

func validatePrincipal(p *configv1.Principal) error {
	if err := validName("name", p.GetName()); err != nil {
		return err
	}
	switch p.GetKind() {
	case configv1.PrincipalKind_PRINCIPAL_KIND_USER, configv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT:
	case configv1.PrincipalKind_PRINCIPAL_KIND_UNSPECIFIED:
		return invalid("kind: required (user or service_account)")
	default:
		return invalid("kind: must be user or service_account")
	}
	switch p.GetRole() {
	case configv1.Role_ROLE_MEMBER, configv1.Role_ROLE_ADMIN:
	default:
		return invalid("role: must be member or admin")
	}
	for i, s := range p.GetServers() {
		if s == "*" {
			continue
		}
		if !wire.ValidServerName(s) {
			return invalid("servers[%d]: must be a server name or \"*\"", i)
		}
	}
	for i, g := range p.GetGroups() {
		if !wire.ValidServerName(g) {
			return invalid("groups[%d]: must be a group name", i)
		}
	}
	if len(p.GetDisplayName()) > 256 {
		return invalid("display_name: longer than 256 bytes")
	}
	return nil
}

// validateKeyRequest checks CreateKey's inputs.
func validateKeyRequest(req *configv1.CreateKeyRequest, now time.Time) error {
	if err := validName("principal", req.GetPrincipal()); err != nil {
		return err
	}
	if len(req.GetName()) > 128 {
		return invalid("name: longer than 128 bytes")
	}
	if req.GetKey() != "" && !keyRE.MatchString(req.GetKey()) {
		return invalid("key: must match ^mcpg_[A-Za-z0-9]{32,}$")
	}
	if req.ExpireTime != nil {
		if err := req.GetExpireTime().CheckValid(); err != nil {
			return invalid("expire_time: not a valid timestamp")
		}
		if !req.GetExpireTime().AsTime().After(now) {
			return invalid("expire_time: must be in the future")
		}
	}
	return nil
}
