// Package store keeps the control plane's state in etcd. It is the only
// package that imports the etcd client. Keys live under /mcpgate/v1/<kind>/<name>,
// values are binary protobuf, an object's revision is its key's ModRevision,
// and every write that depends on a read is a compare-and-swap on it. Reads
// are served from an in-memory cache that follows etcd.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
)

// Prefix is the root of every key the store writes.
const Prefix = "/mcpgate/v1/"

// Kinds of cached objects.
const (
	KindServer     = "servers"
	KindPrincipal  = "principals"
	KindKey        = "apikeys"
	KindGrant      = "grants"
	KindSessionKey = "sessionkeys"
	// KindAccessToken holds gateway-issued access tokens (on leases).
	KindAccessToken = "accesstokens"
)

// Sentinel errors. Callers match them with errors.Is.
var (
	ErrNotFound    = errors.New("not found")
	ErrConflict    = errors.New("revision conflict")
	ErrUnavailable = errors.New("etcd unavailable")
)

// Sealer encrypts secrets at rest; associated data binds a ciphertext to
// its record.
type Sealer interface {
	Seal(plaintext, associatedData []byte) ([]byte, error)
	Open(ciphertext, associatedData []byte) ([]byte, error)
}

// Store is the etcd-backed state of the control plane.
type Store struct {
	kv      *clientv3.Client
	seal    Sealer
	cache   *cache
	log     *slog.Logger
	catchUp coalescer
	leases  counterLeases // rate-limit counters' window leases

	lockTTL  int
	lockMu   sync.Mutex
	lockSess *concurrency.Session
	lockCtx  context.Context
	lockStop context.CancelFunc
}

// New returns a store over cli; Run must be running for reads to work.
func New(cli *clientv3.Client, sealer Sealer, log *slog.Logger, opts ...Option) *Store {
	s := &Store{kv: cli, seal: sealer, log: log, lockTTL: DefaultLockTTL}
	s.catchUp.read = s.catchUpRead
	s.catchUp.lim = rate.NewLimiter(DefaultCatchUpPerSecond, DefaultCatchUpBurst)
	for _, o := range opts {
		o(s)
	}
	s.cache = newCache(cli, Prefix, map[string]decoder{
		KindServer:           s.decodeServer,
		KindPrincipal:        decodePrincipal,
		KindGroup:            decodeGroup,
		KindVirtualServer:    decodeVirtualServer,
		KindPolicy:           decodePolicySet,
		KindKey:              decodeKey,
		KindGrant:            s.decodeGrant,
		KindSessionKey:       s.decodeSessionKey,
		KindAccessToken:      decodeAccessToken,
		KindIdentityProvider: s.decodeIdentityProvider,
		KindRateLimit:        decodeRateLimit,
		KindRateLimitReplica: decodeRateLimitReplica,
		KindToolPins:         decodeToolPins,
	}, log)
	return s
}

// Run follows etcd into the cache until ctx ends, then ends the lock
// session.
func (s *Store) Run(ctx context.Context) error {
	defer s.closeLockSession()
	return s.cache.run(ctx)
}

// OnChanges registers f to be called with every batch of changes the cache
// applies, in revision order, while the cache is locked: f must return
// quickly and must not read the store. A batch with All follows every
// (re)list. It returns the revision the cache reflects as f is registered
// (0 before the first list): f is told of every change after it.
func (s *Store) OnChanges(f func(ChangeBatch)) int64 { return s.cache.subscribe(f) }

// GrantName splits a grant's (or exchanged token's) record name into its
// principal and server.
func GrantName(name string) (principal, server string, ok bool) {
	return strings.Cut(name, "\x1f")
}

// WaitRevision blocks until the cache reflects revision rev (read your writes).
func (s *Store) WaitRevision(ctx context.Context, rev int64) error {
	return s.cache.waitRevision(ctx, rev)
}

// WaitSynced blocks until the cache has listed etcd once.
func (s *Store) WaitSynced(ctx context.Context) error { return s.cache.waitRevision(ctx, 0) }

// CacheStatus reports how current the cache is.
func (s *Store) CacheStatus() CacheStatus { return s.cache.status() }

