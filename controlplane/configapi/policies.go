package configapi

import (
	"context"
	"errors"
	"regexp"
	"slices"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

var _ configv1connect.PolicyServiceHandler = (*Service)(nil)

// Bounds of the policy list.
const (
	maxPolicies      = 10000
	maxPolicyGlobs   = 256 // per list of one rule
	maxPolicyDescLen = 256
)

// policyIDRE is the grammar of a policy id.
var policyIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// validatePolicies checks a whole ordered list: ids well-formed and
// unique, effect allow or deny, at least one principal or group, one
// server and one tool, resource or prompt, every glob valid
// (api/wire.ValidGlob). Texts are fixed; only indexes vary.
func validatePolicies(ps []*configv1.Policy) error {
	if len(ps) > maxPolicies {
		return invalid("policies: more than %d rules", maxPolicies)
	}
	seen := make(map[string]bool, len(ps))
	for i, p := range ps {
		if p == nil {
			return invalid("policies[%d]: required", i)
		}
		if !policyIDRE.MatchString(p.GetId()) {
			return invalid("policies[%d].id: must match [a-z0-9][a-z0-9._-]{0,63}", i)
		}
		if seen[p.GetId()] {
			return invalid("policies[%d].id: duplicate id", i)
		}
		seen[p.GetId()] = true
		switch p.GetEffect() {
		case configv1.PolicyEffect_POLICY_EFFECT_ALLOW, configv1.PolicyEffect_POLICY_EFFECT_DENY:
		default:
			return invalid("policies[%d].effect: must be allow or deny", i)
		}
		if len(p.GetDescription()) > maxPolicyDescLen {
			return invalid("policies[%d].description: longer than 256 bytes", i)
		}
		if len(p.GetPrincipals()) == 0 && len(p.GetGroups()) == 0 {
			return invalid("policies[%d]: names no principal or group", i)
		}
		if len(p.GetServers()) == 0 {
			return invalid("policies[%d].servers: required", i)
		}
		if len(p.GetTools()) == 0 && len(p.GetResources()) == 0 && len(p.GetPrompts()) == 0 {
			return invalid("policies[%d]: names no tool, resource or prompt", i)
		}
		for _, l := range []struct {
			field string
			globs []string
		}{
			{"principals", p.GetPrincipals()}, {"groups", p.GetGroups()}, {"servers", p.GetServers()},
			{"tools", p.GetTools()}, {"resources", p.GetResources()}, {"prompts", p.GetPrompts()},
		} {
			if len(l.globs) > maxPolicyGlobs {
				return invalid("policies[%d].%s: more than %d globs", i, l.field, maxPolicyGlobs)
			}
			for j, g := range l.globs {
				if err := wire.ValidGlob(g); err != nil {
					return invalid("policies[%d].%s[%d]: %s", i, l.field, j, err.Error())
				}
			}
		}
	}
	return nil
}

// ListPolicies implements configv1connect.PolicyServiceHandler.
func (s *Service) ListPolicies(ctx context.Context, _ *configv1.ListPoliciesRequest) (*configv1.ListPoliciesResponse, error) {
	ps := s.st.Policies()
	out := &configv1.ListPoliciesResponse{Revision: ps.GetRevision()}
	for _, p := range ps.GetPolicies() {
		out.Policies = append(out.Policies, proto.CloneOf(p))
	}
	return out, nil
}

// PutPolicies implements configv1connect.PolicyServiceHandler: it replaces
// the whole ordered list, compare-and-swap on its revision.
func (s *Service) PutPolicies(ctx context.Context, req *configv1.PutPoliciesRequest) (*configv1.PutPoliciesResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	res, err := s.putPolicies(ctx, req)
	if err != nil || res.GetChanged() {
		s.audit(ctx, "put", "policies", store.PolicySetName, err)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) putPolicies(ctx context.Context, req *configv1.PutPoliciesRequest) (*configv1.PutPoliciesResponse, error) {
	if err := validatePolicies(req.GetPolicies()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	if req.GetExpectedRevision() < 0 {
		return nil, s.toConnectError(ctx, invalid("expected_revision: must not be negative"))
	}
	cur := s.st.Policies()
	if cur.GetRevision() != req.GetExpectedRevision() {
		return nil, s.toConnectError(ctx, errStale)
	}
	set := &configv1.PolicySet{Policies: req.GetPolicies()}
	if cur.GetRevision() != 0 && slices.EqualFunc(cur.GetPolicies(), set.GetPolicies(), func(a, b *configv1.Policy) bool { return proto.Equal(a, b) }) {
		return &configv1.PutPoliciesResponse{Policies: req.GetPolicies(), Revision: cur.GetRevision()}, nil
	}
	rev, err := s.st.PutPolicies(ctx, set, req.GetExpectedRevision())
	if err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	return &configv1.PutPoliciesResponse{Policies: req.GetPolicies(), Revision: rev, Changed: true}, nil
}

// DeletePolicy implements configv1connect.PolicyServiceHandler: the list
// without the rule is written compare-and-swap on the revision read (or
// on expected_revision when set).
func (s *Service) DeletePolicy(ctx context.Context, req *configv1.DeletePolicyRequest) (*configv1.DeletePolicyResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	res, err := s.deletePolicy(ctx, req)
	s.audit(ctx, "delete", "policy", req.GetId(), err)
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) deletePolicy(ctx context.Context, req *configv1.DeletePolicyRequest) (*configv1.DeletePolicyResponse, error) {
	if !policyIDRE.MatchString(req.GetId()) {
		return nil, s.toConnectError(ctx, invalid("id: must match [a-z0-9][a-z0-9._-]{0,63}"))
	}
	if req.GetExpectedRevision() < 0 {
		return nil, s.toConnectError(ctx, invalid("expected_revision: must not be negative"))
	}
	cur := s.st.Policies()
	if req.GetExpectedRevision() > 0 && cur.GetRevision() != req.GetExpectedRevision() {
		return nil, s.toConnectError(ctx, errStale)
	}
	i := slices.IndexFunc(cur.GetPolicies(), func(p *configv1.Policy) bool { return p.GetId() == req.GetId() })
	if i < 0 {
		return nil, s.toConnectError(ctx, notFound("policy"))
	}
	set := &configv1.PolicySet{Policies: slices.Delete(slices.Clone(cur.GetPolicies()), i, i+1)}
	rev, err := s.st.PutPolicies(ctx, set, cur.GetRevision())
	if errors.Is(err, store.ErrConflict) {
		err = errStale
	}
	if err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	return &configv1.DeletePolicyResponse{Revision: rev}, nil
}
