package authorizeapi

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// DefaultHeartbeatInterval is how often WatchInvalidations tells a data
// plane the replica's applied revision when nothing changed. Data planes
// stop using cached decisions when heartbeats stop for ~3 intervals.
const DefaultHeartbeatInterval = 250 * time.Millisecond

// maxNamed bounds the names one subscriber accumulates between two sends;
// past it the next message flushes everything instead.
const maxNamed = 4096

// hub turns the store's applied change batches into invalidations and fans
// them out to the WatchInvalidations streams. It never blocks the store:
// each subscriber accumulates what changed until its stream sends it.
type hub struct {
	mu   sync.Mutex
	rev  int64 // revision of the last batch seen (0: not listed yet)
	subs map[*subscriber]struct{}
}

// subscriber is one stream's pending invalidation, merged under mu.
type subscriber struct {
	mu      sync.Mutex
	pending pendingInvalidation
	wake    chan struct{} // cap 1: something to send
}

type pendingInvalidation struct {
	rev        int64
	all        bool
	principals map[string]struct{}
	keyIDs     map[string]struct{}
	tokenIDs   map[string]struct{}
	routes     map[string]struct{}
	grants     map[[2]string]struct{}
	n          int
}

func newHub(st *store.Store) *hub {
	h := &hub{subs: map[*subscriber]struct{}{}}
	rev := st.OnChanges(h.apply)
	h.mu.Lock()
	h.rev = max(h.rev, rev) // a batch may already have been applied
	h.mu.Unlock()
	return h
}

// invalidation is what one change invalidates.
type invalidation struct {
	all                                 bool
	principals, keyIDs, tokenIDs, route []string
	grants                              [][2]string
}

// invalidates maps one store change to what cached decisions it touches.
// Objects created new touch nothing a decision could have been cached on
// (an unknown key or token, a missing grant or server was never an
// ALLOW), except a principal created again under a name (its old
// credentials are refused by uid, and were invalidated at the delete).
// Kinds not known to be harmless flush everything: a new kind of
// configuration is covered before anyone names it here.
func invalidates(c store.Change) invalidation {
	switch c.Kind {
	case store.KindSessionKey:
		return invalidation{}
	case store.KindServer:
		if c.Created {
			return invalidation{}
		}
		return invalidation{route: []string{c.Name}}
	case store.KindPrincipal:
		return invalidation{principals: []string{c.Name}}
	case store.KindKey:
		if c.Created {
			return invalidation{}
		}
		inv := invalidation{keyIDs: []string{c.Name}}
		// Tokens derived from the key are cached under its principal.
		for _, o := range []any{c.Old, c.New} {
			if r, ok := o.(*storev1.KeyRecord); ok && r.GetKey().GetPrincipal() != "" {
				inv.principals = append(inv.principals, r.GetKey().GetPrincipal())
			}
		}
		if len(inv.principals) == 0 {
			return invalidation{all: true}
		}
		return inv
	case store.KindAccessToken:
		if c.Created {
			return invalidation{}
		}
		return invalidation{tokenIDs: []string{c.Name}}
	case store.KindGrant:
		p, s, ok := store.GrantName(c.Name)
		if !ok {
			return invalidation{all: true}
		}
		return invalidation{grants: [][2]string{{p, s}}}
	default:
		// groups, identity providers, and anything added later.
		return invalidation{all: true}
	}
}

// apply runs under the store's cache lock: it only merges.
func (h *hub) apply(b store.ChangeBatch) {
	var invs []invalidation
	all := b.All
	for _, c := range b.Changes {
		inv := invalidates(c)
		if inv.all {
			all = true
			break
		}
		invs = append(invs, inv)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rev = b.Revision
	for s := range h.subs {
		s.merge(b.Revision, all, invs)
	}
}

func (s *subscriber) merge(rev int64, all bool, invs []invalidation) {
	s.mu.Lock()
	p := &s.pending
	changed := all
	p.rev = max(p.rev, rev)
	if all {
		p.flushAll()
	}
	for _, inv := range invs {
		if p.all {
			break
		}
		add := func(m *map[string]struct{}, vs []string) {
			for _, v := range vs {
				if *m == nil {
					*m = map[string]struct{}{}
				}
				(*m)[v] = struct{}{}
				p.n++
				changed = true
			}
		}
		add(&p.principals, inv.principals)
		add(&p.keyIDs, inv.keyIDs)
		add(&p.tokenIDs, inv.tokenIDs)
		add(&p.routes, inv.route)
		for _, g := range inv.grants {
			if p.grants == nil {
				p.grants = map[[2]string]struct{}{}
			}
			p.grants[g] = struct{}{}
			p.n++
			changed = true
		}
		if p.n > maxNamed {
			p.flushAll()
		}
	}
	s.mu.Unlock()
	if changed {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (p *pendingInvalidation) flushAll() {
	*p = pendingInvalidation{rev: p.rev, all: true}
}

// take returns the pending invalidation as a message (heartbeat when
// nothing is pending) and resets it: the message covers every change up to
// its revision.
func (s *subscriber) take() *authorizev1.WatchInvalidationsResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	s.pending = pendingInvalidation{rev: p.rev}
	m := &authorizev1.WatchInvalidationsResponse{Revision: p.rev, All: p.all}
	keys := func(set map[string]struct{}) []string {
		out := make([]string, 0, len(set))
		for k := range set {
			out = append(out, k)
		}
		return out
	}
	if !p.all {
		m.Principals, m.KeyIds, m.AccessTokenIds, m.Routes = keys(p.principals), keys(p.keyIDs), keys(p.tokenIDs), keys(p.routes)
		for g := range p.grants {
			m.Grants = append(m.Grants, &authorizev1.InvalidatedGrant{Principal: g[0], Route: g[1]})
		}
	}
	m.Heartbeat = !p.all && p.n == 0
	return m
}

func (h *hub) subscribe() *subscriber {
	s := &subscriber{wake: make(chan struct{}, 1)}
	h.mu.Lock()
	s.pending.rev = h.rev
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// followWindow: a replica whose store has not heard from etcd for this
// long (its watch asks for progress every 250 ms) does not vouch for its
// revision.
const followWindow = time.Second

// current reports whether this replica follows its store: listed, the
// watch not failing, and etcd heard from lately. Only then may it vouch
// for a revision.
func (s *Service) current() bool {
	st := s.st.CacheStatus()
	return st.Synced && st.LastErr == nil && time.Since(st.HeardAt) < followWindow
}

// WatchInvalidations implements AuthorizeService: first a heartbeat with
// the applied revision, then every change a cached decision depends on, as
// it is applied, and a heartbeat each interval otherwise. While the replica
// does not follow its store it sends nothing (the data plane's cache goes
// stale and is not used); a relist flushes everything.
func (s *Service) WatchInvalidations(ctx context.Context, _ *authorizev1.WatchInvalidationsRequest, out *connect.ServerStream[authorizev1.WatchInvalidationsResponse]) error {
	sub := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)
	t := time.NewTicker(s.heartbeat)
	defer t.Stop()
	send := func() error {
		if !s.current() {
			return nil // changes stay pending; the data plane's cache goes stale
		}
		m := sub.take()
		if m.GetRevision() == 0 {
			return nil
		}
		return out.Send(m)
	}
	if err := send(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.wake:
			if err := send(); err != nil {
				return err
			}
		case <-t.C:
			if err := send(); err != nil {
				return err
			}
		}
	}
}