// HeadRevision reads etcd's current revision (a linearizable read of one
// absent key), for the cache-lag metric. It fails while etcd has no quorum.
func (s *Store) HeadRevision(ctx context.Context) (int64, error) {
	resp, err := s.kv.Get(ctx, Prefix+"\x00head", clientv3.WithCountOnly())
	if err != nil {
		return 0, wrap("head revision", err)
	}
	return resp.Header.Revision, nil
}

func key(kind, name string) string { return Prefix + kind + "/" + name }

// wrap classifies etcd failures.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// put writes value at k iff its ModRevision equals expected (0 = create only,
// -1 = unconditional) and returns the new revision.
func (s *Store) put(ctx context.Context, k string, value []byte, expected int64, opts ...clientv3.OpOption) (int64, error) {
	txn := s.kv.Txn(ctx)
	if expected >= 0 {
		txn = txn.If(clientv3.Compare(clientv3.ModRevision(k), "=", expected))
	}
	resp, err := txn.Then(clientv3.OpPut(k, string(value), opts...)).Commit()
	if err != nil {
		return 0, wrap("put "+k, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("put %s at revision %d: %w", k, expected, ErrConflict)
	}
	return resp.Header.Revision, nil
}

// del deletes k iff its ModRevision equals expected (0 = whatever exists).
func (s *Store) del(ctx context.Context, k string, expected int64) (int64, error) {
	cmp := clientv3.Compare(clientv3.ModRevision(k), ">", 0)
	if expected > 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(k), "=", expected)
	}
	resp, err := s.kv.Txn(ctx).If(cmp).Then(clientv3.OpDelete(k)).Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return 0, wrap("delete "+k, err)
	}
	if !resp.Succeeded {
		if len(resp.Responses) > 0 && len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return 0, fmt.Errorf("delete %s: %w", k, ErrNotFound)
		}
		return 0, fmt.Errorf("delete %s at revision %d: %w", k, expected, ErrConflict)
	}
	return resp.Header.Revision, nil
}

// cached returns the cached object of kind called name.
func cached[T any](c *cache, kind, name string) (T, bool) {
	o, ok := c.get(kind, name)
	if !ok {
		var zero T
		return zero, false
	}
	return o.(T), true
}

// cachedList returns every cached object of kind, in no order.
func cachedList[T any](c *cache, kind string) []T {
	objs := c.list(kind)
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(T))
	}
	return out
}

// ---- servers

// Server is a decoded server definition: the public definition (secrets
// cleared, *_set flags filled, revision set) and its unsealed secrets.
type Server struct {
	Def     *configv1.McpServer
	Secrets *storev1.ServerSecrets
}

func serverAD(name string) []byte { return []byte("mcpgate/server-secrets/" + name) }

func (s *Store) decodeServer(name string, value []byte, rev int64) (any, error) {
	var rec storev1.ServerRecord
	if err := proto.Unmarshal(value, &rec); err != nil {
		return nil, fmt.Errorf("decode server: %w", err)
	}
	sec := &storev1.ServerSecrets{}
	if len(rec.GetSealedSecrets()) > 0 {
		pt, err := s.seal.Open(rec.GetSealedSecrets(), serverAD(name))
		if err != nil {
			return nil, fmt.Errorf("open server secrets: %w", err)
		}
		if err := proto.Unmarshal(pt, sec); err != nil {
			return nil, fmt.Errorf("decode server secrets: %w", err)
		}
	}
	def := rec.GetServer()
	def.Revision = rev
	PublicServer(def, sec)
	return &Server{Def: def, Secrets: sec}, nil
}

// PublicServer clears def's secret fields and sets the flags saying which
// secrets sec holds.
func PublicServer(def *configv1.McpServer, sec *storev1.ServerSecrets) {
	def.AuthValue, def.ClientSecret, def.StaticHeaders = "", "", nil
	def.AuthValueSet = sec.GetAuthValue() != ""
	def.ClientSecretSet = sec.GetClientSecret() != ""
	def.StaticHeaderNames = def.StaticHeaderNames[:0]
	for n := range sec.GetStaticHeaders() {
		def.StaticHeaderNames = append(def.StaticHeaderNames, n)
	}
	sort.Strings(def.StaticHeaderNames)
}

