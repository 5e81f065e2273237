package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
	"github.com/mcpgate/mcpgate/controlplane"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/dataplane/proxyrun"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/devetcd"
	"github.com/mcpgate/mcpgate/internal/oauthdemo"
	"github.com/mcpgate/mcpgate/internal/oidcdemo"
	"github.com/mcpgate/mcpgate/ops/health"
	"github.com/mcpgate/mcpgate/ops/httpserver"
)

// devConfig is `mcpgate dev`'s configuration.
type devConfig struct {
	ConfigFile  string
	DataDir     string
	Listen      string
	AdminListen string
	PublicURL   string
	// AdminKey pins the admin key (MCPGATE_ADMIN_KEY).
	AdminKey string
	// VaultKeyset is the vault keyset JSON (MCPGATE_VAULT_KEYSET), else a
	// file in the data directory.
	VaultKeyset string
	// DataPlaneToken (MCPGATE_DATAPLANE_TOKEN), else a file in the data dir.
	DataPlaneToken string
	// Limits bound the data plane's upstream exchanges.
	Limits proxyrun.Limits
}

// Files `mcpgate dev` keeps in its data directory, all 0600.
const (
	adminKeyFile = "admin-key"
	demoKeyFile  = "demo-key"
	dpTokenFile  = "dataplane-token"
	vaultKeyset  = "vault-keyset.json"
	demoRoute    = "echo"
	notesRoute   = "notes"
	// teamRoute is the demo virtual server (members echo and notes).
	teamRoute      = "team"
	demoPrincipal  = "demo"
	shutdownBudget = 2500 * time.Millisecond
)

func cmdDev(ctx context.Context, args []string, io stdio) error {
	fs := newFlagSet("dev", io.err)
	var cfg devConfig
	var lf logFlags
	lf.register(fs)
	fs.StringVar(&cfg.ConfigFile, "config", "", "configuration file to apply at start (default: a demo route)")
	fs.StringVar(&cfg.DataDir, "data-dir", ".mcpgate", "data directory (etcd data, keys)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "public (MCP) listener")
	fs.StringVar(&cfg.AdminListen, "admin-listen", "127.0.0.1:8081", "control plane (admin API) listener")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "public base URL (default: http://<listen>, or the config's public_url)")
	proxyrun.RegisterLimitsFlags(fs, &cfg.Limits)
	warnings, err := parseRun(fs, args, io)
	if err != nil {
		return err
	}
	cfg.AdminKey = io.env("MCPGATE_ADMIN_KEY", "")
	cfg.VaultKeyset = io.env("MCPGATE_VAULT_KEYSET", "")
	cfg.DataPlaneToken = io.env("MCPGATE_DATAPLANE_TOKEN", "")
	log, err := lf.logger(io.err)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	return runDev(ctx, cfg, io, log)
}

