package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// Kinds of the rate limits' records.
const (
	// KindRateLimit holds rate-limit definitions (cached).
	KindRateLimit = "ratelimits"
	// KindRateLimitReplica registers the replicas that enforce rate limits,
	// each on its lock session's lease (cached: their number sizes chunks).
	KindRateLimitReplica = "ratelimitreplicas"
	// KindRateLimitCounter holds the global counters of rate-limit windows,
	// on leases that end after their window (not cached: read and written
	// only by the replica that takes a chunk of one).
	KindRateLimitCounter = "ratelimitcounters"
)

// counterAttempts bounds TakeRateLimitUnits' compare-and-swap retries.
const counterAttempts = 32

func decodeRateLimit(_ string, value []byte, rev int64) (any, error) {
	var l configv1.RateLimit
	if err := proto.Unmarshal(value, &l); err != nil {
		return nil, fmt.Errorf("decode rate limit: %w", err)
	}
	l.Revision = rev
	return &l, nil
}

func decodeRateLimitReplica(name string, _ []byte, _ int64) (any, error) { return name, nil }

// RateLimit returns the cached rate limit with id.
func (s *Store) RateLimit(id string) (*configv1.RateLimit, bool) {
	return cached[*configv1.RateLimit](s.cache, KindRateLimit, id)
}

// RateLimits returns every cached rate limit, sorted by id.
func (s *Store) RateLimits() []*configv1.RateLimit {
	out := cachedList[*configv1.RateLimit](s.cache, KindRateLimit)
	sort.Slice(out, func(i, j int) bool { return out[i].GetId() < out[j].GetId() })
	return out
}

// RateLimitsChanged returns a channel closed at the next change the cache
// applies (of any kind): callers re-read RateLimits then.
func (s *Store) RateLimitsChanged() <-chan struct{} {
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	return s.cache.changed
}

// PutRateLimit stores l iff its revision equals expected (0 = create).
func (s *Store) PutRateLimit(ctx context.Context, l *configv1.RateLimit, expected int64) (int64, error) {
	l = proto.CloneOf(l)
	l.Revision = 0
	b, err := proto.Marshal(l)
	if err != nil {
		return 0, fmt.Errorf("marshal rate limit: %w", err)
	}
	return s.put(ctx, key(KindRateLimit, l.GetId()), b, expected)
}

// DeleteRateLimit deletes a rate limit iff its revision equals expected
// (0 = any). Its counters end with their leases.
func (s *Store) DeleteRateLimit(ctx context.Context, id string, expected int64) (int64, error) {
	return s.del(ctx, key(KindRateLimit, id), expected)
}

// RegisterRateLimitReplica registers replica id on the store's lock
// session lease: the registration goes when this process stops keeping
// the lease alive. Registering again is a no-op while the registration is
// cached.
func (s *Store) RegisterRateLimitReplica(ctx context.Context, id string) error {
	if _, ok := s.cache.get(KindRateLimitReplica, id); ok {
		return nil
	}
	sess, err := s.lockSession(ctx)
	if err != nil {
		return err
	}
	b, err := proto.Marshal(&storev1.RateLimitReplicaRecord{ReplicaId: id})
	if err != nil {
		return fmt.Errorf("marshal replica: %w", err)
	}
	_, err = s.put(ctx, key(KindRateLimitReplica, id), b, -1, clientv3.WithLease(sess.Lease()))
	return err
}

// RateLimitReplicas is how many replicas are registered (at least 1).
func (s *Store) RateLimitReplicas() int {
	return max(1, len(s.cache.list(KindRateLimitReplica)))
}

// CounterState is a rate-limit counter as last read or written: Revision 0
// means it did not exist.
type CounterState struct {
	Granted  int64
	Limit    int64
	Revision int64
}

// counterLeases shares leases among the counters this process creates:
// one per window kind at a time.
type counterLeases struct {
	mu sync.Mutex
	m  map[string]leaseUntil
}

type leaseUntil struct {
	id    clientv3.LeaseID
	until time.Time // last creation time it may be used for
}