// Server returns the cached server called name.
func (s *Store) Server(name string) (*Server, bool) {
	return cached[*Server](s.cache, KindServer, name)
}

// Servers returns every cached server, sorted by name.
func (s *Store) Servers() []*Server {
	out := cachedList[*Server](s.cache, KindServer)
	sort.Slice(out, func(i, j int) bool { return out[i].Def.GetName() < out[j].Def.GetName() })
	return out
}

// PutServer stores def (whose secrets must already be split into sec) iff the
// stored revision equals expected (0 = create).
func (s *Store) PutServer(ctx context.Context, def *configv1.McpServer, sec *storev1.ServerSecrets, expected int64) (int64, error) {
	def = proto.CloneOf(def)
	def.Revision = 0
	def.AuthValue, def.ClientSecret, def.StaticHeaders, def.AuthValueSet, def.ClientSecretSet, def.StaticHeaderNames = "", "", nil, false, false, nil
	rec := &storev1.ServerRecord{Server: def}
	if sec != nil && (sec.GetAuthValue() != "" || sec.GetClientSecret() != "" || len(sec.GetStaticHeaders()) > 0) {
		pt, err := proto.MarshalOptions{Deterministic: true}.Marshal(sec)
		if err != nil {
			return 0, fmt.Errorf("marshal server secrets: %w", err)
		}
		if rec.SealedSecrets, err = s.seal.Seal(pt, serverAD(def.GetName())); err != nil {
			return 0, err
		}
	}
	b, err := proto.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("marshal server: %w", err)
	}
	// A server may not take a virtual server's name (one namespace).
	return s.putIf(ctx, key(KindServer, def.GetName()), b, expected,
		clientv3.Compare(clientv3.CreateRevision(key(KindVirtualServer, def.GetName())), "=", 0))
}

// DeleteServer deletes a server iff its revision equals expected (0 = any).
func (s *Store) DeleteServer(ctx context.Context, name string, expected int64) (int64, error) {
	return s.del(ctx, key(KindServer, name), expected)
}

// ---- principals

func decodePrincipal(_ string, value []byte, rev int64) (any, error) {
	var p configv1.Principal
	if err := proto.Unmarshal(value, &p); err != nil {
		return nil, fmt.Errorf("decode principal: %w", err)
	}
	p.Revision = rev
	return &p, nil
}

// Principal returns the cached principal called name.
func (s *Store) Principal(name string) (*configv1.Principal, bool) {
	return cached[*configv1.Principal](s.cache, KindPrincipal, name)
}

