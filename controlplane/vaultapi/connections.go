package vaultapi

import (
	"context"
	"errors"

	"google.golang.org/protobuf/proto"

	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Connections implements ConnectionService: the admin view of the vault's
// upstream grants (list their metadata, revoke one). Mount it behind admin
// authentication. Names, errors and audit lines are the admin API's
// (configapi's), so they read the same as every other admin service.
type Connections struct {
	admin   *configapi.Service
	st      *store.Store
	revoker configapi.Revoker
}

var _ vaultv1connect.ConnectionServiceHandler = (*Connections)(nil)

// NewConnections returns the service. With a revoker, revoking a
// connection also revokes the grant at the upstream (RFC 7009, when the
// upstream offers it); without one, only the stored grant is deleted.
func NewConnections(admin *configapi.Service, st *store.Store, revoker configapi.Revoker) *Connections {
	return &Connections{admin: admin, st: st, revoker: revoker}
}

// ListConnections returns connection metadata, never a token.
func (c *Connections) ListConnections(ctx context.Context, req *vaultv1.ListConnectionsRequest) (*vaultv1.ListConnectionsResponse, error) {
	out := &vaultv1.ListConnectionsResponse{}
	for _, g := range c.st.Grants() {
		cn := g.Conn
		if req.GetPrincipal() != "" && cn.GetPrincipal() != req.GetPrincipal() {
			continue
		}
		if req.GetServer() != "" && cn.GetServer() != req.GetServer() {
			continue
		}
		out.Connections = append(out.Connections, proto.CloneOf(cn))
	}
	return out, nil
}

// RevokeConnection deletes the stored grant and, with a revoker, revokes it
// at the upstream; the gateway tokens derived from it end too.
func (c *Connections) RevokeConnection(ctx context.Context, req *vaultv1.RevokeConnectionRequest) (*vaultv1.RevokeConnectionResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, configapi.StoreTimeout)
	defer cancel()
	upstream, err := c.revoke(ctx, req)
	c.admin.Audit(ctx, "revoke", "connection", req.GetPrincipal()+"/"+req.GetServer(), err)
	if err != nil {
		return nil, err
	}
	return &vaultv1.RevokeConnectionResponse{UpstreamRevoked: upstream}, nil
}

func (c *Connections) revoke(ctx context.Context, req *vaultv1.RevokeConnectionRequest) (bool, error) {
	if err := configapi.ValidName("principal", req.GetPrincipal()); err != nil {
		return false, c.admin.ConnectError(ctx, err)
	}
	if err := configapi.ValidName("server", req.GetServer()); err != nil {
		return false, c.admin.ConnectError(ctx, err)
	}
	if _, ok := c.st.Grant(req.GetPrincipal(), req.GetServer()); !ok {
		return false, c.admin.ConnectError(ctx, configapi.NotFound("connection"))
	}
	if c.revoker != nil {
		upstream, err := c.revoker.Revoke(ctx, req.GetPrincipal(), req.GetServer())
		if errors.Is(err, store.ErrNotFound) {
			err = configapi.NotFound("connection")
		}
		if err != nil {
			return false, c.admin.ConnectError(ctx, err)
		}
		// Revoke waited for its delete to reach the cache.
		c.admin.RevokeTokens(ctx, req.GetPrincipal(), "", req.GetServer())
		return upstream, nil
	}
	rev, err := c.st.DeleteGrant(ctx, req.GetPrincipal(), req.GetServer(), 0)
	if errors.Is(err, store.ErrNotFound) {
		err = configapi.NotFound("connection")
	}
	if err != nil {
		return false, c.admin.ConnectError(ctx, err)
	}
	c.admin.Settle(ctx, rev)
	c.admin.RevokeTokens(ctx, req.GetPrincipal(), "", req.GetServer())
	return false, nil
}
