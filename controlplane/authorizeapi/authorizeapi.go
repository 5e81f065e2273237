// Package authorizeapi implements AuthorizeService, called by data planes.
package authorizeapi

import (
	"log/slog"

	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Service implements AuthorizeService over the store's cache.
type Service struct {
	authorizev1connect.UnimplementedAuthorizeServiceHandler

	st  *store.Store
	log *slog.Logger
}

// New returns the AuthorizeService handler.
func New(st *store.Store, log *slog.Logger) *Service {
	return &Service{st: st, log: log}
}
