package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// Imperative verbs beside `apply`: each creates one object with
// expected_revision 0 (never replaces) and leaves validation to the control
// plane, whose messages it prints. Secrets come from a file or stdin, never
// from a flag value (flags end up in shell history and process listings).

// verbs are the commands dispatched by "COMMAND SUBCOMMAND" before the
// generic ones.
var verbs = map[string]func(context.Context, []string, stdio) error{
	"servers add":         cmdServersAdd,
	"principals create":   cmdPrincipalsCreate,
	"groups create":       cmdGroupsCreate,
	"virtual-servers add": cmdVirtualServersAdd,
}

// verb returns the imperative verb "cmd args[0]" names, if there is one,
// and the arguments after it.
func verb(cmd string, args []string) (func(context.Context, []string, stdio) error, []string) {
	if len(args) == 0 {
		return nil, nil
	}
	return verbs[cmd+" "+args[0]], args[1:]
}

// stdin is where a secret file named "-" is read from.
var stdin io.Reader = os.Stdin

// maxSecretFile bounds a secret read from a file or stdin.
const maxSecretFile = 64 << 10

// secretFile reads the secret a --*-file flag names: "-" is stdin. One
// trailing newline, \n or \r\n (as editors and `echo` add), is dropped.
// The value never appears in an error.
func secretFile(flagName, path string) (string, error) {
	var r io.Reader
	if path == "-" {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("--%s: %w", flagName, err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("--%s: read: %w", flagName, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%w: --%s: larger than %d bytes", errUsage, flagName, maxSecretFile)
	}
	s := string(b)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if s == "" {
		return "", fmt.Errorf("%w: --%s: empty", errUsage, flagName)
	}
	return s, nil
}

// protoEnum is a generated enum type.
type protoEnum interface {
	~int32
	Descriptor() protoreflect.EnumDescriptor
}

// enumFlag sets a generated enum from its CLI spelling: the value's proto
// name without the enum's prefix, lower-cased (AUTH_TYPE_BEARER_TOKEN is
// bearer_token), as the YAML file and the tables spell it.
type enumFlag[T protoEnum] struct{ p *T }

func enumVar[T protoEnum](p *T) flag.Value { return enumFlag[T]{p} }

// enumChoices lists T's CLI spellings, sorted.
func enumChoices[T protoEnum]() string {
	var zero T
	keys := slices.Sorted(maps.Keys(enumNames(zero.Descriptor())))
	return strings.Join(keys, ", ")
}

// enumNames maps the CLI spellings of d's values (all but UNSPECIFIED).
func enumNames(d protoreflect.EnumDescriptor) map[string]protoreflect.EnumNumber {
	values := d.Values()
	prefix := strings.TrimSuffix(string(values.ByNumber(0).Name()), "UNSPECIFIED")
	out := make(map[string]protoreflect.EnumNumber, values.Len())
	for i := range values.Len() {
		v := values.Get(i)
		if v.Number() != 0 {
			out[strings.ToLower(strings.TrimPrefix(string(v.Name()), prefix))] = v.Number()
		}
	}
	return out
}

func (f enumFlag[T]) String() string {
	if f.p == nil || *f.p == 0 {
		return ""
	}
	var zero T
	for name, n := range enumNames(zero.Descriptor()) {
		if T(n) == *f.p {
			return name
		}
	}
	return ""
}

func (f enumFlag[T]) Set(s string) error {
	var zero T
	n, ok := enumNames(zero.Descriptor())[s]
	if !ok {
		return fmt.Errorf("want one of %s", enumChoices[T]())
	}
	*f.p = T(n)
	return nil
}

// listFlag is a comma-separated list ("a,b"); repeating the flag appends.
type listFlag struct{ p *[]string }

func (l listFlag) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l listFlag) Set(s string) error {
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l.p = append(*l.p, v)
		}
	}
	return nil
}

// createError words a create's refusal: with expected_revision 0 the
// control plane's aborted means the object already exists (found in its
// cache, or created concurrently), which is no reason to retry.
func createError(what, name string, err error) error {
	if ce := (*connect.Error)(nil); errors.As(err, &ce) && ce.Code() == connect.CodeAborted {
		return fmt.Errorf("%s %q already exists (change it with apply, or delete it first)", what, name)
	}
	return fmt.Errorf("%s %q: %w", what, name, err)
}

