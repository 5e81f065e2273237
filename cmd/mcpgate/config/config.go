// Package config reads the YAML configuration file of `mcpgate apply` and
// `mcpgate dev --config`, and applies it through the admin API.
//
// The mcp_servers block takes LiteLLM's field names so a LiteLLM config can be
// brought over unchanged. Any string value of the form os.environ/NAME is
// replaced by the environment variable NAME.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// EnvPrefix marks a value read from the environment.
const EnvPrefix = "os.environ/"

// ErrInvalid is wrapped by every error about the file's content.
var ErrInvalid = errors.New("invalid config")

// File is a parsed configuration file.
type File struct {
	// PublicURL is the data plane's public base URL (used by `mcpgate dev`).
	PublicURL string
	// Servers are sorted by name.
	Servers []*configv1.McpServer
	// Groups are sorted by name.
	Groups     []*configv1.Group
	Principals []*configv1.Principal
	Keys       []Key
	// IdentityProviders are the OpenID providers people sign in with.
	IdentityProviders []*configv1.IdentityProvider
	// VirtualServers are sorted by name.
	VirtualServers []*configv1.VirtualServer
	// SigninAPIKey is signin.api_key when the file sets it: whether people
	// may sign in with a gateway API key (a control-plane setting that
	// `mcpgate dev` applies; apply does not).
	SigninAPIKey *bool
}

// Key is an API key the file asks for.
type Key struct {
	Principal string
	Name      string
	// Value pins the key (from os.environ/NAME); empty: generated once.
	Value string
	// Exactly one of TTL (relative to the apply) or ExpireTime may be set.
	TTL        time.Duration
	ExpireTime time.Time
	// Line is the key entry's line in the file.
	Line int
}

type fileYAML struct {
	PublicURL  string                `yaml:"public_url"`
	MCPServers map[string]serverYAML `yaml:"mcp_servers"`
	Groups     map[string]groupYAML  `yaml:"groups"`
	// VirtualServers is virtual_servers:.
	VirtualServers map[string]virtualServerYAML `yaml:"virtual_servers"`
	Principals     []principalYAML              `yaml:"principals"`
	Keys           []keyYAML                    `yaml:"keys"`
	// IdentityProviders is identity_providers:.
	IdentityProviders []identityProviderYAML `yaml:"identity_providers"`
	Signin            signinYAML             `yaml:"signin"`
}

type serverYAML struct {
	URL              string     `yaml:"url"`
	Transport        transport  `yaml:"transport"`
	AuthType         authType   `yaml:"auth_type"`
	AuthValue        string     `yaml:"auth_value"`
	OAuth2Flow       oauth2Flow `yaml:"oauth2_flow"`
	ClientID         string     `yaml:"client_id"`
	ClientSecret     string     `yaml:"client_secret"`
	AuthorizationURL string     `yaml:"authorization_url"`
	TokenURL         string     `yaml:"token_url"`
	// TokenExchangeAudience: the audience of oauth2_flow token_exchange.
	TokenExchangeAudience string            `yaml:"token_exchange_audience"`
	Scopes                []string          `yaml:"scopes"`
	StaticHeaders         map[string]string `yaml:"static_headers"`
	AllowedTools          []string          `yaml:"allowed_tools"`
	DisallowedTools       []string          `yaml:"disallowed_tools"`
	Description           string            `yaml:"description"`
	RevocationURL         string            `yaml:"revocation_url"`
	Issuer                string            `yaml:"issuer"`
}

type groupYAML struct {
	Servers     []string `yaml:"servers"`
	Description string   `yaml:"description"`
}

type virtualServerYAML struct {
	Description   string       `yaml:"description"`
	ToolSeparator string       `yaml:"tool_separator"`
	Scopes        []string     `yaml:"scopes"`
	Members       []memberYAML `yaml:"members"`
}

