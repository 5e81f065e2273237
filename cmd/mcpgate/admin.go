package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
	"github.com/mcpgate/mcpgate/controlplane/vault"
)

// DefaultControlPlane is where admin commands go without flags: the admin
// listener of a local `mcpgate dev`.
const DefaultControlPlane = "http://127.0.0.1:8081"

// devAdminKeyFile is where `mcpgate dev` (default data dir) keeps the admin key.
var devAdminKeyFile = filepath.Join(".mcpgate", "admin-key")

// adminFlags are the flags every admin command takes.
type adminFlags struct {
	controlPlane string
	adminKey     string
	output       string
	timeout      time.Duration
}

func (a *adminFlags) register(fs *flag.FlagSet, io stdio) {
	fs.StringVar(&a.controlPlane, "control-plane", io.env("MCPGATE_CONTROL_PLANE", DefaultControlPlane), "control plane URL (MCPGATE_CONTROL_PLANE)")
	fs.StringVar(&a.adminKey, "admin-key", "", "admin API key (default: $MCPGATE_ADMIN_KEY, else ./.mcpgate/admin-key)")
	fs.StringVar(&a.output, "o", "table", "output format: table or json")
	fs.DurationVar(&a.timeout, "timeout", 30*time.Second, "time limit for the command")
}

// admin holds the Connect clients of the admin API.
type admin struct {
	servers     configv1connect.ServerServiceClient
	principals  configv1connect.PrincipalServiceClient
	groups      configv1connect.GroupServiceClient
	virtual     configv1connect.VirtualServerServiceClient
	keys        configv1connect.KeyServiceClient
	idps        configv1connect.IdentityProviderServiceClient
	connections vaultv1connect.ConnectionServiceClient
	vault       vaultv1connect.VaultServiceClient
	out         *printer
}

func (a *adminFlags) connect(io stdio) (*admin, error) {
	if a.output != "table" && a.output != "json" {
		return nil, fmt.Errorf("%w: -o %q: want table or json", errUsage, a.output)
	}
	key := a.adminKey
	if key == "" {
		key = io.env("MCPGATE_ADMIN_KEY", "")
	}
	if key == "" {
		if b, err := os.ReadFile(devAdminKeyFile); err == nil {
			key = strings.TrimSpace(string(b))
		}
	}
	base := strings.TrimRight(a.controlPlane, "/")
	opts := connect.WithClientOptions(connect.WithInterceptors(bearer(key)))
	return newAdmin(base, &http.Client{}, opts, &printer{w: io.out, json: a.output == "json"}), nil
}

func newAdmin(base string, hc *http.Client, opts connect.ClientOption, p *printer) *admin {
	return &admin{
		servers:     configv1connect.NewServerServiceClient(hc, base, opts),
		principals:  configv1connect.NewPrincipalServiceClient(hc, base, opts),
		groups:      configv1connect.NewGroupServiceClient(hc, base, opts),
		virtual:     configv1connect.NewVirtualServerServiceClient(hc, base, opts),
		keys:        configv1connect.NewKeyServiceClient(hc, base, opts),
		idps:        configv1connect.NewIdentityProviderServiceClient(hc, base, opts),
		connections: vaultv1connect.NewConnectionServiceClient(hc, base, opts),
		vault:       vaultv1connect.NewVaultServiceClient(hc, base, opts),
		out:         p,
	}
}

func (a *admin) configClients() config.Clients {
	return config.Clients{Servers: a.servers, Principals: a.principals, Groups: a.groups, Keys: a.keys, IdentityProviders: a.idps, VirtualServers: a.virtual}
}

// bearer sends the admin key on every call.
func bearer(key string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if key != "" {
				req.Header().Set("Authorization", "Bearer "+key)
			}
			return next(ctx, req)
		}
	}
}