const serversAddUsage = "mcpgate servers add NAME --url URL [--transport http|sse] [--auth-type T] [--auth-value-file F|-] " +
	"[--oauth2-flow F --client-id ID --client-secret-file F|- --authorization-url U --token-url U --scopes a,b] " +
	"[--allowed-tools a,b] [--disallowed-tools a,b] [--description D]"

// cmdServersAdd creates an MCP server definition.
func cmdServersAdd(ctx context.Context, args []string, io stdio) error {
	def := &configv1.McpServer{}
	var authValueFile, clientSecretFile string
	a, pos, ctx, cancel, err := adminCommand(ctx, "servers add", args, io, func(fs *flag.FlagSet) {
		fs.StringVar(&def.Url, "url", "", "upstream MCP server URL")
		fs.Var(enumVar(&def.Transport), "transport", "one of "+enumChoices[configv1.Transport]()+" (default http)")
		fs.Var(enumVar(&def.AuthType), "auth-type", "one of "+enumChoices[configv1.AuthType]()+" (default none)")
		fs.StringVar(&authValueFile, "auth-value-file", "", "file holding auth_value (- reads stdin)")
		fs.Var(enumVar(&def.Oauth2Flow), "oauth2-flow", "oauth2: one of "+enumChoices[configv1.OAuth2Flow]())
		fs.StringVar(&def.ClientId, "client-id", "", "oauth2 client id")
		fs.StringVar(&clientSecretFile, "client-secret-file", "", "file holding the oauth2 client secret (- reads stdin)")
		fs.StringVar(&def.AuthorizationUrl, "authorization-url", "", "oauth2 authorization endpoint")
		fs.StringVar(&def.TokenUrl, "token-url", "", "oauth2 token endpoint")
		fs.StringVar(&def.RevocationUrl, "revocation-url", "", "oauth2 revocation endpoint (optional)")
		fs.StringVar(&def.Issuer, "issuer", "", "oauth2 issuer, checked on the callback (optional)")
		fs.Var(listFlag{&def.Scopes}, "scopes", "oauth2 scopes, comma-separated")
		fs.Var(listFlag{&def.AllowedTools}, "allowed-tools", "only these tools, comma-separated")
		fs.Var(listFlag{&def.DisallowedTools}, "disallowed-tools", "never these tools, comma-separated")
		fs.StringVar(&def.Description, "description", "", "description")
	})
	if err != nil {
		return err
	}
	defer cancel()
	if len(pos) != 1 {
		return fmt.Errorf("%w: %s", errUsage, serversAddUsage)
	}
	def.Name = pos[0]
	if authValueFile == "-" && clientSecretFile == "-" {
		return fmt.Errorf("%w: --auth-value-file and --client-secret-file cannot both read stdin", errUsage)
	}
	if authValueFile != "" {
		if def.AuthValue, err = secretFile("auth-value-file", authValueFile); err != nil {
			return err
		}
	}
	if clientSecretFile != "" {
		if def.ClientSecret, err = secretFile("client-secret-file", clientSecretFile); err != nil {
			return err
		}
	}
	res, err := a.servers.PutServer(ctx, &configv1.PutServerRequest{Server: def})
	if err != nil {
		return createError("server", def.Name, err)
	}
	if a.out.json {
		a.out.message(&configv1.PutServerResponse{Server: redact(res.GetServer()), Changed: res.GetChanged()})
		return nil
	}
	a.out.done("server %s created (route /%s/mcp)", def.Name, def.Name)
	return nil
}

