package oauth

import (
	"context"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// Registrations are anonymous, so a new one lives only
// UnconfirmedClientTTL (an hour) and replicas accept RegisterPerHour of
// them: what anonymous callers can keep in etcd is bounded. The first
// approval by a signed-in person confirms the client, whose registration
// then lives ClientIdleTTL (30 days) from each use.

// confirmed reports whether a signed-in person approved the client once:
// its renew time moved past its issue time.
func confirmed(rec *storev1.OAuthClientRecord) bool {
	return rec.GetRenewTime().AsTime().After(rec.GetIssueTime().AsTime())
}

// takeRegistration takes a token of the replica-wide registration bucket.
func (s *Server) takeRegistration() (bool, time.Duration) {
	now := s.now()
	r := s.regLimit.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Hour
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// confirmClient extends an unconfirmed registration to the idle lease,
// by compare-and-swap: a client confirmed meanwhile is left alone.
// Failures are logged; the registration then expires as unconfirmed.
func (s *Server) confirmClient(ctx context.Context, id string) {
	if strings.HasPrefix(id, "https://") {
		return // a metadata document client, not stored
	}
	clients := s.st.OAuthClients()
	rec, rev, err := clients.Get(ctx, id)
	if err != nil {
		s.log.DebugContext(ctx, "confirm client", "err", err)
		return
	}
	if confirmed(rec) {
		return
	}
	now := s.now()
	if !now.After(rec.GetIssueTime().AsTime()) {
		now = rec.GetIssueTime().AsTime().Add(time.Nanosecond)
	}
	rec.RenewTime = timestamppb.New(now)
	if _, err := clients.PutLeased(ctx, id, rec, s.cfg.ClientIdleTTL, rev); err != nil {
		s.log.WarnContext(ctx, "confirm client", "client_id", id, "err", err)
	}
}
