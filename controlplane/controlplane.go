// Package controlplane wires the store and the Connect services into one
// HTTP handler.
package controlplane

import (
	"log/slog"
	"net/http"

	"connectrpc.com/connect"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/controlplane/authorizeapi"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Config configures the control plane's handler.
type Config struct {
	// DataPlaneTokens are the shared secrets data planes present to call
	// AuthorizeService (Authorization: Bearer <token>).
	DataPlaneTokens []string
}

// NewHandler returns the control plane's HTTP handler: the admin services
// (admin API key required) and AuthorizeService (data-plane credential
// required).
func NewHandler(st *store.Store, cfg Config, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	admin := configapi.New(st, log)
	adminOpts := connect.WithInterceptors(configapi.NewAdminAuth(st))
	mux.Handle(configv1connect.NewServerServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewPrincipalServiceHandler(admin, adminOpts))
	mux.Handle(configv1connect.NewKeyServiceHandler(admin, adminOpts))
	mux.Handle(vaultv1connect.NewConnectionServiceHandler(admin, adminOpts))
	authz := authorizeapi.New(st, log)
	mux.Handle(authorizeapi.NewHandler(authz, cfg.DataPlaneTokens))
	return mux
}
