package configapi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// KeyState is the outcome of resolving a presented API key (store.KeyState).
type KeyState = store.KeyState

// Key states. Only KeyValid grants anything.
const (
	KeyValid    = store.KeyValid
	KeyUnknown  = store.KeyUnknown
	KeyRevoked  = store.KeyRevoked
	KeyExpired  = store.KeyExpired
	KeyOrphaned = store.KeyOrphaned
)

// ResolveKey looks a presented API key up in the store's cache and tells
// whether it may be used at now. The record and principal are returned
// whenever they exist, even when the key is not valid.
func ResolveKey(st *store.Store, plaintext string, now time.Time) (*storev1.KeyRecord, *configv1.Principal, KeyState) {
	if plaintext == "" {
		return nil, nil, KeyUnknown
	}
	rec, ok := st.KeyByHash(store.HashKey(plaintext)) // compares the whole hash
	if !ok {
		return nil, nil, KeyUnknown
	}
	p, state := store.KeyStatus(st, rec, now)
	return rec, p, state
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// KeyPrefix starts every gateway API key.
const KeyPrefix = "mcpg_"

// NewKey returns a new API key: "mcpg_" and 40 random base62 characters
// (about 238 bits), drawn without modulo bias.
func NewKey() string {
	const n = 40
	out := make([]byte, 0, len(KeyPrefix)+n)
	out = append(out, KeyPrefix...)
	var buf [64]byte
	for len(out) < cap(out) {
		_, _ = rand.Read(buf[:]) // never fails (crypto/rand, Go 1.24+)
		for _, b := range buf {
			if b >= 248 { // 248 = 4*62: keeps the draw uniform
				continue
			}
			out = append(out, base62[b%62])
			if len(out) == cap(out) {
				break
			}
		}
	}
	return string(out)
}

// displayPrefix is the part of a key shown in lists.
func displayPrefix(key string) string { return key[:min(len(key), 10)] }

// newKeyRecord builds the stored form of plaintext, a key of p bound to its
// uid: hash and metadata only.
func newKeyRecord(plaintext string, p *configv1.Principal, name string, expire *timestamppb.Timestamp, now time.Time) *storev1.KeyRecord {
	sum := store.HashKey(plaintext)
	return &storev1.KeyRecord{
		Key: &configv1.ApiKey{
			Id:            store.KeyID(sum),
			Name:          name,
			Principal:     p.GetName(),
			DisplayPrefix: displayPrefix(plaintext),
			CreateTime:    timestamppb.New(now),
			ExpireTime:    expire,
		},
		Sha256:       sum[:],
		PrincipalUid: p.GetUid(),
	}
}

type actorKey struct{}

// actor is the principal an admin request was authenticated as.
func actor(ctx context.Context) string {
	if p, ok := ctx.Value(actorKey{}).(string); ok {
		return p
	}
	return ""
}

// AdminAuth is a Connect interceptor that admits only requests carrying
// "Authorization: Bearer <key>" for a valid key of an admin principal. Key
// state comes from the store's cache, so revocation and expiry apply to the
// next request.
type AdminAuth struct {
	st  *store.Store
	now func() time.Time
}

// NewAdminAuth returns the admin API's authentication interceptor.
func NewAdminAuth(st *store.Store) *AdminAuth { return &AdminAuth{st: st, now: time.Now} }

var (
	errKeyRequired = errors.New("admin API key required")
	errBadKey      = errors.New("invalid API key")
	errNotAdmin    = errors.New("admin role required")
)

// authenticate returns the context to continue with, or a Connect error.
func (a *AdminAuth) authenticate(ctx context.Context, authz string) (context.Context, error) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(authz), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, connect.NewError(connect.CodeUnauthenticated, errKeyRequired)
	}
	_, p, state := ResolveKey(a.st, tok, a.now())
	if state != KeyValid {
		return nil, connect.NewError(connect.CodeUnauthenticated, errBadKey)
	}
	if p.GetRole() != configv1.Role_ROLE_ADMIN {
		return nil, connect.NewError(connect.CodePermissionDenied, errNotAdmin)
	}
	return context.WithValue(ctx, actorKey{}, p.GetName()), nil
}

