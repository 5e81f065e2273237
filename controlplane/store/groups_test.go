package store_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

func TestGroupsCached(t *testing.T) {
	srv := etcdtest.Start(t)
	st := startFollowing(t, srv.Client(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := t.Context()
	rev, err := st.PutGroup(ctx, &configv1.Group{Name: "release", Servers: []string{"github"}, Revision: 99}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutGroup(ctx, &configv1.Group{Name: "release"}, 0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	g, ok := st.Group("release")
	if want := (&configv1.Group{Name: "release", Servers: []string{"github"}, Revision: rev}); !ok || !proto.Equal(g, want) {
		t.Fatalf("Group = %v, %v; want %v", g, ok, want)
	}
	if _, err := st.PutGroup(ctx, &configv1.Group{Name: "dev"}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteGroup(ctx, "release", rev+100); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("delete at wrong revision: %v, want ErrConflict", err)
	}
	drev, err := st.DeleteGroup(ctx, "release", rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, drev); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Group("release"); ok {
		t.Fatal("deleted group still cached")
	}
	if gs := st.Groups(); len(gs) != 1 || gs[0].GetName() != "dev" {
		t.Fatalf("Groups = %v, want [dev]", gs)
	}
	if _, err := st.DeleteGroup(ctx, "release", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete missing: %v, want ErrNotFound", err)
	}
}

func TestSetAssertedGroups(t *testing.T) {
	srv := etcdtest.Start(t)
	st := startFollowing(t, srv.Client(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := t.Context()
	user := configv1.PrincipalKind_PRINCIPAL_KIND_USER
	prev, err := st.PutPrincipal(ctx, &configv1.Principal{Name: "bob", Kind: user, Servers: []string{"notes"}, Groups: []string{"admins"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t1 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Hour)
	read := func() *configv1.Principal {
		t.Helper()
		b, _, err := st.Get(ctx, store.KindPrincipal, "bob")
		if err != nil {
			t.Fatal(err)
		}
		var p configv1.Principal
		if err := proto.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		return &p
	}
	as := func(idp string, at time.Time, groups ...string) []*configv1.GroupAssertion {
		var out []*configv1.GroupAssertion
		for _, g := range groups {
			out = append(out, &configv1.GroupAssertion{Group: g, IdentityProvider: idp, AssertTime: timestamppb.New(at)})
		}
		return out
	}
	for _, step := range []struct {
		name   string
		idp    string
		groups []string
		at     time.Time
		want   []*configv1.GroupAssertion
	}{
		// Invalid names (they can name no group) are dropped, duplicates count once, sorted.
		{"first okta", "okta", []string{"release", "eng", "eng", "Team Blue", ""}, t1, as("okta", t1, "eng", "release")},
		{"entra kept apart", "entra", []string{"ops"}, t1, append(as("entra", t1, "ops"), as("okta", t1, "eng", "release")...)},
		{"okta replaces its own", "okta", []string{"eng"}, t2, append(as("entra", t1, "ops"), as("okta", t2, "eng")...)},
		{"okta asserts none", "okta", nil, t2, as("entra", t1, "ops")},
	} {
		if err := st.SetAssertedGroups(ctx, "bob", step.idp, step.groups, step.at); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		p := read()
		if w := (&configv1.Principal{AssertedGroups: step.want}); !proto.Equal(w, &configv1.Principal{AssertedGroups: p.GetAssertedGroups()}) {
			t.Fatalf("%s: asserted = %v, want %v", step.name, p.GetAssertedGroups(), step.want)
		}
		// The rest of the principal is untouched.
		if p.GetUid() == "" || p.GetServers()[0] != "notes" || p.GetGroups()[0] != "admins" {
			t.Fatalf("%s: principal changed: %v", step.name, p)
		}
	}
	// It wrote at a new revision: a write at the earlier one conflicts (CAS).
	if _, err := st.PutPrincipal(ctx, &configv1.Principal{Name: "bob", Kind: user}, prev); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("put at the pre-assertion revision: %v, want ErrConflict", err)
	}
	if err := st.SetAssertedGroups(ctx, "nobody", "okta", []string{"eng"}, t1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing principal: %v, want ErrNotFound", err)
	}
	if err := st.SetAssertedGroups(ctx, "bob", "", []string{"eng"}, t1); err == nil {
		t.Fatal("empty identity provider accepted")
	}
	// Concurrent sign-ins through different providers all land: each
	// write is a CAS on the principal's revision, retried on conflict.
	var wg sync.WaitGroup
	errs := make(chan error, 15)
	for i := range 3 {
		wg.Go(func() {
			for j := range 5 {
				errs <- st.SetAssertedGroups(ctx, "bob", fmt.Sprintf("idp%d", i), []string{fmt.Sprintf("g%d", j)}, t1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent SetAssertedGroups: %v", err)
		}
	}
	want := append(as("entra", t1, "ops"), append(as("idp0", t1, "g4"), append(as("idp1", t1, "g4"), as("idp2", t1, "g4")...)...)...)
	if got := read().GetAssertedGroups(); !proto.Equal(&configv1.Principal{AssertedGroups: want}, &configv1.Principal{AssertedGroups: got}) {
		t.Fatalf("after concurrent sign-ins: %v, want %v", got, want)
	}
}
