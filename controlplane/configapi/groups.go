package configapi

import (
	"context"
	"errors"
	"slices"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

var _ configv1connect.GroupServiceHandler = (*Service)(nil)

// validateGroup checks a group like a principal: its name and server
// names follow api/wire's grammar ("*" grants every server); servers that
// do not exist (yet) are allowed, as for principals.
func validateGroup(g *configv1.Group) error {
	if err := validName("name", g.GetName()); err != nil {
		return err
	}
	for i, s := range g.GetServers() {
		if s != "*" && !wire.ValidServerName(s) {
			return invalid("servers[%d]: must be a server name or \"*\"", i)
		}
	}
	if len(g.GetDescription()) > 256 {
		return invalid("description: longer than 256 bytes")
	}
	return nil
}

// ListGroups implements configv1connect.GroupServiceHandler.
func (s *Service) ListGroups(ctx context.Context, _ *configv1.ListGroupsRequest) (*configv1.ListGroupsResponse, error) {
	out := &configv1.ListGroupsResponse{}
	for _, g := range s.st.Groups() {
		out.Groups = append(out.Groups, proto.CloneOf(g))
	}
	return out, nil
}

// GetGroup implements configv1connect.GroupServiceHandler. The response
// names the group's members: principals with it among their admin-set or
// asserted groups.
func (s *Service) GetGroup(ctx context.Context, req *configv1.GetGroupRequest) (*configv1.GetGroupResponse, error) {
	if err := validName("name", req.GetName()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	g, ok := s.st.Group(req.GetName())
	if !ok {
		return nil, s.toConnectError(ctx, notFound("group"))
	}
	res := &configv1.GetGroupResponse{Group: proto.CloneOf(g)}
	for _, p := range s.st.Principals() { // sorted by name
		member := slices.Contains(p.GetGroups(), g.GetName()) ||
			slices.ContainsFunc(p.GetAssertedGroups(), func(a *configv1.GroupAssertion) bool { return a.GetGroup() == g.GetName() })
		if member {
			res.Members = append(res.Members, p.GetName())
		}
	}
	return res, nil
}

// PutGroup implements configv1connect.GroupServiceHandler.
func (s *Service) PutGroup(ctx context.Context, req *configv1.PutGroupRequest) (*configv1.PutGroupResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	res, err := s.putGroup(ctx, req)
	if err != nil || res.GetChanged() {
		s.audit(ctx, "put", "group", req.GetGroup().GetName(), err)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) putGroup(ctx context.Context, req *configv1.PutGroupRequest) (*configv1.PutGroupResponse, error) {
	if req.GetGroup() == nil {
		return nil, s.toConnectError(ctx, invalid("group: required"))
	}
	g := proto.CloneOf(req.GetGroup())
	g.Revision = 0
	if err := validateGroup(g); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	cur, exists := s.st.Group(g.GetName())
	if err := checkExpected("group", exists, cur.GetRevision(), req.GetExpectedRevision()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	if exists {
		c := proto.CloneOf(cur)
		c.Revision = 0
		if proto.Equal(c, g) {
			return &configv1.PutGroupResponse{Group: proto.CloneOf(cur)}, nil
		}
	}
	rev, err := s.st.PutGroup(ctx, g, req.GetExpectedRevision())
	if err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	g.Revision = rev
	return &configv1.PutGroupResponse{Group: g, Changed: true}, nil
}

// DeleteGroup implements configv1connect.GroupServiceHandler. Its members
// lose its grants at their next request; memberships naming it stay and
// grant nothing unless a group of that name is created again.
func (s *Service) DeleteGroup(ctx context.Context, req *configv1.DeleteGroupRequest) (*configv1.DeleteGroupResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err := s.deleteGroup(ctx, req)
	s.audit(ctx, "delete", "group", req.GetName(), err)
	if err != nil {
		return nil, err
	}
	return &configv1.DeleteGroupResponse{}, nil
}

func (s *Service) deleteGroup(ctx context.Context, req *configv1.DeleteGroupRequest) error {
	if err := validName("name", req.GetName()); err != nil {
		return s.toConnectError(ctx, err)
	}
	if req.GetExpectedRevision() < 0 {
		return s.toConnectError(ctx, invalid("expected_revision: must not be negative"))
	}
	rev, err := s.st.DeleteGroup(ctx, req.GetName(), req.GetExpectedRevision())
	if errors.Is(err, store.ErrNotFound) {
		err = notFound("group")
	}
	if err != nil {
		return s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	return nil
}
