package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// PrimaryKeyed is implemented by sealers that can say which key seals new
// values (vault.Keyring). Reseal uses it to skip records already sealed by
// that key; without it every record is resealed.
type PrimaryKeyed interface {
	PrimaryKeyID() uint32
}

// resealAttempts bounds the compare-and-swap retries of one record.
const resealAttempts = 10

// Reseal re-encrypts every sealed record (server secrets, vault grants,
// session keys) under the sealer's current primary key, online: each record
// is rewritten with compare-and-swap on its revision and re-read on
// conflict, so concurrent writers are never overwritten. It returns how many
// records it rewrote. Uncached records that other packages seal themselves
// (short-lived OAuth state on leases) are not touched; old keys must stay in
// the keyset until those have expired.
func (s *Store) Reseal(ctx context.Context) (int, error) {
	n := 0
	for _, kind := range []string{KindServer, KindGrant, KindSessionKey} {
		resp, err := s.kv.Get(ctx, Prefix+kind+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return n, wrap("list "+kind, err)
		}
		for _, kv := range resp.Kvs {
			name := string(kv.Key)[len(Prefix+kind+"/"):]
			done, err := s.resealOne(ctx, kind, name)
			if err != nil {
				return n, err
			}
			if done {
				n++
			}
		}
	}
	return n, nil
}

// resealOne rewrites one record; false means it was gone or already sealed
// by the primary key.
func (s *Store) resealOne(ctx context.Context, kind, name string) (bool, error) {
	k := key(kind, name)
	for range resealAttempts {
		value, rev, err := s.Get(ctx, kind, name)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		out, changed, err := s.resealValue(kind, name, value)
		if err != nil {
			return false, fmt.Errorf("reseal %s/%s: %w", kind, name, err)
		}
		if !changed {
			return false, nil
		}
		if _, err := s.put(ctx, k, out, rev, clientv3.WithIgnoreLease()); err != nil {
			if errors.Is(err, ErrConflict) {
				continue
			}
			return false, err
		}
		return true, nil
	}
	return false, fmt.Errorf("reseal %s/%s: %w after %d attempts", kind, name, ErrConflict, resealAttempts)
}

// resealValue returns the record with its sealed part re-encrypted.
func (s *Store) resealValue(kind, name string, value []byte) ([]byte, bool, error) {
	switch kind {
	case KindServer:
		var rec storev1.ServerRecord
		if err := proto.Unmarshal(value, &rec); err != nil {
			return nil, false, err
		}
		ct, changed, err := s.resealBlob(rec.GetSealedSecrets(), serverAD(name))
		if err != nil || !changed {
			return nil, false, err
		}
		rec.SealedSecrets = ct
		b, err := proto.Marshal(&rec)
		return b, true, err
	case KindGrant:
		var rec storev1.GrantRecord
		if err := proto.Unmarshal(value, &rec); err != nil {
			return nil, false, err
		}
		c := rec.GetConnection()
		ct, changed, err := s.resealBlob(rec.GetSealedToken(), GrantAD(c.GetPrincipal(), c.GetServer()))
		if err != nil || !changed {
			return nil, false, err
		}
		rec.SealedToken = ct
		b, err := proto.Marshal(&rec)
		return b, true, err
	case KindSessionKey:
		var rec storev1.SessionKeyRecord
		if err := proto.Unmarshal(value, &rec); err != nil {
			return nil, false, err
		}
		ct, changed, err := s.resealBlob(rec.GetSealedKey(), sessionKeyAD(name))
		if err != nil || !changed {
			return nil, false, err
		}
		rec.SealedKey = ct
		b, err := proto.Marshal(&rec)
		return b, true, err
	default:
		return nil, false, fmt.Errorf("kind %q holds no sealed value", kind)
	}
}

func (s *Store) resealBlob(ct, ad []byte) ([]byte, bool, error) {
	if len(ct) == 0 {
		return nil, false, nil
	}
	if pk, ok := s.seal.(PrimaryKeyed); ok && SealedKeyID(ct) == pk.PrimaryKeyID() {
		return nil, false, nil
	}
	pt, err := s.seal.Open(ct, ad)
	if err != nil {
		return nil, false, err
	}
	out, err := s.seal.Seal(pt, ad)
	if err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// SealedKeyID is the id of the tink key that sealed ct, read from tink's
// 5-byte output prefix (0x01 and the big-endian key id); 0 when ct has no
// tink prefix.
func SealedKeyID(ct []byte) uint32 {
	if len(ct) < 5 || ct[0] != 0x01 {
		return 0
	}
	return binary.BigEndian.Uint32(ct[1:5])
}