// adminCommand parses an admin command's flags and connects.
func adminCommand(ctx context.Context, name string, args []string, io stdio, extra func(*flag.FlagSet)) (*admin, []string, context.Context, context.CancelFunc, error) {
	fs := newFlagSet(name, io.err)
	var af adminFlags
	af.register(fs, io)
	if extra != nil {
		extra(fs)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	a, err := af.connect(io)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, af.timeout)
	return a, pos, ctx, cancel, nil
}

func cmdApply(ctx context.Context, args []string, io stdio) error {
	var file string
	a, pos, ctx, cancel, err := adminCommand(ctx, "apply", args, io, func(fs *flag.FlagSet) {
		fs.StringVar(&file, "f", "", "configuration file (YAML)")
	})
	if err != nil {
		return err
	}
	defer cancel()
	if file == "" || len(pos) != 0 {
		return fmt.Errorf("%w: mcpgate apply -f FILE", errUsage)
	}
	f, err := config.ParseFile(file)
	if err != nil {
		return err
	}
	res, err := config.Apply(ctx, a.configClients(), f, time.Now())
	a.out.applyResults(res)
	return err
}

func cmdServers(ctx context.Context, args []string, io stdio) error {
	sub, args := subcommand(args)
	a, pos, ctx, cancel, err := adminCommand(ctx, "servers "+sub, args, io, nil)
	if err != nil {
		return err
	}
	defer cancel()
	switch {
	case sub == "list" && len(pos) == 0:
		res, err := a.servers.ListServers(ctx, &configv1.ListServersRequest{})
		if err != nil {
			return err
		}
		a.out.servers(res.GetServers())
		return nil
	case sub == "get" && len(pos) == 1:
		res, err := a.servers.GetServer(ctx, &configv1.GetServerRequest{Name: pos[0]})
		if err != nil {
			return fmt.Errorf("server %q: %w", pos[0], err)
		}
		a.out.server(res.GetServer())
		return nil
	case sub == "delete" && len(pos) == 1:
		if _, err := a.servers.DeleteServer(ctx, &configv1.DeleteServerRequest{Name: pos[0]}); err != nil {
			return fmt.Errorf("server %q: %w", pos[0], err)
		}
		a.out.done("server %s deleted", pos[0])
		return nil
	}
	return fmt.Errorf("%w: mcpgate servers list | get NAME | delete NAME | add NAME --url URL [flags]", errUsage)
}

func cmdPrincipals(ctx context.Context, args []string, io stdio) error {
	sub, args := subcommand(args)
	a, pos, ctx, cancel, err := adminCommand(ctx, "principals "+sub, args, io, nil)
	if err != nil {
		return err
	}
	defer cancel()
	switch {
	case sub == "list" && len(pos) == 0:
		res, err := a.principals.ListPrincipals(ctx, &configv1.ListPrincipalsRequest{})
		if err != nil {
			return err
		}
		a.out.principals(res.GetPrincipals())
		return nil
	case sub == "get" && len(pos) == 1:
		res, err := a.principals.GetPrincipal(ctx, &configv1.GetPrincipalRequest{Name: pos[0]})
		if err != nil {
			return fmt.Errorf("principal %q: %w", pos[0], err)
		}
		a.out.principal(res.GetPrincipal(), res.GetEffectiveServers())
		return nil
	case sub == "delete" && len(pos) == 1:
		if _, err := a.principals.DeletePrincipal(ctx, &configv1.DeletePrincipalRequest{Name: pos[0]}); err != nil {
			return fmt.Errorf("principal %q: %w", pos[0], err)
		}
		a.out.done("principal %s deleted", pos[0])
		return nil
	}
	return fmt.Errorf("%w: mcpgate principals list | get NAME | delete NAME | create NAME [--servers a,b]", errUsage)
}