// runDev runs etcd, the control plane, the data plane and (without a
// config file) the demo upstream until ctx ends.
func runDev(ctx context.Context, cfg devConfig, io stdio, log *slog.Logger) (err error) {
	var file *config.File
	if cfg.ConfigFile != "" {
		if file, err = config.ParseFile(cfg.ConfigFile); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}

	// Shutdown runs in reverse order of start-up, on a budget that ends
	// well within 5 s of the signal.
	var stops []func(context.Context)
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownBudget)
		defer cancel()
		for i := len(stops) - 1; i >= 0; i-- {
			t0 := time.Now()
			stops[i](sctx)
			log.Debug("stopped", slog.Int("step", i), slog.Duration("took", time.Since(t0)))
		}
	}()

	cli, stopEtcd, err := devetcd.Start(ctx, dir)
	if err != nil {
		return err
	}
	stops = append(stops, func(context.Context) { stopEtcd() })
	kr, err := vault.Load(cfg.VaultKeyset, filepath.Join(dir, vaultKeyset))
	if err != nil {
		return err
	}
	st := store.New(cli, kr, log)
	stopStore, err := startStore(ctx, st, 30*time.Second, log)
	if err != nil {
		return fmt.Errorf("store cache: %w", err)
	}
	stops = append(stops, stopStore)

	newAdminKey, err := configapi.EnsureAdmin(ctx, st, cfg.AdminKey)
	if err != nil {
		return fmt.Errorf("admin key: %w", err)
	}
	adminKey, err := devAdminKey(dir, cfg.AdminKey, newAdminKey)
	if err != nil {
		return err
	}
	dpToken := cfg.DataPlaneToken
	if dpToken == "" {
		if dpToken, err = loadOrCreateSecret(filepath.Join(dir, dpTokenFile), configapi.NewKey); err != nil {
			return err
		}
	}

	// The demo upstream stops after the data plane in front of it.
	var up *demo.Upstream
	if file == nil {
		if up, err = demo.Start("127.0.0.1:0", log); err != nil {
			return err
		}
		stops = append(stops, func(c context.Context) { logErr(log, up.Close(c)) })
	}

	// /healthz and /readyz on both listeners; both planes share the
	// in-process cache, so one readiness answers for both.
	ready := health.NewChecker(health.ControlPlane(cacheHealth(st)))
	// signin.api_key: false in the config file switches key sign-in off.
	ocfg := oauth.Config{KeySigninOff: file != nil && file.SigninAPIKey != nil && !*file.SigninAPIKey}
	control, err := httpserver.Listen(cfg.AdminListen, health.Wrap(controlplane.NewHandler(st, controlplane.Config{DataPlaneTokens: []string{dpToken}, Keyring: kr, OAuth: ocfg}, log), ready))
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- control.Serve() }()
	stops = append(stops, func(c context.Context) { logErr(log, control.Shutdown(c)) })

	publicURL := cfg.PublicURL
	if publicURL == "" && file != nil {
		publicURL = file.PublicURL
	}
	pub, err := httpserver.Listen(cfg.Listen, nil)
	if err != nil {
		return err
	}
	if publicURL == "" {
		publicURL = "http://" + loopbackAddr(pub.Addr())
	}
	// One spelling everywhere (wire.PublicBase), so the demo provider's
	// redirect URI is the one the gateway sends; an invalid URL is refused
	// by the data plane below.
	if b, err := wire.PublicBase(publicURL); err == nil {
		publicURL = b
	}
	proxy, err := proxyrun.Handler(proxyrun.Config{
		PublicURL:        publicURL,
		ControlPlaneURLs: []string{"http://" + loopbackAddr(control.Addr())},
		DataPlaneToken:   dpToken,
		Limits:           cfg.Limits,
	}, log)
	if err != nil {
		_ = pub.Close()
		return err
	}
	pub.SetHandler(health.Wrap(proxy, ready))
	pubCtx, pubCancel := context.WithCancel(context.WithoutCancel(ctx))
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		if err := proxyrun.Serve(pubCtx, pub, proxy); err != nil {
			errc <- err
		}
	}()
	stops = append(stops, func(c context.Context) {
		pubCancel()
		select {
		case <-pubDone:
		case <-c.Done():
		}
	})

	controlURL := "http://" + loopbackAddr(control.Addr())
	adm := newAdmin(controlURL, &http.Client{}, connect.WithClientOptions(connect.WithInterceptors(bearer(adminKey))), &printer{w: io.out})
	var applied []config.Result
	var demoKey, demoIdPIssuer string
	if file != nil {
		applied, err = config.Apply(ctx, adm.configClients(), file, time.Now())
		if err != nil {
			return fmt.Errorf("apply %s: %w", cfg.ConfigFile, err)
		}
	} else {
		if demoKey, err = loadOrCreateSecret(filepath.Join(dir, demoKeyFile), configapi.NewKey); err != nil {
			return err
		}
		notes, err := oauthdemo.Start(publicURL+"/oauth/callback", log)
		if err != nil {
			return err
		}
		stops = append(stops, func(c context.Context) { logErr(log, notes.Close(c)) })
		// The demo identity provider (in memory: a new client secret per run).
		idpSecret := configapi.NewKey()
		idp, err := oidcdemo.Start(oidcdemo.Config{Log: log, Clients: []oidcdemo.Client{{
			ID: demoIdPClient, Secret: idpSecret, RedirectURIs: []string{publicURL + wire.IdPCallbackPath},
		}}})
		if err != nil {
			return err
		}
		stops = append(stops, func(context.Context) { logErr(log, idp.Close()) })
		demoIdPIssuer = idp.Issuer()
		dc := demoConfig(up.URL, notes.Server(notesRoute), demoKey)
		addDemoIdP(dc, idp.Issuer(), idpSecret)
		if _, err = config.Apply(ctx, adm.configClients(), dc, time.Now()); err != nil {
			return fmt.Errorf("demo setup: %w", err)
		}
	}

	printBanner(io, banner{
		dir: dir, cwd: cwd, publicURL: publicURL, listen: pub.Addr(), control: controlURL,
		newAdminKey: newAdminKey, adminKeyPinned: cfg.AdminKey != "", demoKey: demoKey,
		configFile: cfg.ConfigFile, applied: applied, idpIssuer: demoIdPIssuer,
	})
	log.Info("mcpgate dev ready", slog.String("public_url", publicURL), slog.String("control_plane", controlURL))

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-errc:
		if err == nil {
			err = errors.New("listener stopped")
		}
		return err
	}
}

