package authorize_test

import (
	"testing"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// ssoState is state plus configured identity providers (sealed records).
type ssoState struct {
	*state
	idps map[string]*store.IdentityProvider
}

func (s *ssoState) IdentityProvider(n string) (*store.IdentityProvider, bool) {
	v, ok := s.idps[n]
	return v, ok
}

func newSSOState() *ssoState {
	st := &ssoState{state: newState(), idps: map[string]*store.IdentityProvider{
		"okta": {Def: &configv1.IdentityProvider{Name: "okta"}},
	}}
	st.principals["ada"] = &configv1.Principal{Name: "ada", Uid: "u1"}
	sum := store.HashKey("mcpg_key")
	k := &storev1.KeyRecord{Key: &configv1.ApiKey{Id: store.KeyID(sum), Principal: "ada"}, Sha256: sum[:], PrincipalUid: "u1"}
	st.keys[sum], st.keysByID[k.Key.Id] = k, k
	return st
}

// An IdP source is usable while the provider is configured and the
// principal exists with the uid; a key source as before; anything else,
// and a state that cannot tell, fails closed.
func TestTokenSourceUsable_IdP(t *testing.T) {
	keyID := store.KeyID(store.HashKey("mcpg_key"))
	for _, tc := range []struct {
		name                  string
		st                    authorize.SourceState
		keyID, idp, prin, uid string
		want                  bool
	}{
		{"idp usable", newSSOState(), "", "okta", "ada", "u1", true},
		{"idp deleted", newSSOState(), "", "entra", "ada", "u1", false},
		{"principal re-created", newSSOState(), "", "okta", "ada", "u2", false},
		{"principal deleted", newSSOState(), "", "okta", "bob", "u1", false},
		{"both key and idp", newSSOState(), keyID, "okta", "ada", "u1", false},
		{"state without providers", newSSOState().state, "", "okta", "ada", "u1", false},
		{"key source", newSSOState(), keyID, "", "ada", "u1", true},
		{"no source", newSSOState(), "", "", "ada", "u1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := authorize.TokenSourceUsable(tc.st, tc.keyID, tc.idp, tc.prin, tc.uid, now); got != tc.want {
				t.Fatalf("TokenSourceUsable = %v, want %v", got, tc.want)
			}
		})
	}
}

// BenchmarkTokenSourceUsable: the per-request source check of a gateway
// token, key source against IdP source.
func BenchmarkTokenSourceUsable(b *testing.B) {
	st := newSSOState()
	keyID := store.KeyID(store.HashKey("mcpg_key"))
	b.Run("key", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !authorize.TokenSourceUsable(st, keyID, "", "ada", "u1", now) {
				b.Fatal("unusable")
			}
		}
	})
	b.Run("idp", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !authorize.TokenSourceUsable(st, "", "okta", "ada", "u1", now) {
				b.Fatal("unusable")
			}
		}
	})
}