func cmdGroups(ctx context.Context, args []string, io stdio) error {
	sub, args := subcommand(args)
	a, pos, ctx, cancel, err := adminCommand(ctx, "groups "+sub, args, io, nil)
	if err != nil {
		return err
	}
	defer cancel()
	switch {
	case sub == "list" && len(pos) == 0:
		res, err := a.groups.ListGroups(ctx, &configv1.ListGroupsRequest{})
		if err != nil {
			return err
		}
		a.out.groups(res.GetGroups())
		return nil
	case sub == "get" && len(pos) == 1:
		res, err := a.groups.GetGroup(ctx, &configv1.GetGroupRequest{Name: pos[0]})
		if err != nil {
			return fmt.Errorf("group %q: %w", pos[0], err)
		}
		a.out.group(res)
		return nil
	case sub == "delete" && len(pos) == 1:
		if _, err := a.groups.DeleteGroup(ctx, &configv1.DeleteGroupRequest{Name: pos[0]}); err != nil {
			return fmt.Errorf("group %q: %w", pos[0], err)
		}
		a.out.done("group %s deleted", pos[0])
		return nil
	}
	return fmt.Errorf("%w: mcpgate groups list | get NAME | delete NAME | create NAME [--servers a,b]", errUsage)
}

func cmdKeys(ctx context.Context, args []string, io stdio) error {
	sub, args := subcommand(args)
	var principal, name string
	var expires time.Duration
	a, pos, ctx, cancel, err := adminCommand(ctx, "keys "+sub, args, io, func(fs *flag.FlagSet) {
		fs.StringVar(&principal, "principal", "", "principal owning the key")
		if sub == "create" {
			fs.StringVar(&name, "name", "", "name of the key")
			fs.DurationVar(&expires, "expires", 0, "lifetime, e.g. 720h (default: no expiry)")
		}
	})
	if err != nil {
		return err
	}
	defer cancel()
	switch {
	case sub == "create" && len(pos) == 0 && principal != "":
		req := &configv1.CreateKeyRequest{Principal: principal, Name: name}
		if expires < 0 {
			return fmt.Errorf("%w: --expires must be positive", errUsage)
		}
		if expires > 0 {
			req.ExpireTime = timestamppb.New(time.Now().Add(expires))
		}
		res, err := a.keys.CreateKey(ctx, req)
		if err != nil {
			return err
		}
		a.out.createdKey(res)
		return nil
	case sub == "list" && len(pos) == 0:
		res, err := a.keys.ListKeys(ctx, &configv1.ListKeysRequest{Principal: principal})
		if err != nil {
			return err
		}
		a.out.keys(res.GetKeys())
		return nil
	case sub == "revoke" && len(pos) == 1:
		res, err := a.keys.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: pos[0]})
		if err != nil {
			return fmt.Errorf("key %q: %w", pos[0], err)
		}
		if a.out.json {
			a.out.message(res)
			return nil
		}
		a.out.done("key %s revoked", res.GetApiKey().GetId())
		return nil
	}
	return fmt.Errorf("%w: mcpgate keys create --principal P [--name N] [--expires 720h] | list [--principal P] | revoke ID", errUsage)
}

func cmdConnections(ctx context.Context, args []string, io stdio) error {
	sub, args := subcommand(args)
	var principal, server string
	a, pos, ctx, cancel, err := adminCommand(ctx, "connections "+sub, args, io, func(fs *flag.FlagSet) {
		fs.StringVar(&principal, "principal", "", "principal")
		fs.StringVar(&server, "server", "", "server")
	})
	if err != nil {
		return err
	}
	defer cancel()
	switch {
	case sub == "list" && len(pos) == 0:
		res, err := a.connections.ListConnections(ctx, &vaultv1.ListConnectionsRequest{Principal: principal, Server: server})
		if err != nil {
			return err
		}
		a.out.connections(res.GetConnections())
		return nil
	case sub == "revoke" && len(pos) == 0 && principal != "" && server != "":
		res, err := a.connections.RevokeConnection(ctx, &vaultv1.RevokeConnectionRequest{Principal: principal, Server: server})
		if err != nil {
			return err
		}
		if a.out.json {
			a.out.message(res)
			return nil
		}
		upstream := "the upstream was not told (no revocation endpoint or it refused)"
		if res.GetUpstreamRevoked() {
			upstream = "the upstream revoked its grant too"
		}
		a.out.done("connection %s/%s revoked; %s", principal, server, upstream)
		return nil
	}
	return fmt.Errorf("%w: mcpgate connections list [--principal P] [--server S] | revoke --principal P --server S", errUsage)
}

