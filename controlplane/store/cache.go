package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// decoder turns a raw etcd value under one kind into the object the cache
// keeps. It is given the object's name and the key's ModRevision.
type decoder func(name string, value []byte, rev int64) (any, error)

// cache follows every cached kind under the store prefix: it lists at
// revision R, watches from R+1 and relists when the watch is compacted or
// breaks. Readers never wait on etcd; while etcd is unreachable they keep
// seeing the last known state.
type cache struct {
	kv       *clientv3.Client
	prefix   string
	decoders map[string]decoder
	log      *slog.Logger

	mu      sync.RWMutex
	objs    map[string]map[string]any // kind → name → decoded object
	rev     int64                     // etcd revision the cache reflects
	synced  bool
	changed chan struct{} // closed and replaced on every applied change
	lastErr error
	errAt   time.Time
	heardAt time.Time // last list or watch response from etcd
	onApply []func(kind, name string, obj any)
	// probeEvery and probeTimeout bound how long a silently cut link goes
	// unnoticed; relistTimeout bounds one list attempt.
	probeEvery, probeTimeout, relistTimeout time.Duration
	onBatch                                 []func(ChangeBatch)
}

// Change is one applied change of a cached object: Old is what the cache
// held before (nil when nothing), New what it holds now (nil when deleted
// or undecodable); Created says etcd created the key (a new object, on
// which nothing can have been decided yet).
type Change struct {
	Kind, Name string
	Old, New   any
	Created    bool
}

// ChangeBatch is what one watch response changed, up to Revision. All
// says the cache was (re)listed: anything may have changed.
type ChangeBatch struct {
	Revision int64
	All      bool
	Changes  []Change
}

// subscribe registers f to be called, in revision order and while the
// cache is locked (so f must not block or call back into the cache), with
// every applied batch, and returns the revision the cache reflects now (0
// before the first list): f gets every batch after it.
func (c *cache) subscribe(f func(ChangeBatch)) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onBatch = append(c.onBatch, f)
	if !c.synced {
		return 0
	}
	return c.rev
}

func (c *cache) emitLocked(b ChangeBatch) {
	for _, f := range c.onBatch {
		f(b)
	}
}

func newCache(kv *clientv3.Client, prefix string, decoders map[string]decoder, log *slog.Logger) *cache {
	return &cache{
		kv:       kv,
		prefix:   prefix,
		decoders: decoders,
		log:      log,
		objs:     map[string]map[string]any{},
		changed:  make(chan struct{}),

		probeEvery:    time.Second,
		probeTimeout:  1500 * time.Millisecond,
		relistTimeout: 3 * time.Second,
	}
}

