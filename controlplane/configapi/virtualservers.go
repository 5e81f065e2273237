package configapi

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

var _ configv1connect.VirtualServerServiceHandler = (*Service)(nil)

// Bounds of a virtual server.
const (
	maxVirtualMembers = 64
	maxToolList       = 256
	maxToolSeparator  = 8
)

func failedPrecondition(msg string) error {
	return &publicError{code: connect.CodeFailedPrecondition, msg: msg}
}

// validToolListEntry bounds an include/exclude/rename source: an upstream
// tool name, compared exactly, so only its length and control characters
// are checked (upstreams need not follow the tool-name rules).
func validToolListEntry(s string) bool {
	return s != "" && len(s) <= wire.MaxToolNameLen && wire.ValidHeaderValue(s) && !strings.ContainsAny(s, "\t")
}

// validateVirtualServer checks v on its own (shape, names, the naming
// rules of authorize.CheckNaming); checkVirtualServer checks it against the
// servers.
func validateVirtualServer(v *configv1.VirtualServer) error {
	if err := validName("name", v.GetName()); err != nil {
		return err
	}
	if len(v.GetDescription()) > 256 {
		return invalid("description: longer than 256 bytes")
	}
	if sep := v.GetToolSeparator(); sep != "" && (len(sep) > maxToolSeparator || !wire.ValidToolName(sep)) {
		return invalid("tool_separator: must be 1 to %d characters of A-Z, a-z, 0-9, '_', '-' and '.'", maxToolSeparator)
	}
	for i, sc := range v.GetScopes() {
		if sc == "" || strings.ContainsAny(sc, " \t\r\n\"\\") {
			return invalid("scopes[%d]: must be a non-empty scope token without spaces or quotes", i)
		}
	}
	if len(v.GetMembers()) == 0 {
		return invalid("members: at least one member required")
	}
	if len(v.GetMembers()) > maxVirtualMembers {
		return invalid("members: at most %d members", maxVirtualMembers)
	}
	first := map[string]int{}
	for i, m := range v.GetMembers() {
		if err := validName(fmt.Sprintf("members[%d].server", i), m.GetServer()); err != nil {
			return err
		}
		if j, dup := first[m.GetServer()]; dup {
			return invalid("members[%d] (%s): the server is already members[%d]", i, m.GetServer(), j)
		}
		first[m.GetServer()] = i
		for _, f := range []struct {
			field string
			list  []string
		}{{"include_tools", m.GetIncludeTools()}, {"exclude_tools", m.GetExcludeTools()}} {
			field, list := f.field, f.list
			if len(list) > maxToolList {
				return invalid("members[%d] (%s): %s: at most %d names", i, m.GetServer(), field, maxToolList)
			}
			for k, tool := range list {
				if !validToolListEntry(tool) {
					return invalid("members[%d] (%s): %s[%d]: must be 1 to %d characters without control characters", i, m.GetServer(), field, k, wire.MaxToolNameLen)
				}
			}
		}
		if len(m.GetRenames()) > maxToolList {
			return invalid("members[%d] (%s): renames: at most %d names", i, m.GetServer(), maxToolList)
		}
		for up := range m.GetRenames() {
			if !validToolListEntry(up) {
				return invalid("members[%d] (%s): renames: an upstream name must be 1 to %d characters without control characters", i, m.GetServer(), wire.MaxToolNameLen)
			}
		}
	}
	var ne *authorize.NamingError
	if err := authorize.CheckNaming(authorize.VirtualNamings(v)); errors.As(err, &ne) {
		return invalid("%s", ne.Msg)
	} else if err != nil {
		return err
	}
	return nil
}

// checkVirtualServer checks v against the cached servers: its name is not
// a server's, and every member is one.
func (s *Service) checkVirtualServer(v *configv1.VirtualServer) error {
	if _, clash := s.st.Server(v.GetName()); clash {
		return invalid("name: virtual server %q and server %q: a virtual server may not share a server's name (one route each)", v.GetName(), v.GetName())
	}
	for i, m := range v.GetMembers() {
		if _, ok := s.st.Server(m.GetServer()); !ok {
			return invalid("members[%d].server: virtual server %q names server %q, which does not exist", i, v.GetName(), m.GetServer())
		}
	}
	return nil
}

// ListVirtualServers implements configv1connect.VirtualServerServiceHandler.
func (s *Service) ListVirtualServers(ctx context.Context, _ *configv1.ListVirtualServersRequest) (*configv1.ListVirtualServersResponse, error) {
	out := &configv1.ListVirtualServersResponse{}
	for _, v := range s.st.VirtualServers() {
		out.VirtualServers = append(out.VirtualServers, proto.CloneOf(v))
	}
	return out, nil
}