// principalUID reads the uid of the principal called name from etcd, not
// the cache: a key or grant written right after its principal (apply
// creates both at once) must bind to that principal, and the cache may
// not have seen it yet. "" when there is no such principal.
func (s *Store) principalUID(ctx context.Context, name string) (string, error) {
	resp, err := s.kv.Get(ctx, key(KindPrincipal, name))
	if err != nil {
		return "", fmt.Errorf("read principal: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	v, err := decodePrincipal(name, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	if err != nil {
		return "", err
	}
	return v.(*configv1.Principal).GetUid(), nil
}

// Principals returns every cached principal, sorted by name.
func (s *Store) Principals() []*configv1.Principal {
	out := cachedList[*configv1.Principal](s.cache, KindPrincipal)
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// PutPrincipal stores p iff its revision equals expected (0 = create). A
// principal created without a uid gets a new random one; on replace the
// caller passes the stored uid on (it never changes).
func (s *Store) PutPrincipal(ctx context.Context, p *configv1.Principal, expected int64) (int64, error) {
	p = proto.CloneOf(p)
	p.Revision = 0
	if expected == 0 && p.GetUid() == "" {
		p.Uid = NewUID()
	}
	b, err := proto.Marshal(p)
	if err != nil {
		return 0, fmt.Errorf("marshal principal: %w", err)
	}
	return s.put(ctx, key(KindPrincipal, p.GetName()), b, expected)
}

// NewUID returns a new random principal uid (128 bits, hex).
func NewUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// PrincipalBound returns the cached principal called name when its uid is
// uid: the principal a key, token, session or grant bound to (name, uid)
// belongs to. A record without a uid (written before uids existed) matches
// only a principal without one, so a principal created again under the
// same name, which always gets a uid, matches none of the old records.
func (s *Store) PrincipalBound(name, uid string) (*configv1.Principal, bool) {
	p, ok := s.Principal(name)
	if !ok || p.GetUid() != uid {
		return nil, false
	}
	return p, true
}

// DeletePrincipal deletes a principal iff its revision equals expected (0 = any).
func (s *Store) DeletePrincipal(ctx context.Context, name string, expected int64) (int64, error) {
	return s.del(ctx, key(KindPrincipal, name), expected)
}

// ---- API keys

// HashKey is how API keys are stored and looked up.
func HashKey(plaintext string) [32]byte { return sha256.Sum256([]byte(plaintext)) }

func decodeKey(_ string, value []byte, rev int64) (any, error) {
	var r storev1.KeyRecord
	if err := proto.Unmarshal(value, &r); err != nil {
		return nil, fmt.Errorf("decode key: %w", err)
	}
	if r.Key == nil {
		r.Key = &configv1.ApiKey{}
	}
	r.Key.Revision = rev
	return &r, nil
}

// Key returns the cached key with id.
func (s *Store) Key(id string) (*storev1.KeyRecord, bool) {
	return cached[*storev1.KeyRecord](s.cache, KindKey, id)
}

// KeyByHash finds a key by the SHA-256 of its plaintext. Key ids are derived
// from the hash, so this is one map lookup; the whole stored hash is then
// compared, so a key matching only the id's prefix is not found.
func (s *Store) KeyByHash(sum [32]byte) (*storev1.KeyRecord, bool) {
	rec, ok := s.Key(KeyID(sum))
	if !ok || !sameHash(rec.GetSha256(), sum) {
		return nil, false
	}
	return rec, true
}

// KeyID is the id of the key whose SHA-256 is sum: a prefix of the hash,
// which reveals nothing usable about the key.
func KeyID(sum [32]byte) string { return fmt.Sprintf("%x", sum[:12]) }

// Keys returns every cached key, sorted by creation time.
func (s *Store) Keys() []*storev1.KeyRecord {
	out := cachedList[*storev1.KeyRecord](s.cache, KindKey)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].GetKey(), out[j].GetKey()
		if !a.GetCreateTime().AsTime().Equal(b.GetCreateTime().AsTime()) {
			return a.GetCreateTime().AsTime().Before(b.GetCreateTime().AsTime())
		}
		return a.GetId() < b.GetId()
	})
	return out
}

// PutKey stores a key record iff its revision equals expected (0 = create).
// A key created without a principal uid is bound to the uid its principal
// has now.
func (s *Store) PutKey(ctx context.Context, r *storev1.KeyRecord, expected int64) (int64, error) {
	r = proto.CloneOf(r)
	r.Key.Revision = 0
	if expected == 0 && r.GetPrincipalUid() == "" {
		uid, err := s.principalUID(ctx, r.GetKey().GetPrincipal())
		if err != nil {
			return 0, err
		}
		r.PrincipalUid = uid
	}
	b, err := proto.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("marshal key: %w", err)
	}
	return s.put(ctx, key(KindKey, r.GetKey().GetId()), b, expected)
}

// DeleteKey deletes a key record iff its revision equals expected (0 = any).
func (s *Store) DeleteKey(ctx context.Context, id string, expected int64) (int64, error) {
	return s.del(ctx, key(KindKey, id), expected)
}

// ---- vault grants

// Grant is a decoded vault grant.
type Grant struct {
	Conn     *vaultv1.Connection // revision set
	Token    *storev1.UpstreamToken
	Revision int64
}

// GrantAD binds a grant's ciphertext to (principal, server, kind).
func GrantAD(principal, server string) []byte {
	return []byte("mcpgate/grant/" + principal + "/" + server)
}

func grantName(principal, server string) string { return principal + "\x1f" + server }