type memberYAML struct {
	Server       string            `yaml:"server"`
	IncludeTools []string          `yaml:"include_tools"`
	ExcludeTools []string          `yaml:"exclude_tools"`
	Renames      map[string]string `yaml:"renames"`
	// ToolPrefix overrides <server><tool_separator> when present (even "").
	ToolPrefix *string `yaml:"tool_prefix"`
}

type principalYAML struct {
	Name        string        `yaml:"name"`
	Kind        principalKind `yaml:"kind"`
	Role        role          `yaml:"role"`
	Servers     []string      `yaml:"servers"`
	Groups      []string      `yaml:"groups"`
	DisplayName string        `yaml:"display_name"`
	line        int
}

func (p *principalYAML) UnmarshalYAML(n *yaml.Node) error {
	type plain principalYAML
	if err := n.Decode((*plain)(p)); err != nil {
		return err
	}
	p.line = n.Line
	return nil
}

type keyYAML struct {
	Principal string  `yaml:"principal"`
	Name      string  `yaml:"name"`
	Key       string  `yaml:"key"`
	Expires   expires `yaml:"expires"`
	line      int
}

func (k *keyYAML) UnmarshalYAML(n *yaml.Node) error {
	type plain keyYAML
	if err := n.Decode((*plain)(k)); err != nil {
		return err
	}
	k.line = n.Line
	return nil
}

// enumValue decodes a scalar that must be one of names.
func enumValue[T ~int32](n *yaml.Node, field string, names map[string]T) (T, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, fmt.Errorf("line %d: %s must be a string", n.Line, field)
	}
	v, ok := names[n.Value]
	if !ok {
		keys := make([]string, 0, len(names))
		for k := range names {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return 0, fmt.Errorf("line %d: %s %q is not one of %s", n.Line, field, n.Value, strings.Join(keys, ", "))
	}
	return v, nil
}

type transport configv1.Transport

func (t *transport) UnmarshalYAML(n *yaml.Node) error {
	v, err := enumValue(n, "transport", map[string]configv1.Transport{
		"http": configv1.Transport_TRANSPORT_HTTP,
		"sse":  configv1.Transport_TRANSPORT_SSE,
	})
	*t = transport(v)
	return err
}

type authType configv1.AuthType

func (t *authType) UnmarshalYAML(n *yaml.Node) error {
	v, err := enumValue(n, "auth_type", map[string]configv1.AuthType{
		"none":          configv1.AuthType_AUTH_TYPE_NONE,
		"api_key":       configv1.AuthType_AUTH_TYPE_API_KEY,
		"bearer_token":  configv1.AuthType_AUTH_TYPE_BEARER_TOKEN,
		"basic":         configv1.AuthType_AUTH_TYPE_BASIC,
		"authorization": configv1.AuthType_AUTH_TYPE_AUTHORIZATION,
		"token":         configv1.AuthType_AUTH_TYPE_TOKEN,
		"oauth2":        configv1.AuthType_AUTH_TYPE_OAUTH2,
		"passthrough":   configv1.AuthType_AUTH_TYPE_PASSTHROUGH,
	})
	*t = authType(v)
	return err
}

type oauth2Flow configv1.OAuth2Flow

func (f *oauth2Flow) UnmarshalYAML(n *yaml.Node) error {
	v, err := enumValue(n, "oauth2_flow", map[string]configv1.OAuth2Flow{
		"authorization_code": configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE,
		"client_credentials": configv1.OAuth2Flow_O_AUTH2_FLOW_CLIENT_CREDENTIALS,
		"token_exchange":     configv1.OAuth2Flow_O_AUTH2_FLOW_TOKEN_EXCHANGE,
	})
	*f = oauth2Flow(v)
	return err
}

type principalKind configv1.PrincipalKind

func (k *principalKind) UnmarshalYAML(n *yaml.Node) error {
	v, err := enumValue(n, "kind", map[string]configv1.PrincipalKind{
		"user":            configv1.PrincipalKind_PRINCIPAL_KIND_USER,
		"service_account": configv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT,
	})
	*k = principalKind(v)
	return err
}

type role configv1.Role

