package dataplane

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

func mustKeySet(t *testing.T, keys ...*authorizev1.SessionKey) *keySet {
	t.Helper()
	ks, err := buildKeySet(&authorizev1.GetSessionKeysResponse{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestSessionHandle(t *testing.T) {
	k1 := &authorizev1.SessionKey{Id: "k1", Key: bytes.Repeat([]byte{1}, 32)}
	k2 := &authorizev1.SessionKey{Id: "k2", Key: bytes.Repeat([]byte{2}, 16)}
	ring := mustKeySet(t, k1, k2)
	want := sessionBinding{upstream: "up-123", principal: "alice", route: "Gmail"}
	h, err := ring.seal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_-]+$`).MatchString(h) || strings.Contains(h, "up-123") {
		t.Fatalf("handle %q", h)
	}
	if h2, _ := ring.seal(want); h2 == h {
		t.Fatalf("two seals gave the same handle")
	}
	got, err := ring.open(h)
	if err != nil || got != want {
		t.Fatalf("open: %v %v", got, err)
	}
	// Rotation: a ring whose first key is k2 still opens k1 handles.
	rotated := mustKeySet(t, k2, k1)
	if got, err := rotated.open(h); err != nil || got != want {
		t.Fatalf("open after rotation: %v %v", got, err)
	}
	// A ring without k1 does not know the key.
	if _, err := mustKeySet(t, k2).open(h); !errors.Is(err, errUnknownKey) {
		t.Fatalf("open without key: %v", err)
	}
	// Same id, different key material: authentication fails.
	other := mustKeySet(t, &authorizev1.SessionKey{Id: "k1", Key: bytes.Repeat([]byte{9}, 32)})
	if _, err := other.open(h); !errors.Is(err, errBadHandle) {
		t.Fatalf("open with other key: %v", err)
	}
	for _, bad := range []string{"", "!!", "AA", h[:len(h)-1], h + "A", strings.ToUpper(h)} {
		if _, err := ring.open(bad); err == nil {
			t.Errorf("opened %q", bad)
		}
	}
}

func TestBuildKeySetRejects(t *testing.T) {
	for name, keys := range map[string][]*authorizev1.SessionKey{
		"empty":     nil,
		"no id":     {{Key: bytes.Repeat([]byte{1}, 32)}},
		"short key": {{Id: "k", Key: []byte("short")}},
	} {
		if _, err := buildKeySet(&authorizev1.GetSessionKeysResponse{Keys: keys}); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
