// Package controlplane wires the store and the Connect services into one
// HTTP handler.
package controlplane

import (
	"log/slog"
	"net/http"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorizeapi"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/limits"
	"github.com/mcpgate/mcpgate/controlplane/oauth"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/controlplane/vaultapi"
)

// Config configures the control plane's handler.
type Config struct {
	// DataPlaneTokens are the shared secrets data planes present to call
	// AuthorizeService (Authorization: Bearer <token>).
	DataPlaneTokens []string
	// Keyring seals the vault; with it the VaultService (key rotation) is
	// served.
	Keyring *vault.Keyring
	// Grants configures obtaining upstream credentials (vault refresh).
	Grants grants.Config
	// HandlerOptions are given to every Connect service, outermost first
	// (the metrics interceptor).
	HandlerOptions []connect.HandlerOption
	// AdminHandlerOptions are given to the admin services only, after
	// HandlerOptions (the admin audit interceptor: AuthorizeService is
	// called by data planes, and its writes, grant refreshes, are audited by
	// grants itself through Grants.Audit).
	AdminHandlerOptions []connect.HandlerOption
	// OAuth configures the authorization server (rate limits, lifetimes);
	// its Grants is always the vault's refresher.
	OAuth oauth.Config
	// DecisionCacheMaxAge is the longest a data plane may reuse an ALLOW
	// (authorizeapi.DefaultDecisionCacheMaxAge when zero; negative: never).
	DecisionCacheMaxAge time.Duration
}

// NewHandler returns the control plane's HTTP handler: the admin services
// (admin API key required) and AuthorizeService (data-plane credential
// required).
func NewHandler(st *store.Store, cfg Config, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	vaultGrants := grants.New(st, cfg.Grants, log)
	// Data planes relay the OAuth authorization server's public paths here
	// (see dataplane's relay), so every replica serves every step of a flow.
	ocfg := cfg.OAuth
	ocfg.Grants = vaultGrants
	if ocfg.Audit == nil {
		ocfg.Audit = cfg.Grants.Audit
	}
	as := oauth.New(st, ocfg, log)
	// One rate limiter per replica: Authorize counts with it, the admin
	// API reports its usage.
	limiter := limits.New(st, log)
	admin := configapi.New(st, log, configapi.WithRevoker(vaultGrants), configapi.WithTokenRevoker(as), configapi.WithLimiter(limiter))
	adminOpts := connect.WithHandlerOptions(append(append(slices.Clone(cfg.HandlerOptions), cfg.AdminHandlerOptions...), connect.WithInterceptors(configapi.NewAdminAuth(st)))...)
	mux.Handle(configv1connect.NewServerServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewPrincipalServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewGroupServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewVirtualServerServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewKeyServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewIdentityProviderServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewPolicyServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewExplainServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewRateLimitServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewToolPinServiceHandler(admin, adminOpts))
	mux.Handle(vaultv1connect.NewConnectionServiceHandler(vaultapi.NewConnections(admin, st, vaultGrants), adminOpts))
	if cfg.Keyring != nil {
		mux.Handle(vaultv1connect.NewVaultServiceHandler(vaultapi.New(cfg.Keyring, st, log), adminOpts))
	}
	maxAge := cfg.DecisionCacheMaxAge
	if maxAge == 0 {
		maxAge = authorizeapi.DefaultDecisionCacheMaxAge
	}
	authz := authorizeapi.New(st, log, authorizeapi.WithGrants(vaultGrants), authorizeapi.WithTokenExchange(grants.NewTokenExchange(st, cfg.Grants, log)),
		authorizeapi.WithLimiter(limiter), authorizeapi.WithAudit(cfg.Grants.Audit), authorizeapi.WithDecisionCacheMaxAge(maxAge))
	mux.Handle(authorizeapi.NewHandler(authz, cfg.DataPlaneTokens, cfg.HandlerOptions...))
	mux.Handle(wire.RelayPrefix+"/", authorizeapi.RequireDataPlane(cfg.DataPlaneTokens, http.StripPrefix(wire.RelayPrefix, as)))
	return mux
}
