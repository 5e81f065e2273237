package oauth

import (
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
)

// FuzzOpenRequest: opening a sealed pending authorization request never
// panics, refuses everything but the exact value /authorize issued, and
// refuses it once expired.
func FuzzOpenRequest(f *testing.F) {
	kr, err := vault.Generate()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	// The store's sealer is all this needs; nothing reaches etcd.
	s := New(store.New(nil, kr, slog.New(slog.DiscardHandler)), Config{Now: func() time.Time { return now }}, slog.New(slog.DiscardHandler))
	valid, err := s.sealRequest(&storev1.OAuthAuthorization{
		ClientId: "c1", RedirectUri: "http://127.0.0.1/cb", State: "S1", CodeChallenge: strings.Repeat("a", 43),
		Server: "Gmail", Scopes: []string{"notes.read"}, ExpireTime: timestamppb.New(now.Add(DefaultRequestTTL)),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-1])
	f.Add(valid + "A")
	f.Add(valid[:len(valid)-1] + string(valid[len(valid)-1]^1))
	f.Add("")
	f.Add(strings.Repeat("A", maxSealedRequest+1))
	f.Fuzz(func(t *testing.T, v string) {
		a, err := s.openRequest(v)
		if err != nil {
			if !errors.Is(err, errRequestGone) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if v != valid {
			t.Fatalf("opened a value /authorize never issued: %q", v)
		}
		if a.GetState() != "S1" || a.GetServer() != "Gmail" {
			t.Fatalf("opened %v", a)
		}
		later := New(s.st, Config{Now: func() time.Time { return now.Add(DefaultRequestTTL) }}, slog.New(slog.DiscardHandler))
		if _, err := later.openRequest(v); !errors.Is(err, errRequestGone) {
			t.Fatalf("expired request opened: %v", err)
		}
	})
}

// FuzzLimitKey: the rate-limit key of a client address never panics, is
// the address itself for IPv4 (IPv4-mapped IPv6 included) and the /64 for
// IPv6, so one site cannot multiply its budget by changing the low bits.
func FuzzLimitKey(f *testing.F) {
	for _, a := range []string{"192.0.2.1", "::ffff:192.0.2.1", "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "fe80::1%eth0", "192.0.2.1:443", "[2001:db8::1]:443", "", "not an address"} {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		k := limitKey(addr)
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		a = a.Unmap()
		if a.Is4() {
			if k != a.String() {
				t.Fatalf("limitKey(%q) = %q", addr, k)
			}
			return
		}
		p, err := netip.ParsePrefix(k)
		if err != nil || p.Bits() != 64 || !p.Contains(a.WithZone("")) {
			t.Fatalf("limitKey(%q) = %q, not its /64", addr, k)
		}
	})
}
