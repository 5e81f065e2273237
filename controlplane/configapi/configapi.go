// Package configapi implements the admin services: servers, principals, API
// keys and vault connections.
package configapi

import (
	"log/slog"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Service implements the admin services over the store.
type Service struct {
	configv1connect.UnimplementedServerServiceHandler
	configv1connect.UnimplementedPrincipalServiceHandler
	configv1connect.UnimplementedKeyServiceHandler
	vaultv1connect.UnimplementedConnectionServiceHandler

	st  *store.Store
	log *slog.Logger
}

// New returns the admin services.
func New(st *store.Store, log *slog.Logger) *Service {
	return &Service{st: st, log: log}
}