// loopbackAddr turns a wildcard listen address (0.0.0.0:8080, [::]:8080)
// into one this machine can dial (127.0.0.1:8080).
func loopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

func logErr(log *slog.Logger, err error) {
	if err != nil {
		log.Warn("shutdown", slog.Any("err", err))
	}
}

// devAdminKey returns the admin key the dev process uses itself, and keeps
// the data directory's admin-key file current.
func devAdminKey(dir, pinned, created string) (string, error) {
	path := filepath.Join(dir, adminKeyFile)
	switch {
	case pinned != "":
		return pinned, nil
	case created != "":
		if err := writeFile0600(path, []byte(created+"\n")); err != nil {
			return "", fmt.Errorf("write admin key: %w", err)
		}
		return created, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("an admin key exists but %s is unreadable (set MCPGATE_ADMIN_KEY): %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// loadOrCreateSecret reads a secret file, creating it (0600) from gen.
func loadOrCreateSecret(path string, gen func() string) (string, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil && strings.TrimSpace(string(b)) != "":
		return strings.TrimSpace(string(b)), nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	v := gen()
	if err := writeFile0600(path, []byte(v+"\n")); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return v, nil
}

// demoConfig is what `mcpgate dev` applies without a config file.
func demoConfig(upstreamURL string, notes *configv1.McpServer, key string) *config.File {
	return &config.File{
		Servers: []*configv1.McpServer{{
			Name:        demoRoute,
			Url:         upstreamURL,
			Transport:   configv1.Transport_TRANSPORT_HTTP,
			AuthType:    configv1.AuthType_AUTH_TYPE_NONE,
			Description: "mcpgate demo: tools echo and countdown",
		}, notes},
		Principals: []*configv1.Principal{{
			Name:        demoPrincipal,
			Kind:        configv1.PrincipalKind_PRINCIPAL_KIND_USER,
			Role:        configv1.Role_ROLE_MEMBER,
			Servers:     []string{demoRoute, notesRoute, teamRoute},
			DisplayName: "Demo user",
		}},
		VirtualServers: []*configv1.VirtualServer{{
			Name:        teamRoute,
			Description: "mcpgate demo: echo and notes as one server",
			Members:     []*configv1.VirtualServerMember{{Server: demoRoute}, {Server: notesRoute}},
		}},
		Keys: []config.Key{{Principal: demoPrincipal, Name: "demo", Value: key}},
	}
}

// The demo identity provider's client at the gateway.
const (
	demoIdPName   = "demo-idp"
	demoIdPClient = "mcpgate-dev"
)

// addDemoIdP configures the demo identity provider ("Demo IdP", people
// created at first sign-in) and the two groups its people are in: the
// provider asserts ada in release (granted echo and notes) and bob in
// readers (granted echo), so each person's grants come from their group.
// The gateway also trusts the ID-JAGs it issues (trust_id_jag), so an agent
// with no browser can exchange a demo person's ID token for one and redeem
// it at /token (docs/identity.md, "ID-JAG with the demo IdP").
func addDemoIdP(f *config.File, issuer, secret string) {
	f.IdentityProviders = append(f.IdentityProviders, &configv1.IdentityProvider{
		Name: demoIdPName, DisplayName: "Demo IdP", Issuer: issuer, ClientId: demoIdPClient, ClientSecret: secret,
		CreatePrincipals: true, TrustIdJag: true,
	})
	f.Groups = append(f.Groups,
		&configv1.Group{Name: demoGroupReaders, Servers: []string{demoRoute}, Description: "Demo IdP people who may read (bob)"},
		&configv1.Group{Name: demoGroupRelease, Servers: []string{demoRoute, notesRoute}, Description: "Demo IdP release managers (ada)"},
	)
}

// The demo identity provider's groups (oidcdemo asserts them).
const (
	demoGroupRelease = "release"
	demoGroupReaders = "readers"
)

type banner struct {
	dir, cwd, publicURL, listen, control string
	newAdminKey                          string
	adminKeyPinned                       bool
	demoKey                              string
	configFile                           string
	applied                              []config.Result
	idpIssuer                            string
}

func printBanner(io stdio, b banner) {
	w := io.out
	fmt.Fprintf(w, "mcpgate dev\n")
	fmt.Fprintf(w, "  data directory: %s (etcd, vault keyset, keys; restarts keep every object)\n", b.dir)
	fmt.Fprintf(w, "  gateway (MCP):  %s  (listening on %s)\n", b.publicURL, b.listen)
	fmt.Fprintf(w, "  control plane:  %s  (admin API, Connect)\n", b.control)
	switch {
	case b.newAdminKey != "":
		fmt.Fprintf(w, "\nNew admin key (shown once, also saved to %s):\n  %s\n", filepath.Join(b.dir, adminKeyFile), b.newAdminKey)
	case b.adminKeyPinned:
		fmt.Fprintf(w, "  admin key:      from MCPGATE_ADMIN_KEY\n")
	default:
		fmt.Fprintf(w, "  admin key:      in %s\n", filepath.Join(b.dir, adminKeyFile))
	}
	if b.configFile != "" {
		fmt.Fprintf(w, "\nApplied %s:\n", b.configFile)
		for _, r := range b.applied {
			fmt.Fprintf(w, "  %s %s: %s\n", r.Kind, r.Name, r.Outcome)
			if r.Key != "" {
				fmt.Fprintf(w, "    key: %s (shown once)\n", r.Key)
			}
		}
	}
	if b.demoKey != "" {
		route := wire.ResourceURL(b.publicURL, demoRoute)
		fmt.Fprintf(w, "\nDemo route %q (tools echo, countdown) for principal %q, key %s\n", demoRoute, demoPrincipal, b.demoKey)
		fmt.Fprintf(w, "\nTry it:\n")
		fmt.Fprintf(w, "  curl -sS %s -H 'X-MCPGate-API-Key: %s' -H 'Content-Type: application/json' \\\n", route, b.demoKey)
		fmt.Fprintf(w, "    -H 'Accept: application/json, text/event-stream' \\\n")
		fmt.Fprintf(w, "    -d '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"curl\",\"version\":\"1\"}}}'\n")
		fmt.Fprintf(w, "  claude mcp add --transport http %s %s --header \"X-MCPGate-API-Key: %s\"\n", demoRoute, route, b.demoKey)
		notes := wire.ResourceURL(b.publicURL, notesRoute)
		fmt.Fprintf(w, "\nDemo route %q: an upstream that demands OAuth from a built-in demo authorization server.\n", notesRoute)
		fmt.Fprintf(w, "Connect Claude Code with no key at all; it gets a 401 challenge and opens your browser:\n")
		fmt.Fprintf(w, "  claude mcp add --transport http %s %s\n", notesRoute, notes)
		fmt.Fprintf(w, "  (sign in by pasting the demo key above, approve, then approve at the demo provider)\n")
		if b.idpIssuer != "" {
			fmt.Fprintf(w, "Or choose \"Sign in with Demo IdP\" (a built-in OpenID provider at %s):\n", b.idpIssuer)
			fmt.Fprintf(w, "  %s (group %s: echo and notes) or %s (group %s: echo), password %q\n", oidcdemo.Ada, demoGroupRelease, oidcdemo.Bob, demoGroupReaders, oidcdemo.Password)
			fmt.Fprintf(w, "  (people are created at first sign-in; their grants come from the groups the IdP asserts: mcpgate groups list)\n")
		}
		fmt.Fprintf(w, "Your connections: %s/connections\n", b.publicURL)
		fmt.Fprintf(w, "\nAll your servers as one: %s (tools named echo__echo, notes__…), and the virtual server %q (echo and notes) at %s:\n",
			wire.ResourceURL(b.publicURL, ""), teamRoute, wire.ResourceURL(b.publicURL, teamRoute))
		fmt.Fprintf(w, "  claude mcp add --transport http all %s\n", wire.ResourceURL(b.publicURL, ""))
		fmt.Fprintf(w, "  claude mcp add --transport http %s %s\n", teamRoute, wire.ResourceURL(b.publicURL, teamRoute))
	}
	rel, err := filepath.Rel(b.cwd, b.dir)
	if b.control == DefaultControlPlane && err == nil && rel == filepath.Dir(devAdminKeyFile) {
		fmt.Fprintf(w, "\nAdmin commands work from this directory without flags, e.g.: mcpgate servers list\n")
	} else {
		fmt.Fprintf(w, "\nAdmin commands: MCPGATE_CONTROL_PLANE=%s MCPGATE_ADMIN_KEY=$(cat %s) mcpgate servers list\n",
			b.control, filepath.Join(b.dir, adminKeyFile))
	}
	fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
}
