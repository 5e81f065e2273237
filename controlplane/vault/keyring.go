// Package vault seals the control plane's secrets at rest with a tink AEAD
// keyset. Associated data binds every ciphertext to the record it belongs to,
// so a ciphertext copied into another record fails to open.
package vault

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// ErrDecrypt means a ciphertext could not be opened: wrong key, wrong
// associated data, or tampering.
var ErrDecrypt = errors.New("vault: cannot open sealed value")

// Keyring seals and opens values with the primary key of a tink keyset and
// opens values sealed by any key still in it. It is safe for concurrent use.
type Keyring struct {
	mu     sync.RWMutex
	handle *keyset.Handle
	prim   tink.AEAD
	path   string // where Rotate persists the keyset; empty: not persisted
}

// Generate returns a keyring with one new AES256-GCM key.
func Generate() (*Keyring, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("new keyset: %w", err)
	}
	return fromHandle(h, "")
}

// Parse reads a keyset in tink's JSON form.
func Parse(data []byte) (*Keyring, error) {
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(bytes.NewReader(data)))
	if err != nil {
		return nil, fmt.Errorf("read keyset: %w", err)
	}
	return fromHandle(h, "")
}

// LoadOrCreate reads the keyset at path, creating it (0600) when missing.
// Rotate writes back to the same file.
func LoadOrCreate(path string) (*Keyring, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		k.path = path
		return k, nil
	case errors.Is(err, os.ErrNotExist):
		k, err := Generate()
		if err != nil {
			return nil, err
		}
		k.path = path
		if err := k.save(); err != nil {
			return nil, err
		}
		return k, nil
	default:
		return nil, fmt.Errorf("read keyset: %w", err)
	}
}

// Load reads the keyset from the MCPGATE_VAULT_KEYSET value when set, else
// from (or into) path.
func Load(envValue, path string) (*Keyring, error) {
	if envValue != "" {
		return Parse([]byte(envValue))
	}
	if path == "" {
		return nil, errors.New("vault: no keyset: set MCPGATE_VAULT_KEYSET or a keyset file")
	}
	return LoadOrCreate(path)
}

func fromHandle(h *keyset.Handle, path string) (*Keyring, error) {
	p, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("aead primitive: %w", err)
	}
	return &Keyring{handle: h, prim: p, path: path}, nil
}

// Seal encrypts plaintext bound to associatedData.
func (k *Keyring) Seal(plaintext, associatedData []byte) ([]byte, error) {
	k.mu.RLock()
	p := k.prim
	k.mu.RUnlock()
	ct, err := p.Encrypt(plaintext, associatedData)
	if err != nil {
		return nil, fmt.Errorf("vault: seal: %w", err)
	}
	return ct, nil
}

// Open decrypts a value sealed with the same associatedData by any key of the
// keyset.
func (k *Keyring) Open(ciphertext, associatedData []byte) ([]byte, error) {
	k.mu.RLock()
	p := k.prim
	k.mu.RUnlock()
	pt, err := p.Decrypt(ciphertext, associatedData)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// ErrUnknownKey means a key id is not in the keyset.
var ErrUnknownKey = errors.New("vault: key not in keyset")

// Rotate adds a new AES256-GCM key, makes it primary and persists the keyset
// when it came from a file. Old keys keep opening old values.
func (k *Keyring) Rotate() (uint32, error) {
	return k.update(func(m *keyset.Manager) (uint32, error) {
		id, err := m.Add(aead.AES256GCMKeyTemplate())
		if err != nil {
			return 0, fmt.Errorf("add key: %w", err)
		}
		return id, m.SetPrimary(id)
	})
}

// AddKey adds a new AES256-GCM key that opens but does not seal yet, and
// persists the keyset. With several replicas: add the key, give every
// replica the new keyset, then Promote it on one of them.
func (k *Keyring) AddKey() (uint32, error) {
	return k.update(func(m *keyset.Manager) (uint32, error) {
		id, err := m.Add(aead.AES256GCMKeyTemplate())
		if err != nil {
			return 0, fmt.Errorf("add key: %w", err)
		}
		return id, nil
	})
}

// Promote makes the key id, already in the keyset, the primary.
func (k *Keyring) Promote(id uint32) error {
	_, err := k.update(func(m *keyset.Manager) (uint32, error) {
		if err := m.SetPrimary(id); err != nil {
			return 0, fmt.Errorf("%w: %d", ErrUnknownKey, id)
		}
		return id, nil
	})
	return err
}

// update applies f to the keyset, swaps the primitive in and persists.
func (k *Keyring) update(f func(*keyset.Manager) (uint32, error)) (uint32, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	m := keyset.NewManagerFromHandle(k.handle)
	id, err := f(m)
	if err != nil {
		return 0, err
	}
	h, err := m.Handle()
	if err != nil {
		return 0, fmt.Errorf("keyset handle: %w", err)
	}
	p, err := aead.New(h)
	if err != nil {
		return 0, fmt.Errorf("aead primitive: %w", err)
	}
	k.handle, k.prim = h, p
	if k.path != "" {
		if err := k.saveLocked(); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// PrimaryKeyID is the id of the key that seals new values.
func (k *Keyring) PrimaryKeyID() uint32 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.handle.KeysetInfo().GetPrimaryKeyId()
}

// JSON returns the keyset in tink's JSON form (for MCPGATE_VAULT_KEYSET).
func (k *Keyring) JSON() ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(k.handle, keyset.NewJSONWriter(&buf)); err != nil {
		return nil, fmt.Errorf("write keyset: %w", err)
	}
	return buf.Bytes(), nil
}

func (k *Keyring) save() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.saveLocked()
}

func (k *Keyring) saveLocked() error {
	var buf bytes.Buffer
	if err := insecurecleartextkeyset.Write(k.handle, keyset.NewJSONWriter(&buf)); err != nil {
		return fmt.Errorf("write keyset: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fmt.Errorf("keyset dir: %w", err)
	}
	tmp := k.path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write keyset: %w", err)
	}
	if err := os.Rename(tmp, k.path); err != nil {
		return fmt.Errorf("write keyset: %w", err)
	}
	return nil
}
