package vault_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mcpgate/mcpgate/controlplane/vault"
)

func TestKeyring(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keyset.json")
	kr, err := vault.LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyset file: %v %v", fi, err)
	}
	ad := []byte("mcpgate/grant/alice/notes")
	ct, err := kr.Seal([]byte("secret-token"), ad)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := kr.Open(ct, ad); err != nil || string(pt) != "secret-token" {
		t.Fatalf("open: %q %v", pt, err)
	}
	// A ciphertext moved to another record does not open.
	if _, err := kr.Open(ct, []byte("mcpgate/grant/bob/notes")); !errors.Is(err, vault.ErrDecrypt) {
		t.Fatalf("open with other associated data: %v, want ErrDecrypt", err)
	}
	old := kr.PrimaryKeyID()
	id, err := kr.Rotate()
	if err != nil || id == old || kr.PrimaryKeyID() != id {
		t.Fatalf("rotate: id %d old %d primary %d err %v", id, old, kr.PrimaryKeyID(), err)
	}
	if pt, err := kr.Open(ct, ad); err != nil || string(pt) != "secret-token" {
		t.Fatalf("old ciphertext after rotation: %q %v", pt, err)
	}
	// The rotation was persisted: a fresh load has the new primary.
	again, err := vault.LoadOrCreate(path)
	if err != nil || again.PrimaryKeyID() != id {
		t.Fatalf("reload: primary %d err %v, want %d", again.PrimaryKeyID(), err, id)
	}
	// Another keyset opens nothing of this one.
	other, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(ct, ad); !errors.Is(err, vault.ErrDecrypt) {
		t.Fatalf("foreign keyset opened: %v", err)
	}
	if err := kr.Promote(424242); !errors.Is(err, vault.ErrUnknownKey) {
		t.Fatalf("promote unknown: %v", err)
	}
	// MCPGATE_VAULT_KEYSET wins over the file.
	js, err := other.JSON()
	if err != nil {
		t.Fatal(err)
	}
	fromEnv, err := vault.Load(string(js), path)
	if err != nil || fromEnv.PrimaryKeyID() != other.PrimaryKeyID() {
		t.Fatalf("load from env: %v", err)
	}
}
