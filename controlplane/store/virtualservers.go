package store

import (
	"context"
	"fmt"
	"sort"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// KindVirtualServer holds virtual servers (cached). Their names share the
// servers' namespace: PutVirtualServer refuses a name a server has, and
// PutServer one a virtual server has, in the same transaction as the write.
const KindVirtualServer = "virtualservers"

func decodeVirtualServer(_ string, value []byte, rev int64) (any, error) {
	var v configv1.VirtualServer
	if err := proto.Unmarshal(value, &v); err != nil {
		return nil, fmt.Errorf("decode virtual server: %w", err)
	}
	v.Revision = rev
	return &v, nil
}

// VirtualServer returns the cached virtual server called name.
func (s *Store) VirtualServer(name string) (*configv1.VirtualServer, bool) {
	return cached[*configv1.VirtualServer](s.cache, KindVirtualServer, name)
}

// VirtualServers returns every cached virtual server, sorted by name.
func (s *Store) VirtualServers() []*configv1.VirtualServer {
	out := cachedList[*configv1.VirtualServer](s.cache, KindVirtualServer)
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// PutVirtualServer stores v iff its revision equals expected (0 = create),
// no server has its name and every member server exists, all checked in
// one transaction (ErrConflict otherwise: the caller validated against its
// cache, which a concurrent write overtook).
func (s *Store) PutVirtualServer(ctx context.Context, v *configv1.VirtualServer, expected int64) (int64, error) {
	v = proto.CloneOf(v)
	v.Revision = 0
	b, err := proto.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("marshal virtual server: %w", err)
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key(KindServer, v.GetName())), "=", 0)}
	for _, m := range v.GetMembers() {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key(KindServer, m.GetServer())), ">", 0))
	}
	return s.putIf(ctx, key(KindVirtualServer, v.GetName()), b, expected, cmps...)
}

// DeleteVirtualServer deletes a virtual server iff its revision equals
// expected (0 = any). Grants naming it stay and grant nothing.
func (s *Store) DeleteVirtualServer(ctx context.Context, name string, expected int64) (int64, error) {
	return s.del(ctx, key(KindVirtualServer, name), expected)
}

// putIf is put with further conditions that must all hold.
func (s *Store) putIf(ctx context.Context, k string, value []byte, expected int64, cmps ...clientv3.Cmp) (int64, error) {
	if expected >= 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", expected))
	}
	resp, err := s.kv.Txn(ctx).If(cmps...).Then(clientv3.OpPut(k, string(value))).Commit()
	if err != nil {
		return 0, wrap("put "+k, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("put %s at revision %d: %w", k, expected, ErrConflict)
	}
	return resp.Header.Revision, nil
}
