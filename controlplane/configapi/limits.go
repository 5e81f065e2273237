package configapi

import (
	"context"
	"errors"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

var _ configv1connect.RateLimitServiceHandler = (*Service)(nil)

// Bounds of a rate limit definition.
const (
	maxLimitListLen = 256
	maxToolGlobLen  = 128
	maxLimitValue   = 1_000_000_000_000
)

// validateRateLimit checks a rate limit: names by api/wire's grammar
// (servers may be "*"), tool globs of printable ASCII, non-negative bounds
// of which at least one is set. Messages are fixed; values never echoed.
func validateRateLimit(l *configv1.RateLimit) error {
	if err := validName("id", l.GetId()); err != nil {
		return err
	}
	lists := []struct {
		field string
		vals  []string
		star  bool
	}{{"principals", l.GetPrincipals(), false}, {"groups", l.GetGroups(), false}, {"servers", l.GetServers(), true}}
	for _, f := range lists {
		if len(f.vals) > maxLimitListLen {
			return invalid("%s: at most %d entries", f.field, maxLimitListLen)
		}
		for i, v := range f.vals {
			if f.star && v == "*" {
				continue
			}
			if !wire.ValidServerName(v) {
				if f.star {
					return invalid("%s[%d]: must be a server name or \"*\"", f.field, i)
				}
				return invalid("%s[%d]: %s", f.field, i, wire.ServerNameRule)
			}
		}
	}
	if len(l.GetTools()) > maxLimitListLen {
		return invalid("tools: at most %d entries", maxLimitListLen)
	}
	for i, t := range l.GetTools() {
		if !validGlob(t) {
			return invalid("tools[%d]: must be a glob of 1 to %d printable ASCII characters", i, maxToolGlobLen)
		}
	}
	bounds := []struct {
		field string
		v     int64
	}{{"per_second", l.GetPerSecond()}, {"per_minute", l.GetPerMinute()}, {"per_day", l.GetPerDay()}}
	for _, b := range bounds {
		if b.v < 0 {
			return invalid("%s: must not be negative", b.field)
		}
		if b.v > maxLimitValue {
			return invalid("%s: at most %d", b.field, int64(maxLimitValue))
		}
	}
	if l.GetPerSecond() == 0 && l.GetPerMinute() == 0 && l.GetPerDay() == 0 {
		return invalid("per_second, per_minute, per_day: at least one must be set")
	}
	if len(l.GetDescription()) > 256 {
		return invalid("description: longer than 256 bytes")
	}
	return nil
}

func validGlob(g string) bool {
	if g == "" || len(g) > maxToolGlobLen {
		return false
	}
	for i := 0; i < len(g); i++ {
		if g[i] < 0x21 || g[i] > 0x7e {
			return false
		}
	}
	return true
}

// ListRateLimits implements configv1connect.RateLimitServiceHandler.
func (s *Service) ListRateLimits(context.Context, *configv1.ListRateLimitsRequest) (*configv1.ListRateLimitsResponse, error) {
	out := &configv1.ListRateLimitsResponse{}
	for _, l := range s.st.RateLimits() {
		out.RateLimits = append(out.RateLimits, proto.CloneOf(l))
	}
	return out, nil
}

// GetRateLimit implements configv1connect.RateLimitServiceHandler.
func (s *Service) GetRateLimit(ctx context.Context, req *configv1.GetRateLimitRequest) (*configv1.GetRateLimitResponse, error) {
	if err := validName("id", req.GetId()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	l, ok := s.st.RateLimit(req.GetId())
	if !ok {
		return nil, s.toConnectError(ctx, notFound("rate limit"))
	}
	return &configv1.GetRateLimitResponse{RateLimit: proto.CloneOf(l)}, nil
}

// PutRateLimit implements configv1connect.RateLimitServiceHandler.
func (s *Service) PutRateLimit(ctx context.Context, req *configv1.PutRateLimitRequest) (*configv1.PutRateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	res, err := s.putRateLimit(ctx, req)
	if err != nil || res.GetChanged() {
		s.audit(ctx, "put", "rate_limit", req.GetRateLimit().GetId(), err)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) putRateLimit(ctx context.Context, req *configv1.PutRateLimitRequest) (*configv1.PutRateLimitResponse, error) {
	if req.GetRateLimit() == nil {
		return nil, s.toConnectError(ctx, invalid("rate_limit: required"))
	}
	l := proto.CloneOf(req.GetRateLimit())
	l.Revision = 0
	if err := validateRateLimit(l); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	cur, exists := s.st.RateLimit(l.GetId())
	if err := checkExpected("rate limit", exists, cur.GetRevision(), req.GetExpectedRevision()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	if exists {
		c := proto.CloneOf(cur)
		c.Revision = 0
		if proto.Equal(c, l) {
			return &configv1.PutRateLimitResponse{RateLimit: proto.CloneOf(cur)}, nil
		}
	}
	rev, err := s.st.PutRateLimit(ctx, l, req.GetExpectedRevision())
	if err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	l.Revision = rev
	return &configv1.PutRateLimitResponse{RateLimit: l, Changed: true}, nil
}

// DeleteRateLimit implements configv1connect.RateLimitServiceHandler.
func (s *Service) DeleteRateLimit(ctx context.Context, req *configv1.DeleteRateLimitRequest) (*configv1.DeleteRateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err := s.deleteRateLimit(ctx, req)
	s.audit(ctx, "delete", "rate_limit", req.GetId(), err)
	if err != nil {
		return nil, err
	}
	return &configv1.DeleteRateLimitResponse{}, nil
}

func (s *Service) deleteRateLimit(ctx context.Context, req *configv1.DeleteRateLimitRequest) error {
	if err := validName("id", req.GetId()); err != nil {
		return s.toConnectError(ctx, err)
	}
	if req.GetExpectedRevision() < 0 {
		return s.toConnectError(ctx, invalid("expected_revision: must not be negative"))
	}
	rev, err := s.st.DeleteRateLimit(ctx, req.GetId(), req.GetExpectedRevision())
	if errors.Is(err, store.ErrNotFound) {
		err = notFound("rate limit")
	}
	if err != nil {
		return s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	return nil
}

// GetRateLimitUsage implements configv1connect.RateLimitServiceHandler:
// the limits that apply to the principal with their current windows'
// usage (one etcd read of the principal's counters).
func (s *Service) GetRateLimitUsage(ctx context.Context, req *configv1.GetRateLimitUsageRequest) (*configv1.GetRateLimitUsageResponse, error) {
	if err := validName("principal", req.GetPrincipal()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	p, ok := s.st.Principal(req.GetPrincipal())
	if !ok {
		return nil, s.toConnectError(ctx, notFound("principal"))
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	us, err := s.limiter.Usage(ctx, p)
	if err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	out := &configv1.GetRateLimitUsageResponse{}
	for _, u := range us {
		out.Usage = append(out.Usage, &configv1.RateLimitUsage{
			LimitId: u.LimitID, Server: u.Server, Window: u.Window,
			Limit: u.Limit, Used: u.Used, Remaining: u.Remaining, ResetSeconds: u.Reset,
		})
	}
	return out, nil
}
