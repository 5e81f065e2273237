package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/mcpgate/mcpgate/controlplane"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/proxyrun"
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
}

func cmdControl(ctx context.Context, args []string, io stdio) error {
	fs := newFlagSet("control", io.err)
	var cfg controlConfig
	var lf logFlags
	var endpoints, tokens string
	lf.register(fs, io)
	fs.StringVar(&cfg.Listen, "listen", io.env("MCPGATE_LISTEN", "127.0.0.1:8081"), "control plane listener (admin API and AuthorizeService)")
	fs.StringVar(&endpoints, "etcd-endpoints", io.env("MCPGATE_ETCD_ENDPOINTS", ""), "comma-separated etcd client URLs")
	fs.StringVar(&cfg.EtcdCert, "etcd-cert", io.env("MCPGATE_ETCD_CERT", ""), "etcd client certificate (PEM)")
	fs.StringVar(&cfg.EtcdKey, "etcd-key", io.env("MCPGATE_ETCD_KEY", ""), "etcd client key (PEM)")
	fs.StringVar(&cfg.EtcdCA, "etcd-ca", io.env("MCPGATE_ETCD_CA", ""), "CA bundle for etcd's server certificate (PEM)")
	fs.StringVar(&cfg.EtcdUsername, "etcd-username", io.env("MCPGATE_ETCD_USERNAME", ""), "etcd user")
	fs.StringVar(&cfg.EtcdPassword, "etcd-password", "", "etcd password (default: $MCPGATE_ETCD_PASSWORD, the better place for it)")
	fs.StringVar(&cfg.VaultKeyset, "vault-keyset", io.env("MCPGATE_VAULT_KEYSET_FILE", ""), "vault keyset file (tink JSON), shared by every replica; or MCPGATE_VAULT_KEYSET with its contents")
	fs.StringVar(&tokens, "dataplane-token", "", "comma-separated tokens data planes present (default: $MCPGATE_DATAPLANE_TOKEN, the better place for it)")
	cfg.Ops.register(fs, io)
	cfg.Limits = registerLimitFlags(fs, io)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if cfg.EtcdPassword == "" {
		cfg.EtcdPassword = io.env("MCPGATE_ETCD_PASSWORD", "")
	}
	if tokens == "" {
		tokens = io.env("MCPGATE_DATAPLANE_TOKEN", "")
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
	if len(cfg.DataPlaneToken) == 0 && cfg.Ops.ClientCA == "" {
		return fmt.Errorf("%w: --dataplane-token (or MCPGATE_DATAPLANE_TOKEN) or --client-ca (mTLS) is required", errUsage)
	}
	if cfg.VaultKeyset == "" && cfg.VaultKeysetEnv == "" {
		return fmt.Errorf("%w: --vault-keyset FILE (or MCPGATE_VAULT_KEYSET) is required", errUsage)
	}
	log, err := lf.logger(io.err)
	if err != nil {
		return err
	}
	return runControl(ctx, cfg, io, log)
}

func etcdTLS(cfg controlConfig) (*tls.Config, error) {
	if cfg.EtcdCert == "" && cfg.EtcdKey == "" && cfg.EtcdCA == "" {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.EtcdCert != "" || cfg.EtcdKey != "" {
		c, err := tls.LoadX509KeyPair(cfg.EtcdCert, cfg.EtcdKey)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{c}
	}
	if cfg.EtcdCA != "" {
		pem, err := os.ReadFile(cfg.EtcdCA)
		if err != nil {
			return nil, fmt.Errorf("etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA %s: no PEM certificate", cfg.EtcdCA)
		}
		t.RootCAs = pool
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
	}, log)
	return ops.serve(ctx, cfg.Ops, cfg.Listen, h, log)
}

func cmdProxy(ctx context.Context, args []string, io stdio) error {
	fs := newFlagSet("proxy", io.err)
	var lf logFlags
	lf.register(fs, io)
	cfg := proxyrun.RegisterFlags(fs, io.env)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(io.err)
	if err != nil {
		return err
	}
	return proxyrun.Run(ctx, cfg(), log)
}
