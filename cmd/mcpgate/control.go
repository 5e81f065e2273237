package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/mcpgate/mcpgate/controlplane"
	"github.com/mcpgate/mcpgate/controlplane/authorizeapi"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/dataplane/proxyrun"
	"github.com/mcpgate/mcpgate/ops"
	"github.com/mcpgate/mcpgate/ops/tlsconfig"
)

// controlConfig is `mcpgate control`'s configuration.
type controlConfig struct {
	Listen         string
	EtcdEndpoints  []string
	EtcdCert       string
	EtcdKey        string
	EtcdCA         string
	EtcdUsername   string
	EtcdPassword   string
	VaultKeyset    string // file
	VaultKeysetEnv string // MCPGATE_VAULT_KEYSET contents
	DataPlaneToken []string
	AdminKey       string
	Ops            controlOps
	Limits         *limitFlags
	// DecisionCacheMaxAge is the longest a data plane may reuse an ALLOW.
	DecisionCacheMaxAge time.Duration
}

func cmdControl(ctx context.Context, args []string, io stdio) error {
	fs := newFlagSet("control", io.err)
	var cfg controlConfig
	var lf logFlags
	var endpoints, tokens string
	lf.register(fs)
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8081", "control plane listener (admin API and AuthorizeService)")
	fs.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated etcd client URLs")
	fs.StringVar(&cfg.EtcdCert, "etcd-cert", "", "etcd client certificate (PEM; re-read when it changes on disk)")
	fs.StringVar(&cfg.EtcdKey, "etcd-key", "", "etcd client key (PEM)")
	fs.StringVar(&cfg.EtcdCA, "etcd-ca", "", "CA bundle for etcd's server certificate (PEM)")
	fs.StringVar(&cfg.EtcdUsername, "etcd-username", "", "etcd user")
	fs.StringVar(&cfg.EtcdPassword, "etcd-password", "", "etcd password (the variable is the better place for it)")
	fs.StringVar(&cfg.VaultKeyset, "vault-keyset-file", "", "vault keyset file (tink JSON), shared by every replica; or MCPGATE_VAULT_KEYSET with its contents")
	ops.Deprecate(fs, "vault-keyset", "vault-keyset-file")
	fs.StringVar(&tokens, "dataplane-token", "", "comma-separated tokens data planes present (the variable is the better place for them)")
	fs.DurationVar(&cfg.DecisionCacheMaxAge, "decision-cache-max-age", authorizeapi.DefaultDecisionCacheMaxAge,
		"longest a data plane may reuse an ALLOW decision (bounded further by credential expiry); 0 disables reuse")
	cfg.Ops.register(fs)
	cfg.Limits = registerLimitFlags(fs)
	warnings, err := parseRun(fs, args, io)
	if err != nil {
		return err
	}
	cfg.EtcdEndpoints = proxyrun.SplitList(endpoints)
	cfg.DataPlaneToken = proxyrun.SplitList(tokens)
	cfg.VaultKeysetEnv = io.env("MCPGATE_VAULT_KEYSET", "")
	cfg.AdminKey = io.env("MCPGATE_ADMIN_KEY", "")
	if len(cfg.EtcdEndpoints) == 0 {
		return fmt.Errorf("%w: --etcd-endpoints (or MCPGATE_ETCD_ENDPOINTS) is required", errUsage)
	}
	if err := cfg.Ops.validate(); err != nil {
		return err
	}
	if err := cfg.Limits.validate(); err != nil {
		return err
	}
	if cfg.DecisionCacheMaxAge < 0 {
		return fmt.Errorf("%w: --decision-cache-max-age must not be negative (0 turns reuse off)", errUsage)
	}
	if len(cfg.DataPlaneToken) == 0 && cfg.Ops.ClientCA == "" {
		return fmt.Errorf("%w: --dataplane-token (or MCPGATE_DATAPLANE_TOKEN) or --client-ca (mTLS) is required", errUsage)
	}
	if cfg.VaultKeyset == "" && cfg.VaultKeysetEnv == "" {
		return fmt.Errorf("%w: --vault-keyset-file FILE (or MCPGATE_VAULT_KEYSET with its contents) is required", errUsage)
	}
	log, err := lf.logger(io.err)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	return runControl(ctx, cfg, io, log)
}

// etcdTLS is the etcd client's TLS configuration (nil: plaintext): the
// same tlsconfig.Client the data planes use, so a rotated client
// certificate is picked up without a restart.
func etcdTLS(cfg controlConfig) (*tls.Config, error) {
	if cfg.EtcdCert == "" && cfg.EtcdKey == "" && cfg.EtcdCA == "" {
		return nil, nil
	}
	t, err := tlsconfig.Client(cfg.EtcdCA, cfg.EtcdCert, cfg.EtcdKey)
	if err != nil {
		return nil, fmt.Errorf("etcd TLS: %w", err)
	}
	return t, nil
}

func runControl(ctx context.Context, cfg controlConfig, io stdio, log *slog.Logger) error {
	tlsCfg, err := etcdTLS(cfg)
	if err != nil {
		return err
	}
	cli, err := store.Dial(store.EtcdConfig{
		Endpoints: cfg.EtcdEndpoints,
		TLS:       tlsCfg,
		Username:  cfg.EtcdUsername,
		Password:  cfg.EtcdPassword,
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	kr, err := vault.Load(cfg.VaultKeysetEnv, cfg.VaultKeyset)
	if err != nil {
		return err
	}
	st := store.New(cli, kr, log, cfg.Limits.storeOptions()...)
	stopStore, err := startStore(ctx, st, time.Minute, log)
	if err != nil {
		return fmt.Errorf("store cache (is etcd reachable at %v?): %w", cfg.EtcdEndpoints, err)
	}
	defer stopStore(context.Background())
	newKey, err := configapi.EnsureAdmin(ctx, st, cfg.AdminKey)
	if err != nil {
		return fmt.Errorf("admin key: %w", err)
	}
	if newKey != "" {
		fmt.Fprintf(io.out, "New admin key (shown once; store it, e.g. as MCPGATE_ADMIN_KEY):\n  %s\n", newKey)
	}
	ops, err := newControlServer(ctx, cfg.Ops, st)
	if err != nil {
		return err
	}
	h := controlplane.NewHandler(st, controlplane.Config{
		DataPlaneTokens:     cfg.DataPlaneToken,
		Keyring:             kr,
		Grants:              grants.Config{OnRefresh: ops.metrics.RecordVaultRefresh, Audit: ops.audit},
		HandlerOptions:      ops.handlerOptions(),
		AdminHandlerOptions: ops.adminHandlerOptions(st),
		OAuth:               cfg.Limits.oauth,
		DecisionCacheMaxAge: decisionCacheMaxAge(cfg.DecisionCacheMaxAge),
	}, log)
	return ops.serve(ctx, cfg.Ops, cfg.Listen, h, log)
}

func cmdProxy(ctx context.Context, args []string, io stdio) error {
	fs := newFlagSet("proxy", io.err)
	var lf logFlags
	lf.register(fs)
	cfg := proxyrun.RegisterFlags(fs)
	warnings, err := parseRun(fs, args, io)
	if err != nil {
		return err
	}
	log, err := lf.logger(io.err)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	return proxyrun.Run(ctx, cfg(), log)
}

// decisionCacheMaxAge maps the flag to controlplane.Config: 0 there means
// the default, so the flag's 0 (never reuse) becomes negative.
func decisionCacheMaxAge(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
