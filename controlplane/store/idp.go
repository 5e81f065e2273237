package store

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// IdentityProvider is a decoded identity provider: the public definition
// (client_secret cleared, client_secret_set and revision set) and its
// unsealed client secret.
type IdentityProvider struct {
	Def          *configv1.IdentityProvider
	ClientSecret string
}

func idpAD(name string) []byte { return []byte("mcpgate/idp-secrets/" + name) }

func (s *Store) decodeIdentityProvider(name string, value []byte, rev int64) (any, error) {
	var rec storev1.IdentityProviderRecord
	if err := proto.Unmarshal(value, &rec); err != nil {
		return nil, fmt.Errorf("decode identity provider: %w", err)
	}
	sec := &storev1.IdentityProviderSecrets{}
	if len(rec.GetSealedSecrets()) > 0 {
		pt, err := s.seal.Open(rec.GetSealedSecrets(), idpAD(name))
		if err != nil {
			return nil, fmt.Errorf("open identity provider secrets: %w", err)
		}
		if err := proto.Unmarshal(pt, sec); err != nil {
			return nil, fmt.Errorf("decode identity provider secrets: %w", err)
		}
	}
	def := rec.GetIdentityProvider()
	if def == nil {
		def = &configv1.IdentityProvider{Name: name}
	}
	def.Revision = rev
	def.ClientSecret = ""
	def.ClientSecretSet = sec.GetClientSecret() != ""
	return &IdentityProvider{Def: def, ClientSecret: sec.GetClientSecret()}, nil
}

// IdentityProvider returns the cached identity provider called name.
func (s *Store) IdentityProvider(name string) (*IdentityProvider, bool) {
	return cached[*IdentityProvider](s.cache, KindIdentityProvider, name)
}

// IdentityProviders returns every cached identity provider, sorted by name.
func (s *Store) IdentityProviders() []*IdentityProvider {
	out := cachedList[*IdentityProvider](s.cache, KindIdentityProvider)
	sort.Slice(out, func(i, j int) bool { return out[i].Def.GetName() < out[j].Def.GetName() })
	return out
}

// PutIdentityProvider stores def with its client secret sealed iff the
// stored revision equals expected (0 = create). def's client_secret and
// output fields are not stored in the clear.
func (s *Store) PutIdentityProvider(ctx context.Context, def *configv1.IdentityProvider, clientSecret string, expected int64) (int64, error) {
	def = proto.CloneOf(def)
	def.Revision, def.ClientSecret, def.ClientSecretSet = 0, "", false
	rec := &storev1.IdentityProviderRecord{IdentityProvider: def}
	if clientSecret != "" {
		pt, err := proto.Marshal(&storev1.IdentityProviderSecrets{ClientSecret: clientSecret})
		if err != nil {
			return 0, fmt.Errorf("marshal identity provider secrets: %w", err)
		}
		if rec.SealedSecrets, err = s.seal.Seal(pt, idpAD(def.GetName())); err != nil {
			return 0, err
		}
	}
	b, err := proto.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("marshal identity provider: %w", err)
	}
	return s.put(ctx, key(KindIdentityProvider, def.GetName()), b, expected)
}

// DeleteIdentityProvider deletes an identity provider iff its revision
// equals expected (0 = any).
func (s *Store) DeleteIdentityProvider(ctx context.Context, name string, expected int64) (int64, error) {
	return s.del(ctx, key(KindIdentityProvider, name), expected)
}