// cmdPrincipalsCreate creates a principal.
func cmdPrincipalsCreate(ctx context.Context, args []string, io stdio) error {
	// kind defaults to user, as in the YAML file; the API requires it.
	p := &configv1.Principal{Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER}
	a, pos, ctx, cancel, err := adminCommand(ctx, "principals create", args, io, func(fs *flag.FlagSet) {
		fs.Var(listFlag{&p.Servers}, "servers", `servers it may use, comma-separated ("*": all)`)
		fs.Var(listFlag{&p.Groups}, "groups", "groups it is a member of, comma-separated")
		fs.Var(enumVar(&p.Kind), "kind", "one of "+enumChoices[configv1.PrincipalKind]())
		fs.Var(enumVar(&p.Role), "role", "one of "+enumChoices[configv1.Role]()+" (default member)")
		fs.StringVar(&p.DisplayName, "display-name", "", "display name")
	})
	if err != nil {
		return err
	}
	defer cancel()
	if len(pos) != 1 {
		return fmt.Errorf("%w: mcpgate principals create NAME [--servers a,b] [--groups a,b] [--kind user|service_account] [--role member|admin] [--display-name D]", errUsage)
	}
	p.Name = pos[0]
	res, err := a.principals.PutPrincipal(ctx, &configv1.PutPrincipalRequest{Principal: p})
	if err != nil {
		return createError("principal", p.Name, err)
	}
	if a.out.json {
		a.out.message(res)
		return nil
	}
	got := res.GetPrincipal()
	a.out.done("principal %s created (%s, %s; servers %s)", got.GetName(), lower(got.GetKind(), "PRINCIPAL_KIND_"),
		lower(got.GetRole(), "ROLE_"), list(got.GetServers()))
	return nil
}

// cmdGroupsCreate creates a group.
func cmdGroupsCreate(ctx context.Context, args []string, io stdio) error {
	g := &configv1.Group{}
	a, pos, ctx, cancel, err := adminCommand(ctx, "groups create", args, io, func(fs *flag.FlagSet) {
		fs.Var(listFlag{&g.Servers}, "servers", `servers its members may use, comma-separated ("*": all)`)
		fs.StringVar(&g.Description, "description", "", "description")
	})
	if err != nil {
		return err
	}
	defer cancel()
	if len(pos) != 1 {
		return fmt.Errorf("%w: mcpgate groups create NAME [--servers a,b] [--description D]", errUsage)
	}
	g.Name = pos[0]
	res, err := a.groups.PutGroup(ctx, &configv1.PutGroupRequest{Group: g})
	if err != nil {
		return createError("group", g.Name, err)
	}
	if a.out.json {
		a.out.message(res)
		return nil
	}
	a.out.done("group %s created (servers %s)", res.GetGroup().GetName(), list(res.GetGroup().GetServers()))
	return nil
}

// cmdVirtualServersAdd creates a virtual server whose members expose their
// tools as <server><separator><tool>; per-member filters, renames and
// prefixes are set with apply (virtual_servers: in the YAML file).
func cmdVirtualServersAdd(ctx context.Context, args []string, io stdio) error {
	v := &configv1.VirtualServer{}
	var members []string
	a, pos, ctx, cancel, err := adminCommand(ctx, "virtual-servers add", args, io, func(fs *flag.FlagSet) {
		fs.Var(listFlag{&members}, "members", "member servers, comma-separated")
		fs.StringVar(&v.ToolSeparator, "separator", "", `joins a member's name and its tool names (default "__")`)
		fs.Var(listFlag{&v.Scopes}, "scopes", "OAuth scopes of its route, comma-separated")
		fs.StringVar(&v.Description, "description", "", "description")
	})
	if err != nil {
		return err
	}
	defer cancel()
	if len(pos) != 1 {
		return fmt.Errorf("%w: mcpgate virtual-servers add NAME --members a,b [--separator S] [--scopes a,b] [--description D]", errUsage)
	}
	v.Name = pos[0]
	for _, m := range members {
		v.Members = append(v.Members, &configv1.VirtualServerMember{Server: m})
	}
	res, err := a.virtual.PutVirtualServer(ctx, &configv1.PutVirtualServerRequest{VirtualServer: v})
	if err != nil {
		return createError("virtual server", v.Name, err)
	}
	if a.out.json {
		a.out.message(res)
		return nil
	}
	got := res.GetVirtualServer()
	names := make([]string, 0, len(got.GetMembers()))
	for _, m := range got.GetMembers() {
		names = append(names, m.GetServer())
	}
	a.out.done("virtual server %s created (members %s; at /%s/mcp)", got.GetName(), list(names), got.GetName())
	return nil
}