// run lists and watches until ctx ends, relisting after compaction or any
// watch failure with a capped backoff.
func (c *cache) run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		err := c.listAndWatch(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.mu.Lock()
		c.lastErr, c.errAt = err, time.Now()
		c.mu.Unlock()
		if errors.Is(err, rpctypes.ErrCompacted) {
			c.log.InfoContext(ctx, "cache watch compacted; relisting")
			backoff = 50 * time.Millisecond
			continue
		}
		c.log.WarnContext(ctx, "cache watch failed; relisting", slog.Any("err", err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

func (c *cache) listAndWatch(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, c.relistTimeout)
	resp, err := c.kv.Get(lctx, c.prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return fmt.Errorf("list %s: %w", c.prefix, err)
	}
	objs := map[string]map[string]any{}
	for _, kv := range resp.Kvs {
		kind, name, ok := c.split(string(kv.Key))
		if !ok {
			continue
		}
		obj, err := c.decoders[kind](name, kv.Value, kv.ModRevision)
		if err != nil {
			c.log.ErrorContext(ctx, "cache: undecodable record skipped", slog.String("kind", kind), slog.String("name", name), slog.Any("err", err))
			continue
		}
		if objs[kind] == nil {
			objs[kind] = map[string]any{}
		}
		objs[kind][name] = obj
	}
	c.mu.Lock()
	c.objs, c.rev, c.synced, c.lastErr = objs, resp.Header.Revision, true, nil
	c.heardAt = time.Now()
	c.emitLocked(ChangeBatch{Revision: c.rev, All: true})
	c.notifyLocked()
	c.mu.Unlock()

	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	wch := c.kv.Watch(wctx, c.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithProgressNotify())
	// A watch does not notice a link that silently drops everything (a
	// cut WAN): the client keeps reconnecting underneath and the channel
	// just stays quiet. So a watch quiet for progressInterval is asked for
	// a progress notification (no read: etcd answers on the watch stream
	// itself, which also keeps CacheStatus.HeardAt current for the
	// invalidation stream's heartbeats); one quiet for probeEvery +
	// probeTimeout ends (the replica reports
	// degraded) and the relist after the link returns is the catch-up.
	var heard atomic.Int64
	heard.Store(time.Now().UnixNano())
	unreachable := make(chan error, 1)
	go func() {
		t := time.NewTicker(c.probeEvery / 4)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			quiet := time.Since(time.Unix(0, heard.Load()))
			switch {
			case quiet > c.probeEvery+c.probeTimeout:
				unreachable <- fmt.Errorf("no answer on the watch for %s", quiet.Round(time.Millisecond))
				wcancel()
				return
			case quiet >= progressInterval:
				pctx, pcancel := context.WithTimeout(wctx, c.probeTimeout)
				_ = c.kv.RequestProgress(pctx)
				pcancel()
			}
		}
	}()
	for {
		var wr clientv3.WatchResponse
		var open bool
		select {
		case err := <-unreachable:
			return fmt.Errorf("etcd unreachable: %w", err)
		case wr, open = <-wch:
		}
		if !open {
			break
		}
		heard.Store(time.Now().UnixNano())
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", c.prefix, err)
		}
		c.mu.Lock()
		c.heardAt = time.Now()
		var changes []Change
		for _, ev := range wr.Events {
			kind, name, ok := c.split(string(ev.Kv.Key))
			if !ok {
				continue
			}
			old := c.objs[kind][name]
			switch ev.Type {
			case mvccpb.PUT:
				obj, err := c.decoders[kind](name, ev.Kv.Value, ev.Kv.ModRevision)
				if err != nil {
					c.log.ErrorContext(ctx, "cache: undecodable record skipped", slog.String("kind", kind), slog.String("name", name), slog.Any("err", err))
					delete(c.objs[kind], name)
					changes = append(changes, Change{Kind: kind, Name: name, Old: old})
					continue
				}
				changes = append(changes, Change{Kind: kind, Name: name, Old: old, New: obj, Created: ev.IsCreate()})
				if c.objs[kind] == nil {
					c.objs[kind] = map[string]any{}
				}
				c.objs[kind][name] = obj
				for _, f := range c.onApply {
					f(kind, name, obj)
				}
			case mvccpb.DELETE:
				delete(c.objs[kind], name)
				changes = append(changes, Change{Kind: kind, Name: name, Old: old})
				for _, f := range c.onApply {
					f(kind, name, nil)
				}
			}
		}
		if wr.Header.Revision > c.rev {
			c.rev = wr.Header.Revision
		}
		c.emitLocked(ChangeBatch{Revision: c.rev, Changes: changes})
		c.notifyLocked()
		c.mu.Unlock()
	}
	select {
	case err := <-unreachable:
		return fmt.Errorf("etcd unreachable: %w", err)
	default:
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watch channel closed")
}

func (c *cache) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// split turns "<prefix><kind>/<name>" into kind and name for cached kinds.
func (c *cache) split(key string) (kind, name string, ok bool) {
	rest, ok := strings.CutPrefix(key, c.prefix)
	if !ok {
		return "", "", false
	}
	kind, name, ok = strings.Cut(rest, "/")
	if !ok {
		return "", "", false
	}
	if _, cached := c.decoders[kind]; !cached {
		return "", "", false
	}
	return kind, name, true
}

func (c *cache) get(kind, name string) (any, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	o, ok := c.objs[kind][name]
	return o, ok
}

func (c *cache) list(kind string) []any {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]any, 0, len(c.objs[kind]))
	for _, o := range c.objs[kind] {
		out = append(out, o)
	}
	return out
}

// waitRevision blocks until the cache reflects at least rev.
func (c *cache) waitRevision(ctx context.Context, rev int64) error {
	for {
		c.mu.RLock()
		cur, ch := c.rev, c.changed
		synced := c.synced
		c.mu.RUnlock()
		if synced && cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// progressInterval is how often a quiet watch asks etcd for a progress
// notification.
const progressInterval = 250 * time.Millisecond

// CacheStatus describes how current the cache is.
type CacheStatus struct {
	Synced   bool
	Revision int64
	LastErr  error
	ErrAt    time.Time
	// HeardAt is when etcd last answered the cache (a list, or any watch
	// response: events or a progress notification, requested every 250 ms).
	HeardAt time.Time
}

func (c *cache) status() CacheStatus {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return CacheStatus{Synced: c.synced, Revision: c.rev, LastErr: c.lastErr, ErrAt: c.errAt, HeardAt: c.heardAt}
}