func (r *role) UnmarshalYAML(n *yaml.Node) error {
	v, err := enumValue(n, "role", map[string]configv1.Role{
		"member": configv1.Role_ROLE_MEMBER,
		"admin":  configv1.Role_ROLE_ADMIN,
	})
	*r = role(v)
	return err
}

// expires is a duration from apply time (720h) or an RFC 3339 instant.
type expires struct {
	ttl time.Duration
	at  time.Time
}

func (e *expires) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expires must be a string", n.Line)
	}
	if d, err := time.ParseDuration(n.Value); err == nil {
		if d <= 0 {
			return fmt.Errorf("line %d: expires %q must be positive", n.Line, n.Value)
		}
		e.ttl = d
		return nil
	}
	t, err := time.Parse(time.RFC3339, n.Value)
	if err != nil {
		return fmt.Errorf("line %d: expires %q is neither a duration (720h) nor an RFC 3339 time", n.Line, n.Value)
	}
	e.at = t
	return nil
}

// ParseFile reads and parses the file at path, resolving os.environ/ values
// with os.LookupEnv.
func ParseFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	f, err := Parse(data, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse parses a configuration file. lookupEnv resolves os.environ/NAME
// values. Errors name the line and the field.
func Parse(data []byte, lookupEnv func(string) (string, bool)) (*File, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(doc.Content) == 0 {
		return &File{}, nil
	}
	if err := checkFields(&doc, reflect.TypeFor[fileYAML](), "config"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := resolveEnv(&doc, lookupEnv); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var y fileYAML
	if err := doc.Decode(&y); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return convert(&y)
}

// checkFields reports the first mapping key with no matching field in t.
func checkFields(n *yaml.Node, t reflect.Type, where string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 1 {
			return checkFields(n.Content[0], t, where)
		}
	case yaml.MappingNode:
		switch t.Kind() {
		case reflect.Struct:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				f, ok := fieldByTag(t, k.Value)
				if !ok {
					return fmt.Errorf("line %d: unknown field %q in %s", k.Line, k.Value, where)
				}
				if err := checkFields(v, f.Type, k.Value); err != nil {
					return err
				}
			}
		case reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if err := checkFields(n.Content[i+1], t.Elem(), where+"."+n.Content[i].Value); err != nil {
					return err
				}
			}
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice {
			for _, c := range n.Content {
				if err := checkFields(c, t.Elem(), where); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// resolveEnv replaces every os.environ/NAME scalar value.
func resolveEnv(n *yaml.Node, lookupEnv func(string) (string, bool)) error {
	switch n.Kind {
	case yaml.ScalarNode:
		name, ok := strings.CutPrefix(n.Value, EnvPrefix)
		if !ok {
			return nil
		}
		if name == "" {
			return fmt.Errorf("line %d: %q names no environment variable", n.Line, n.Value)
		}
		v, ok := lookupEnv(name)
		if !ok {
			return fmt.Errorf("line %d: environment variable %s is not set (%s%s)", n.Line, name, EnvPrefix, name)
		}
		n.Value, n.Tag, n.Style = v, "!!str", yaml.DoubleQuotedStyle
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if err := resolveEnv(n.Content[i], lookupEnv); err != nil {
				return err
			}
		}
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if err := resolveEnv(c, lookupEnv); err != nil {
				return err
			}
		}
	}
	return nil
}

func convert(y *fileYAML) (*File, error) {
	f := &File{PublicURL: y.PublicURL, SigninAPIKey: y.Signin.APIKey}
	idps, err := convertIdPs(y.IdentityProviders)
	if err != nil {
		return nil, err
	}
	f.IdentityProviders = idps
	for name, s := range y.MCPServers {
		tr := configv1.Transport(s.Transport)
		if tr == configv1.Transport_TRANSPORT_UNSPECIFIED {
			tr = configv1.Transport_TRANSPORT_HTTP
		}
		at := configv1.AuthType(s.AuthType)
		if at == configv1.AuthType_AUTH_TYPE_UNSPECIFIED {
			at = configv1.AuthType_AUTH_TYPE_NONE
		}
		f.Servers = append(f.Servers, &configv1.McpServer{
			Name:                  name,
			Url:                   s.URL,
			Transport:             tr,
			AuthType:              at,
			AuthValue:             s.AuthValue,
			Oauth2Flow:            configv1.OAuth2Flow(s.OAuth2Flow),
			ClientId:              s.ClientID,
			ClientSecret:          s.ClientSecret,
			AuthorizationUrl:      s.AuthorizationURL,
			TokenUrl:              s.TokenURL,
			TokenExchangeAudience: s.TokenExchangeAudience,
			Scopes:                s.Scopes,
			StaticHeaders:         s.StaticHeaders,
			AllowedTools:          s.AllowedTools,
			DisallowedTools:       s.DisallowedTools,
			Description:           s.Description,
			RevocationUrl:         s.RevocationURL,
			Issuer:                s.Issuer,
		})
	}
	slices.SortFunc(f.Servers, func(a, b *configv1.McpServer) int { return strings.Compare(a.GetName(), b.GetName()) })
	for name, g := range y.Groups {
		f.Groups = append(f.Groups, &configv1.Group{Name: name, Servers: g.Servers, Description: g.Description})
	}
	slices.SortFunc(f.Groups, func(a, b *configv1.Group) int { return strings.Compare(a.GetName(), b.GetName()) })
	for name, v := range y.VirtualServers {
		vs := &configv1.VirtualServer{Name: name, Description: v.Description, ToolSeparator: v.ToolSeparator, Scopes: v.Scopes}
		for _, m := range v.Members {
			vs.Members = append(vs.Members, &configv1.VirtualServerMember{
				Server: m.Server, IncludeTools: m.IncludeTools, ExcludeTools: m.ExcludeTools, Renames: m.Renames, ToolPrefix: m.ToolPrefix,
			})
		}
		f.VirtualServers = append(f.VirtualServers, vs)
	}
	slices.SortFunc(f.VirtualServers, func(a, b *configv1.VirtualServer) int { return strings.Compare(a.GetName(), b.GetName()) })
	seen := map[string]int{}
	for _, p := range y.Principals {
		if p.Name == "" {
			return nil, fmt.Errorf("%w: line %d: principal has no name", ErrInvalid, p.line)
		}
		if l, dup := seen[p.Name]; dup {
			return nil, fmt.Errorf("%w: line %d: principal %q already defined on line %d", ErrInvalid, p.line, p.Name, l)
		}
		seen[p.Name] = p.line
		kind := configv1.PrincipalKind(p.Kind)
		if kind == configv1.PrincipalKind_PRINCIPAL_KIND_UNSPECIFIED {
			kind = configv1.PrincipalKind_PRINCIPAL_KIND_USER
		}
		r := configv1.Role(p.Role)
		if r == configv1.Role_ROLE_UNSPECIFIED {
			r = configv1.Role_ROLE_MEMBER
		}
		f.Principals = append(f.Principals, &configv1.Principal{
			Name:        p.Name,
			Kind:        kind,
			Role:        r,
			Servers:     p.Servers,
			Groups:      p.Groups,
			DisplayName: p.DisplayName,
		})
	}
	for _, k := range y.Keys {
		if k.Principal == "" {
			return nil, fmt.Errorf("%w: line %d: key has no principal", ErrInvalid, k.line)
		}
		if k.Key == "" && k.Name == "" {
			return nil, fmt.Errorf("%w: line %d: a key without a pinned value (key: os.environ/NAME) needs a name, so applying the file again does not create another", ErrInvalid, k.line)
		}
		f.Keys = append(f.Keys, Key{
			Principal:  k.Principal,
			Name:       k.Name,
			Value:      k.Key,
			TTL:        k.Expires.ttl,
			ExpireTime: k.Expires.at,
			Line:       k.line,
		})
	}
	return f, nil
}
