package store

import (
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// KeyState is whether an API key may be used.
type KeyState int

// Key states. Only KeyValid grants anything.
const (
	KeyValid    KeyState = iota
	KeyUnknown           // no key with this hash
	KeyRevoked           // revoked
	KeyExpired           // past its expire_time
	KeyOrphaned          // its principal no longer exists (or was created again)
)

func (s KeyState) String() string {
	switch s {
	case KeyValid:
		return "valid"
	case KeyUnknown:
		return "unknown"
	case KeyRevoked:
		return "revoked"
	case KeyExpired:
		return "expired"
	case KeyOrphaned:
		return "orphaned"
	}
	return "invalid"
}

// PrincipalSource is the principal lookup KeyStatus reads; *Store
// implements it.
type PrincipalSource interface {
	Principal(name string) (*configv1.Principal, bool)
}

// KeyStatus is the one rule for "is this API key usable at now": it exists,
// is not revoked, has not expired, and the principal it was created for
// still exists with the same uid (not deleted, not re-created). The
// principal is returned when it exists with the key's uid, whatever the
// state. Checks are in that order, so a revoked key of a deleted principal
// is KeyRevoked.
func KeyStatus(ps PrincipalSource, rec *storev1.KeyRecord, now time.Time) (*configv1.Principal, KeyState) {
	if rec == nil || rec.GetKey() == nil {
		return nil, KeyUnknown
	}
	var p *configv1.Principal
	if pp, ok := ps.Principal(rec.GetKey().GetPrincipal()); ok && pp.GetUid() == rec.GetPrincipalUid() {
		p = pp
	}
	switch k := rec.GetKey(); {
	case k.GetRevoked():
		return p, KeyRevoked
	case k.GetExpireTime() != nil && !now.Before(k.GetExpireTime().AsTime()):
		return p, KeyExpired
	case p == nil:
		return nil, KeyOrphaned
	}
	return p, KeyValid
}