func cmdVault(ctx context.Context, args []string, io stdio) error {
	sub, args := subcommand(args)
	if sub == "add-key" {
		return cmdVaultAddKey(args, io)
	}
	var promote uint
	a, pos, ctx, cancel, err := adminCommand(ctx, "vault "+sub, args, io, func(fs *flag.FlagSet) {
		fs.UintVar(&promote, "promote", 0, "promote this key id (from `mcpgate vault add-key`) instead of adding a new key")
	})
	if err != nil {
		return err
	}
	defer cancel()
	if sub != "rotate-key" || len(pos) != 0 {
		return fmt.Errorf("%w: mcpgate vault rotate-key [--promote ID] | add-key --keyset FILE", errUsage)
	}
	res, err := a.vault.RotateKey(ctx, &vaultv1.RotateKeyRequest{PromoteKeyId: uint32(promote)})
	if err != nil {
		return err
	}
	if a.out.json {
		a.out.message(res)
		return nil
	}
	a.out.done("vault key rotated: new primary key %d, %d records re-encrypted", res.GetPrimaryKeyId(), res.GetRecordsResealed())
	return nil
}

// cmdVaultAddKey adds a key that opens but does not seal yet to a keyset
// file, offline: step one of rotating with several control-plane replicas.
func cmdVaultAddKey(args []string, io stdio) error {
	fs := newFlagSet("vault add-key", io.err)
	var file string
	fs.StringVar(&file, "keyset", "", "the keyset file every control-plane replica uses")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if file == "" || len(pos) != 0 {
		return fmt.Errorf("%w: mcpgate vault add-key --keyset FILE", errUsage)
	}
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("keyset %s: %w", file, err)
	}
	kr, err := vault.LoadOrCreate(file)
	if err != nil {
		return err
	}
	id, err := kr.AddKey()
	if err != nil {
		return err
	}
	fmt.Fprintf(io.out, "added key %d to %s (not primary yet)\nGive this keyset to every control-plane replica, restart them, then run:\n  mcpgate vault rotate-key --promote %d\n", id, file, id)
	return nil
}

// subcommand splits "list ..." off args.
func subcommand(args []string) (string, []string) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", args
	}
	return args[0], args[1:]
}

func cmdVirtualServers(ctx context.Context, args []string, io stdio) error {
	sub, args := subcommand(args)
	a, pos, ctx, cancel, err := adminCommand(ctx, "virtual-servers "+sub, args, io, nil)
	if err != nil {
		return err
	}
	defer cancel()
	switch {
	case sub == "list" && len(pos) == 0:
		res, err := a.virtual.ListVirtualServers(ctx, &configv1.ListVirtualServersRequest{})
		if err != nil {
			return err
		}
		a.out.virtualServers(res.GetVirtualServers())
		return nil
	case sub == "get" && len(pos) == 1:
		res, err := a.virtual.GetVirtualServer(ctx, &configv1.GetVirtualServerRequest{Name: pos[0]})
		if err != nil {
			return fmt.Errorf("virtual server %q: %w", pos[0], err)
		}
		a.out.virtualServer(res.GetVirtualServer())
		return nil
	case sub == "delete" && len(pos) == 1:
		if _, err := a.virtual.DeleteVirtualServer(ctx, &configv1.DeleteVirtualServerRequest{Name: pos[0]}); err != nil {
			return fmt.Errorf("virtual server %q: %w", pos[0], err)
		}
		a.out.done("virtual server %s deleted", pos[0])
		return nil
	}
	return fmt.Errorf("%w: mcpgate virtual-servers list | get NAME | delete NAME | add NAME --members a,b", errUsage)
}
