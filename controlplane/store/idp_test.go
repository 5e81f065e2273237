package store_test

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// SetAssertedGroups (groups.go) replaces one provider's assertions, keeps
// the other provider's and the admin-set groups, and leaves every other
// field alone.
func TestSetAssertedGroupsPerProvider(t *testing.T) {
	srv := etcdtest.Start(t)
	st := startFollowing(t, srv.Client(t), slog.New(slog.DiscardHandler))
	ctx := t.Context()
	p := &configv1.Principal{Name: "ada", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Servers: []string{"notes"}, Groups: []string{"admins"}}
	if _, err := st.PutPrincipal(ctx, p, 0); err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := st.SetAssertedGroups(ctx, "ada", "okta", []string{"release", "readers", "release", ""}, t1); err != nil {
		t.Fatal(err)
	}
	if err := st.SetAssertedGroups(ctx, "ada", "entra", []string{"ops"}, t1); err != nil {
		t.Fatal(err)
	}
	t2 := t1.Add(time.Hour)
	if err := st.SetAssertedGroups(ctx, "ada", "okta", []string{"readers"}, t2); err != nil {
		t.Fatal(err)
	}
	rev, err := st.HeadRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	got, _ := st.Principal("ada")
	type a struct {
		group, idp string
		at         time.Time
	}
	var as []a
	for _, x := range got.GetAssertedGroups() {
		as = append(as, a{x.GetGroup(), x.GetIdentityProvider(), x.GetAssertTime().AsTime()})
	}
	want := []a{{"ops", "entra", t1}, {"readers", "okta", t2}}
	if len(as) != len(want) || as[0] != want[0] || as[1] != want[1] {
		t.Fatalf("asserted groups = %v, want %v", as, want)
	}
	if got.GetUid() == "" || len(got.GetServers()) != 1 || len(got.GetGroups()) != 1 || got.GetGroups()[0] != "admins" {
		t.Fatalf("other fields changed: %v", got)
	}
	if err := st.SetAssertedGroups(ctx, "nobody", "okta", nil, t1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown principal: %v", err)
	}
}

// Identity providers are cached with their client secret sealed at rest.
func TestIdentityProviderSealed(t *testing.T) {
	srv := etcdtest.Start(t)
	st := startFollowing(t, srv.Client(t), slog.New(slog.DiscardHandler))
	ctx := t.Context()
	rev, err := st.PutIdentityProvider(ctx, &configv1.IdentityProvider{Name: "okta", Issuer: "https://x.okta.com", ClientId: "c", ClientSecret: "ignored", ClientSecretSet: true}, "the-secret", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	raw, _, err := st.Get(ctx, store.KindIdentityProvider, "okta")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"the-secret", "ignored"} {
		if containsBytes(raw, s) {
			t.Fatalf("%q stored in the clear", s)
		}
	}
	idp, ok := st.IdentityProvider("okta")
	if !ok || idp.ClientSecret != "the-secret" || idp.Def.GetClientSecret() != "" || !idp.Def.GetClientSecretSet() || idp.Def.GetRevision() != rev {
		t.Fatalf("cached: %v %v", idp, ok)
	}
	if _, err := st.PutIdentityProvider(ctx, &configv1.IdentityProvider{Name: "okta"}, "", 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("create over existing: %v", err)
	}
}

func containsBytes(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if string(b[i:i+len(s)]) == s {
			return true
		}
	}
	return false
}

// Identity-provider grants are sealed and go with their principal or
// provider.
func TestIdPGrants(t *testing.T) {
	srv := etcdtest.Start(t)
	st := startFollowing(t, srv.Client(t), slog.New(slog.DiscardHandler))
	ctx := t.Context()
	for _, g := range []*store.IdPGrant{
		{Principal: "ada", PrincipalUID: "u1", IdP: "okta", RefreshToken: "rt-ada-okta"},
		{Principal: "ada", PrincipalUID: "u1", IdP: "entra", RefreshToken: "rt-ada-entra"},
		{Principal: "adam", PrincipalUID: "u2", IdP: "okta", RefreshToken: "rt-adam-okta"},
	} {
		if _, err := st.PutIdPGrant(ctx, g, 0); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := st.List(ctx, store.KindIdPGrant)
	if err != nil || len(raw) != 3 {
		t.Fatalf("list: %d %v", len(raw), err)
	}
	for _, v := range raw {
		if containsBytes(v, "rt-") {
			t.Fatal("refresh token stored in the clear")
		}
	}
	g, _, err := st.IdPGrant(ctx, "ada", "okta")
	if err != nil || g.RefreshToken != "rt-ada-okta" || g.PrincipalUID != "u1" || g.IdP != "okta" {
		t.Fatalf("get: %+v %v", g, err)
	}
	if err := st.DeleteIdPGrantsOf(ctx, "ada"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.IdPGrant(ctx, "adam", "okta"); err != nil {
		t.Fatalf("adam's grant went with ada's: %v", err)
	}
	if _, _, err := st.IdPGrant(ctx, "ada", "entra"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ada's grant stayed: %v", err)
	}
	if err := st.DeleteIdPGrantsFor(ctx, "okta"); err != nil {
		t.Fatal(err)
	}
	if raw, _ := st.List(ctx, store.KindIdPGrant); len(raw) != 0 {
		t.Fatalf("%d grants left", len(raw))
	}
}