func (s *Store) decodeGrant(_ string, value []byte, rev int64) (any, error) {
	var r storev1.GrantRecord
	if err := proto.Unmarshal(value, &r); err != nil {
		return nil, fmt.Errorf("decode grant: %w", err)
	}
	c := r.GetConnection()
	if c == nil {
		return nil, errors.New("decode grant: no connection")
	}
	c.Revision = rev
	tok := &storev1.UpstreamToken{}
	if len(r.GetSealedToken()) > 0 {
		pt, err := s.seal.Open(r.GetSealedToken(), GrantAD(c.GetPrincipal(), c.GetServer()))
		if err != nil {
			return nil, fmt.Errorf("open grant: %w", err)
		}
		if err := proto.Unmarshal(pt, tok); err != nil {
			return nil, fmt.Errorf("decode grant token: %w", err)
		}
	}
	return &Grant{Conn: c, Token: tok, Revision: rev}, nil
}

// Grant returns the cached grant of principal for server.
func (s *Store) Grant(principal, server string) (*Grant, bool) {
	return cached[*Grant](s.cache, KindGrant, grantName(principal, server))
}

// Grants returns every cached grant, sorted by principal then server.
func (s *Store) Grants() []*Grant {
	out := cachedList[*Grant](s.cache, KindGrant)
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Conn, out[j].Conn
		if a.GetPrincipal() != b.GetPrincipal() {
			return a.GetPrincipal() < b.GetPrincipal()
		}
		return a.GetServer() < b.GetServer()
	})
	return out
}

// PutGrant seals tok and stores the grant iff its revision equals expected
// (0 = create, -1 = unconditional). A connection without a principal uid is
// bound to the uid the principal has now: every such write is a sign-in by
// that principal, or an update of a grant it was just allowed to use.
func (s *Store) PutGrant(ctx context.Context, conn *vaultv1.Connection, tok *storev1.UpstreamToken, expected int64) (int64, error) {
	conn = proto.CloneOf(conn)
	conn.Revision = 0
	if conn.GetPrincipalUid() == "" {
		uid, err := s.principalUID(ctx, conn.GetPrincipal())
		if err != nil {
			return 0, err
		}
		conn.PrincipalUid = uid
	}
	pt, err := proto.Marshal(tok)
	if err != nil {
		return 0, fmt.Errorf("marshal token: %w", err)
	}
	sealed, err := s.seal.Seal(pt, GrantAD(conn.GetPrincipal(), conn.GetServer()))
	if err != nil {
		return 0, err
	}
	b, err := proto.Marshal(&storev1.GrantRecord{Connection: conn, SealedToken: sealed})
	if err != nil {
		return 0, fmt.Errorf("marshal grant: %w", err)
	}
	return s.put(ctx, key(KindGrant, grantName(conn.GetPrincipal(), conn.GetServer())), b, expected)
}

// DeleteGrant deletes a grant iff its revision equals expected (0 = any).
func (s *Store) DeleteGrant(ctx context.Context, principal, server string, expected int64) (int64, error) {
	return s.del(ctx, key(KindGrant, grantName(principal, server)), expected)
}

// ---- session keys

// SessionKey is an unsealed key of the session-handle key ring.
type SessionKey struct {
	ID      string
	Key     []byte
	Created time.Time
}

func sessionKeyAD(id string) []byte { return []byte("mcpgate/session-key/" + id) }

func (s *Store) decodeSessionKey(name string, value []byte, _ int64) (any, error) {
	var r storev1.SessionKeyRecord
	if err := proto.Unmarshal(value, &r); err != nil {
		return nil, fmt.Errorf("decode session key: %w", err)
	}
	k, err := s.seal.Open(r.GetSealedKey(), sessionKeyAD(name))
	if err != nil {
		return nil, fmt.Errorf("open session key: %w", err)
	}
	return &SessionKey{ID: name, Key: k, Created: r.GetCreateTime().AsTime()}, nil
}

// SessionKeys returns the key ring, newest first.
func (s *Store) SessionKeys() []*SessionKey {
	out := cachedList[*SessionKey](s.cache, KindSessionKey)
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID > out[j].ID
	})
	return out
}