// WrapUnary implements connect.Interceptor.
func (a *AdminAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := a.authenticate(ctx, req.Header().Get("Authorization"))
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// WrapStreamingClient implements connect.Interceptor.
func (a *AdminAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor; no admin RPC
// streams today, but a future one is guarded the same way.
func (a *AdminAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.authenticate(ctx, conn.RequestHeader().Get("Authorization"))
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// AdminPrincipal is the name of the principal EnsureAdmin maintains.
const AdminPrincipal = "admin"

// EnsureAdmin makes sure principal "admin" (a service account with the admin
// role and every server) exists and that some admin key works. When
// pinnedKey is set (MCPGATE_ADMIN_KEY) that key is made to exist and work.
// When no usable admin key exists, one is created and its plaintext returned
// (the caller shows it once); otherwise newKey is "". Safe to run on every
// start of every replica.
func EnsureAdmin(ctx context.Context, st *store.Store, pinnedKey string) (newKey string, err error) {
	if pinnedKey != "" && !keyRE.MatchString(pinnedKey) {
		return "", errors.New("admin key must match ^mcpg_[A-Za-z0-9]{32,}$")
	}
	if err := st.WaitSynced(ctx); err != nil {
		return "", err
	}
	// A concurrent replica may win a race; re-read and retry a few times.
	for attempt := 0; ; attempt++ {
		newKey, err = ensureAdmin(ctx, st, pinnedKey, time.Now())
		if !errors.Is(err, store.ErrConflict) || attempt == 4 {
			return newKey, err
		}
		// The winner's write is in etcd but maybe not yet in our cache:
		// wait until the cache reflects etcd's current revision.
		head, herr := st.HeadRevision(ctx)
		if herr != nil {
			return "", herr
		}
		if werr := st.WaitRevision(ctx, head); werr != nil {
			return "", werr
		}
	}
}

func ensureAdmin(ctx context.Context, st *store.Store, pinnedKey string, now time.Time) (string, error) {
	var rev int64
	p, ok := st.Principal(AdminPrincipal)
	switch {
	case !ok:
		p = &configv1.Principal{
			Name:        AdminPrincipal,
			Kind:        configv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT,
			Role:        configv1.Role_ROLE_ADMIN,
			Servers:     []string{"*"},
			DisplayName: "Administrator",
			Uid:         store.NewUID(),
		}
		r, err := st.PutPrincipal(ctx, p, 0)
		if err != nil {
			return "", fmt.Errorf("create admin principal: %w", err)
		}
		rev = r
	case p.GetRole() != configv1.Role_ROLE_ADMIN:
		q := proto.CloneOf(p)
		q.Role = configv1.Role_ROLE_ADMIN
		r, err := st.PutPrincipal(ctx, q, p.GetRevision())
		if err != nil {
			return "", fmt.Errorf("restore admin role: %w", err)
		}
		rev = r
	}
	if pinnedKey != "" {
		rec, _, state := ResolveKey(st, pinnedKey, now)
		switch {
		case state == KeyUnknown:
			r, err := st.PutKey(ctx, newKeyRecord(pinnedKey, p, "admin (pinned)", nil, now), 0)
			if err != nil {
				return "", fmt.Errorf("create pinned admin key: %w", err)
			}
			rev = max(rev, r)
		case rec.GetKey().GetPrincipal() != AdminPrincipal:
			return "", errors.New("the pinned admin key belongs to another principal")
		case state == KeyRevoked || state == KeyExpired || rec.GetPrincipalUid() != p.GetUid():
			// The operator's environment is authoritative: reactivate it,
			// bound to the admin principal as it is now.
			upd := proto.CloneOf(rec)
			upd.Key.Revoked, upd.Key.RevokeTime, upd.Key.ExpireTime = false, nil, nil
			upd.PrincipalUid = p.GetUid()
			r, err := st.PutKey(ctx, upd, rec.GetKey().GetRevision())
			if err != nil {
				return "", fmt.Errorf("reactivate pinned admin key: %w", err)
			}
			rev = max(rev, r)
		}
		if rev > 0 {
			if err := st.WaitRevision(ctx, rev); err != nil {
				return "", err
			}
		}
		return "", nil
	}
	if rev > 0 {
		if err := st.WaitRevision(ctx, rev); err != nil {
			return "", err
		}
	}
	if usableAdminKey(st, now) {
		return "", nil
	}
	key := NewKey()
	r, err := st.PutKey(ctx, newKeyRecord(key, p, "admin (initial)", nil, now), 0)
	if err != nil {
		return "", fmt.Errorf("create admin key: %w", err)
	}
	if err := st.WaitRevision(ctx, r); err != nil {
		return "", err
	}
	return key, nil
}

// usableAdminKey tells whether any valid key of an admin principal exists.
func usableAdminKey(st *store.Store, now time.Time) bool {
	for _, rec := range st.Keys() {
		if p, state := store.KeyStatus(st, rec, now); state == store.KeyValid && p.GetRole() == configv1.Role_ROLE_ADMIN {
			return true
		}
	}
	return false
}