// windowLease returns a lease for a counter created now in a window of
// length w of the kind named kind: granted for 2w + 1 minute and used for
// the counters created in its first w, so it outlives every one of their
// windows by a minute. A replica thus grants at most one lease per window
// length per kind (per second: one a second; per day: one a day).
func (s *Store) windowLease(ctx context.Context, kind string, w time.Duration) (clientv3.LeaseID, error) {
	cl := &s.leases
	cl.mu.Lock()
	defer cl.mu.Unlock()
	now := time.Now()
	if l, ok := cl.m[kind]; ok && now.Before(l.until) {
		return l.id, nil
	}
	ttl := 2*w + time.Minute
	g, err := s.kv.Grant(ctx, int64(ttl/time.Second))
	if err != nil {
		return 0, wrap("counter lease", err)
	}
	if cl.m == nil {
		cl.m = map[string]leaseUntil{}
	}
	cl.m[kind] = leaseUntil{id: g.ID, until: now.Add(w)}
	return g.ID, nil
}

// TakeRateLimitUnits takes units from the counter called name, in one
// compare-and-swap on its revision per attempt (a lost race re-reads the
// counter in the same round trip): chunk says, given the units already
// granted, how many to take (0: none left) and the window's bound. known is
// the caller's last view of the counter (the zero value when it has none).
// A counter is created on a lease that outlives its window (of kind and
// length w) by at least a minute. It returns the units taken and the
// counter after the write (or as read, when none were left).
func (s *Store) TakeRateLimitUnits(ctx context.Context, name, kind string, w time.Duration, known CounterState, chunk func(granted int64) (take, limit int64)) (int64, CounterState, error) {
	k := key(KindRateLimitCounter, name)
	for range counterAttempts {
		n, limit := chunk(known.Granted)
		if n <= 0 && known.Revision != 0 {
			return 0, known, nil
		}
		n = max(n, 0)
		next := CounterState{Granted: known.Granted + n, Limit: limit}
		b, err := proto.Marshal(&storev1.RateLimitCounterRecord{Granted: next.Granted, Limit: limit})
		if err != nil {
			return 0, known, fmt.Errorf("marshal counter: %w", err)
		}
		var put clientv3.Op
		if known.Revision == 0 {
			lease, err := s.windowLease(ctx, kind, w)
			if err != nil {
				return 0, known, err
			}
			put = clientv3.OpPut(k, string(b), clientv3.WithLease(lease))
		} else {
			put = clientv3.OpPut(k, string(b), clientv3.WithIgnoreLease())
		}
		resp, err := s.kv.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", known.Revision)).
			Then(put).Else(clientv3.OpGet(k)).Commit()
		if err != nil {
			return 0, known, wrap("take counter units", err)
		}
		if resp.Succeeded {
			next.Revision = resp.Header.Revision
			return n, next, nil
		}
		known = CounterState{}
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			var rec storev1.RateLimitCounterRecord
			if err := proto.Unmarshal(kvs[0].Value, &rec); err != nil {
				return 0, known, fmt.Errorf("decode counter: %w: %w", ErrCorrupt, err)
			}
			known = CounterState{Granted: rec.GetGranted(), Limit: rec.GetLimit(), Revision: kvs[0].ModRevision}
		}
	}
	return 0, known, fmt.Errorf("take counter units: %w", ErrConflict)
}

// RateLimitCounters reads (from etcd) every counter whose name starts with
// prefix.
func (s *Store) RateLimitCounters(ctx context.Context, prefix string) (map[string]CounterState, error) {
	p := key(KindRateLimitCounter, prefix)
	resp, err := s.kv.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, wrap("list counters", err)
	}
	out := make(map[string]CounterState, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec storev1.RateLimitCounterRecord
		if proto.Unmarshal(kv.Value, &rec) != nil {
			continue
		}
		name := strings.TrimPrefix(string(kv.Key), key(KindRateLimitCounter, ""))
		out[name] = CounterState{Granted: rec.GetGranted(), Limit: rec.GetLimit(), Revision: kv.ModRevision}
	}
	return out, nil
}
