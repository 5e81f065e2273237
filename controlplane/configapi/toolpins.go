package configapi

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// ListToolPins implements configv1connect.ToolPinServiceHandler: the
// server's pinned tools (approved digest, pending change) and its
// on_tool_change mode.
func (s *Service) ListToolPins(ctx context.Context, req *configv1.ListToolPinsRequest) (*configv1.ListToolPinsResponse, error) {
	if err := validName("server", req.GetServer()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	srv, ok := s.st.Server(req.GetServer())
	if !ok {
		return nil, s.toConnectError(ctx, notFound("server"))
	}
	tp, _ := s.st.ToolPins(req.GetServer())
	return &configv1.ListToolPinsResponse{Pins: store.SortedToolPins(tp.GetRecord()), OnToolChange: srv.Def.GetOnToolChange()}, nil
}

// ApproveToolPin implements configv1connect.ToolPinServiceHandler: the
// tool's pending definition becomes its approved one (admins only: the
// interceptor admits nobody else; data planes can only report).
func (s *Service) ApproveToolPin(ctx context.Context, req *configv1.ApproveToolPinRequest) (*configv1.ApproveToolPinResponse, error) {
	if err := validName("server", req.GetServer()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	if !wire.ValidPinnedToolName(req.GetTool()) {
		return nil, s.toConnectError(ctx, invalid("tool: 1 to %d bytes of UTF-8 without control characters", wire.MaxPinnedToolName))
	}
	if len(req.GetDigestPrefix()) > 64 {
		return nil, s.toConnectError(ctx, invalid("digest_prefix: at most 64 hex digits"))
	}
	if _, ok := s.st.Server(req.GetServer()); !ok {
		return nil, s.toConnectError(ctx, notFound("server"))
	}
	p, err := s.st.ApproveToolPin(ctx, req.GetServer(), req.GetTool(), req.GetDigestPrefix(), actor(ctx), s.now())
	switch {
	case errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrCorrupt):
		err = notFound("tool pin")
	case errors.Is(err, store.ErrNoPendingChange):
		err = &publicError{code: connect.CodeFailedPrecondition, msg: "no pending change of this tool (or not the one named by digest_prefix)"}
	}
	s.audit(ctx, "approve", "toolpin", req.GetServer()+"/"+req.GetTool(), err)
	if err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	return &configv1.ApproveToolPinResponse{Pin: p}, nil
}