// PutSessionKey seals and stores a new key-ring key (create only).
func (s *Store) PutSessionKey(ctx context.Context, k *SessionKey) (int64, error) {
	sealed, err := s.seal.Seal(k.Key, sessionKeyAD(k.ID))
	if err != nil {
		return 0, err
	}
	b, err := proto.Marshal(&storev1.SessionKeyRecord{Id: k.ID, SealedKey: sealed, CreateTime: timestamppb.New(k.Created)})
	if err != nil {
		return 0, fmt.Errorf("marshal session key: %w", err)
	}
	return s.put(ctx, key(KindSessionKey, k.ID), b, 0)
}

// ---- short-lived and uncached records (OAuth state, codes, tokens)

// PutLeased stores value at <kind>/<name> on a fresh lease of ttl, create
// only. The record disappears by itself when the lease expires.
func (s *Store) PutLeased(ctx context.Context, kind, name string, value []byte, ttl time.Duration) (int64, error) {
	return s.PutLeasedAt(ctx, kind, name, value, ttl, 0)
}

// PutLeasedAt stores value at <kind>/<name> on a fresh lease of ttl iff its
// revision equals expected (0 = create, -1 = unconditional): it renews a
// short-lived record.
// No lease outlives its use: a lease whose write failed is revoked, and so
// is the lease of the record it replaced (which holds nothing else).
func (s *Store) PutLeasedAt(ctx context.Context, kind, name string, value []byte, ttl time.Duration, expected int64) (int64, error) {
	secs := int64(ttl / time.Second)
	if secs < 1 {
		secs = 1
	}
	lease, err := s.kv.Grant(ctx, secs)
	if err != nil {
		return 0, wrap("lease", err)
	}
	k := key(kind, name)
	txn := s.kv.Txn(ctx)
	if expected >= 0 {
		txn = txn.If(clientv3.Compare(clientv3.ModRevision(k), "=", expected))
	}
	resp, err := txn.Then(clientv3.OpPut(k, string(value), clientv3.WithLease(lease.ID), clientv3.WithPrevKV())).Commit()
	if err != nil || !resp.Succeeded {
		s.revokeLease(lease.ID)
		if err != nil {
			return 0, wrap("put "+k, err)
		}
		return 0, fmt.Errorf("put %s at revision %d: %w", k, expected, ErrConflict)
	}
	if prev := resp.Responses[0].GetResponsePut().GetPrevKv(); prev != nil && prev.Lease != 0 && clientv3.LeaseID(prev.Lease) != lease.ID {
		s.revokeLease(clientv3.LeaseID(prev.Lease))
	}
	return resp.Header.Revision, nil
}

// revokeLease revokes a lease that holds no record any more, best effort:
// one that stays expires with its TTL.
func (s *Store) revokeLease(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := s.kv.Revoke(ctx, id); err != nil {
		s.log.Debug("revoke unused lease", "err", err)
	}
}

