package authorizeapi

import (
	"context"
	"fmt"
	"log/slog"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/ops/audit"
)

// WithAudit sets where tool_changed events go.
func WithAudit(l *audit.Logger) Option { return func(s *Service) { s.audit = l } }

// ReportToolDigests implements AuthorizeService: a data plane saw tools of
// the route whose digest is not the pinned one. New tools get their first
// seen digest pinned (create-only, at most store.MaxToolPins per server),
// changed ones a pending digest and one tool_changed audit event per
// change. Nothing here approves a digest. A report that tells the cache
// nothing new writes nothing; a route that names no server, or one that
// does not pin its tools, is ignored.
func (s *Service) ReportToolDigests(ctx context.Context, req *authorizev1.ReportToolDigestsRequest) (*authorizev1.ReportToolDigestsResponse, error) {
	if req.GetRoute() == "" || len(req.GetTools()) > wire.MaxToolDigestReport {
		return nil, s.toConnectError(ctx, "report tool digests", fmt.Errorf("%w: route required, at most %d tools", authorize.ErrInvalidRequest, wire.MaxToolDigestReport))
	}
	seen := make([]store.ToolDigest, 0, len(req.GetTools()))
	for _, t := range req.GetTools() {
		if !wire.ValidPinnedToolName(t.GetTool()) || !wire.ValidToolDigest(t.GetDigest()) {
			return nil, s.toConnectError(ctx, "report tool digests", fmt.Errorf("%w: malformed tool or digest", authorize.ErrInvalidRequest))
		}
		seen = append(seen, store.ToolDigest{Tool: t.GetTool(), Digest: t.GetDigest()})
	}
	srv, ok := s.st.Server(req.GetRoute())
	if !ok {
		return &authorizev1.ReportToolDigestsResponse{}, nil
	}
	mode := srv.Def.GetOnToolChange()
	if mode == configv1.ToolChangeMode_TOOL_CHANGE_MODE_UNSPECIFIED || !s.newsFor(req.GetRoute(), seen) {
		return &authorizev1.ReportToolDigestsResponse{}, nil
	}
	changes, err := s.st.RecordToolDigests(ctx, req.GetRoute(), seen, s.now())
	if err != nil {
		return nil, s.toConnectError(ctx, "record tool digests", err)
	}
	for _, c := range changes {
		s.log.WarnContext(ctx, "upstream tool definition changed", slog.String("server", req.GetRoute()), slog.String("tool", c.Tool))
		_ = s.audit.ToolChanged(audit.ToolChanged{Time: s.now(), Server: req.GetRoute(), Tool: c.Tool, OldDigest: c.Old, NewDigest: c.New,
			Blocked: mode == configv1.ToolChangeMode_TOOL_CHANGE_MODE_BLOCK})
	}
	return &authorizev1.ReportToolDigestsResponse{}, nil
}

// newsFor reports whether seen tells the cached pins of server anything:
// a tool without a pin (while there is room for one), or a digest that is
// neither the approved nor the pending one, or the approved one while
// another is pending.
func (s *Service) newsFor(server string, seen []store.ToolDigest) bool {
	tp, _ := s.st.ToolPins(server)
	rec := tp.GetRecord()
	for _, t := range seen {
		p, ok := rec.GetPins()[t.Tool]
		switch {
		case !ok:
			if len(rec.GetPins()) < store.MaxToolPins {
				return true
			}
		case t.Digest == p.GetApprovedDigest():
			if p.GetPendingDigest() != "" {
				return true
			}
		case t.Digest != p.GetPendingDigest():
			return true
		}
	}
	return false
}