// GetVirtualServer implements configv1connect.VirtualServerServiceHandler.
func (s *Service) GetVirtualServer(ctx context.Context, req *configv1.GetVirtualServerRequest) (*configv1.GetVirtualServerResponse, error) {
	if err := validName("name", req.GetName()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	v, ok := s.st.VirtualServer(req.GetName())
	if !ok {
		return nil, s.toConnectError(ctx, notFound("virtual server"))
	}
	return &configv1.GetVirtualServerResponse{VirtualServer: proto.CloneOf(v)}, nil
}

// PutVirtualServer implements configv1connect.VirtualServerServiceHandler.
func (s *Service) PutVirtualServer(ctx context.Context, req *configv1.PutVirtualServerRequest) (*configv1.PutVirtualServerResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	res, err := s.putVirtualServer(ctx, req)
	if err != nil || res.GetChanged() {
		s.audit(ctx, "put", "virtual_server", req.GetVirtualServer().GetName(), err)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Service) putVirtualServer(ctx context.Context, req *configv1.PutVirtualServerRequest) (*configv1.PutVirtualServerResponse, error) {
	if req.GetVirtualServer() == nil {
		return nil, s.toConnectError(ctx, invalid("virtual_server: required"))
	}
	v := proto.CloneOf(req.GetVirtualServer())
	v.Revision = 0
	if err := validateVirtualServer(v); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	if err := s.checkVirtualServer(v); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	cur, exists := s.st.VirtualServer(v.GetName())
	if err := checkExpected("virtual server", exists, cur.GetRevision(), req.GetExpectedRevision()); err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	if exists {
		c := proto.CloneOf(cur)
		c.Revision = 0
		if proto.Equal(c, v) {
			return &configv1.PutVirtualServerResponse{VirtualServer: proto.CloneOf(cur)}, nil
		}
	}
	rev, err := s.st.PutVirtualServer(ctx, v, req.GetExpectedRevision())
	if err != nil {
		return nil, s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	v.Revision = rev
	return &configv1.PutVirtualServerResponse{VirtualServer: v, Changed: true}, nil
}

// DeleteVirtualServer implements configv1connect.VirtualServerServiceHandler.
// Grants naming it stay on principals and groups and grant nothing unless
// a virtual server (or server) of that name is created again.
func (s *Service) DeleteVirtualServer(ctx context.Context, req *configv1.DeleteVirtualServerRequest) (*configv1.DeleteVirtualServerResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	err := s.deleteVirtualServer(ctx, req)
	s.audit(ctx, "delete", "virtual_server", req.GetName(), err)
	if err != nil {
		return nil, err
	}
	return &configv1.DeleteVirtualServerResponse{}, nil
}

func (s *Service) deleteVirtualServer(ctx context.Context, req *configv1.DeleteVirtualServerRequest) error {
	if err := validName("name", req.GetName()); err != nil {
		return s.toConnectError(ctx, err)
	}
	if req.GetExpectedRevision() < 0 {
		return s.toConnectError(ctx, invalid("expected_revision: must not be negative"))
	}
	rev, err := s.st.DeleteVirtualServer(ctx, req.GetName(), req.GetExpectedRevision())
	if errors.Is(err, store.ErrNotFound) {
		err = notFound("virtual server")
	}
	if err != nil {
		return s.toConnectError(ctx, err)
	}
	s.settle(ctx, rev)
	return nil
}

// checkServerName checks a server about to be created against the virtual
// servers (one namespace) and the root aggregate's naming: the default
// prefixes <server>__ of all servers must stay prefix-free, so that /mcp's
// names stay unambiguous (a server "a__b" beside a server "a" is refused).
func (s *Service) checkServerName(name string) error {
	if _, clash := s.st.VirtualServer(name); clash {
		return invalid("name: server %q and virtual server %q: a server may not share a virtual server's name (one route each)", name, name)
	}
	p := wire.DefaultToolPrefix(name)
	for _, srv := range s.st.Servers() {
		o := wire.DefaultToolPrefix(srv.Def.GetName())
		if strings.HasPrefix(p, o) || strings.HasPrefix(o, p) {
			return invalid("name: server %q's tool prefix %q and server %q's tool prefix %q are not prefix-free: on /mcp a name could belong to both", name, p, srv.Def.GetName(), o)
		}
	}
	return nil
}

// checkServerUnreferenced refuses to delete a server that a virtual server
// has as a member: remove it from the virtual server first. (Dropping it
// silently would change what the virtual server's users get without the
// admin having said so.)
func (s *Service) checkServerUnreferenced(name string) error {
	for _, v := range s.st.VirtualServers() {
		for i, m := range v.GetMembers() {
			if m.GetServer() == name {
				return failedPrecondition(fmt.Sprintf("server %q is members[%d] of virtual server %q: remove it from the virtual server first", name, i, v.GetName()))
			}
		}
	}
	return nil
}