// Get reads <kind>/<name> straight from etcd (linearizable).
func (s *Store) Get(ctx context.Context, kind, name string) ([]byte, int64, error) {
	resp, err := s.kv.Get(ctx, key(kind, name))
	if err != nil {
		return nil, 0, wrap("get "+kind, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("get %s: %w", kind, ErrNotFound)
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// take reads and deletes <kind>/<name> atomically, in one round trip (a
// delete returning the deleted record): exactly one caller gets the value
// (single-use codes and states).
func (s *Store) take(ctx context.Context, kind, name string) ([]byte, error) {
	resp, err := s.kv.Delete(ctx, key(kind, name), clientv3.WithPrevKV())
	if err != nil {
		return nil, wrap("take "+kind, err)
	}
	if resp.Deleted == 0 || len(resp.PrevKvs) == 0 {
		return nil, fmt.Errorf("take %s: %w", kind, ErrNotFound)
	}
	return resp.PrevKvs[0].Value, nil
}

// List reads every record of kind straight from etcd.
func (s *Store) List(ctx context.Context, kind string) (map[string][]byte, error) {
	p := Prefix + kind + "/"
	resp, err := s.kv.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, wrap("list "+kind, err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key)[len(p):]] = kv.Value
	}
	return out, nil
}

// Seal and Open expose the store's sealer to control-plane packages that
// keep their own records.
func (s *Store) Seal(pt, ad []byte) ([]byte, error) { return s.seal.Seal(pt, ad) }

// Open opens a value sealed by Seal with the same associated data.
func (s *Store) Open(ct, ad []byte) ([]byte, error) { return s.seal.Open(ct, ad) }

// DefaultLockTTL is the lease, in seconds, of the store's lock session: a
// crashed holder's locks are released after that long.
const DefaultLockTTL = 15

// WithLockTTL sets the lease of the store's lock session in seconds.
func WithLockTTL(seconds int) Option {
	return func(s *Store) { s.lockTTL = max(seconds, 1) }
}

// Lock takes the etcd lock called name, held on the store's one long-lived
// lock session (a lease kept alive while this process runs, so a crashed
// holder's locks go after the lock TTL). unlock releases it.
func (s *Store) Lock(ctx context.Context, name string) (unlock func(), err error) {
	sess, err := s.lockSession(ctx)
	if err != nil {
		return nil, err
	}
	m := concurrency.NewMutex(sess, Prefix+"locks/"+name)
	if err := m.Lock(ctx); err != nil {
		return nil, wrap("lock "+name, err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Unlock(uctx)
	}, nil
}

// lockSession returns the store's lock session, creating it (again, after
// its lease was lost) when needed. Granting the lease honours ctx; keeping
// it alive does not: the session lives until Run returns.
func (s *Store) lockSession(ctx context.Context) (*concurrency.Session, error) {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if s.lockSess != nil {
		select {
		case <-s.lockSess.Done():
			s.lockSess = nil // lease lost: its locks are gone too
		default:
			return s.lockSess, nil
		}
	}
	if s.lockCtx == nil {
		s.lockCtx, s.lockStop = context.WithCancel(context.Background())
	}
	lease, err := s.kv.Grant(ctx, int64(s.lockTTL))
	if err != nil {
		return nil, wrap("lock session", err)
	}
	sess, err := concurrency.NewSession(s.kv, concurrency.WithLease(lease.ID), concurrency.WithContext(s.lockCtx))
	if err != nil {
		s.revokeLease(lease.ID)
		return nil, wrap("lock session", err)
	}
	s.lockSess = sess
	return sess, nil
}

// closeLockSession ends the lock session (its lease is revoked, releasing
// any lock still held).
func (s *Store) closeLockSession() {
	s.lockMu.Lock()
	defer s.lockMu.Unlock()
	if s.lockSess != nil {
		_ = s.lockSess.Close()
		s.lockSess = nil
	}
	if s.lockStop != nil {
		s.lockStop()
		s.lockCtx, s.lockStop = nil, nil
	}
}

// ---- gateway access tokens

func decodeAccessToken(_ string, value []byte, _ int64) (any, error) {
	var r storev1.AccessTokenRecord
	if err := proto.Unmarshal(value, &r); err != nil {
		return nil, fmt.Errorf("decode access token: %w", err)
	}
	return &r, nil
}

// AccessToken finds a gateway access token by the SHA-256 of its plaintext:
// the record under the hash's id whose stored hash is the whole of sum
// (compared in constant time, like KeyByHash). Expired tokens may linger
// until their lease ends: callers check expiry.
func (s *Store) AccessToken(sum [32]byte) (*storev1.AccessTokenRecord, bool) {
	rec, ok := cached[*storev1.AccessTokenRecord](s.cache, KindAccessToken, KeyID(sum))
	if !ok || !sameHash(rec.GetSha256(), sum) {
		return nil, false
	}
	return rec, true
}

// PutAccessToken stores a gateway access token on a lease that ends with
// it, with its whole hash sum.
func (s *Store) PutAccessToken(ctx context.Context, sum [32]byte, r *storev1.AccessTokenRecord) (int64, error) {
	r = proto.CloneOf(r)
	r.Sha256 = sum[:]
	return s.AccessTokens().Create(ctx, sum, r, time.Until(r.GetExpireTime().AsTime())+time.Second)
}
