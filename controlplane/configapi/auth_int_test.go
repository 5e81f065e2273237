package configapi_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

func TestAdminAuth(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.putPrincipal("alice", configv1.Role_ROLE_MEMBER)
	memberKey, _ := e.createKey("alice")
	e.putPrincipal("root2", configv1.Role_ROLE_ADMIN)
	secondAdmin, _ := e.createKey("root2")

	// An expired key, written straight to the store (the API refuses a past
	// expiry).
	expired := configapi.NewKey()
	sum := store.HashKey(expired)
	rev, err := e.st.PutKey(ctx, &storev1.KeyRecord{
		Key: &configv1.ApiKey{Id: store.KeyID(sum), Principal: "root2", DisplayPrefix: expired[:10],
			CreateTime: timestamppb.New(time.Now().Add(-2 * time.Hour)), ExpireTime: timestamppb.New(time.Now().Add(-time.Hour))},
		Sha256: sum[:],
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}

	// A key whose principal is deleted.
	e.putPrincipal("gone", configv1.Role_ROLE_ADMIN)
	orphanKey, _ := e.createKey("gone")
	if _, err := e.admin().principals.DeletePrincipal(ctx, &configv1.DeletePrincipalRequest{Name: "gone"}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		header string
		code   connect.Code // 0: allowed
		msg    string
	}{
		{"no header", "", connect.CodeUnauthenticated, "admin API key required"},
		{"basic scheme", "Basic " + e.adminKey, connect.CodeUnauthenticated, "admin API key required"},
		{"bearer empty", "Bearer ", connect.CodeUnauthenticated, "admin API key required"},
		{"unknown key", "Bearer " + configapi.NewKey(), connect.CodeUnauthenticated, "invalid API key"},
		{"expired key", "Bearer " + expired, connect.CodeUnauthenticated, "invalid API key"},
		{"orphaned key", "Bearer " + orphanKey, connect.CodeUnauthenticated, "invalid API key"},
		{"member key", "Bearer " + memberKey, connect.CodePermissionDenied, "admin role required"},
		{"admin key", "Bearer " + e.adminKey, 0, ""},
		{"lowercase scheme", "bearer " + e.adminKey, 0, ""},
		{"second admin", "Bearer " + secondAdmin, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := &http.Client{Transport: headerRT{tc.header}}
			cl := configv1connect.NewServerServiceClient(hc, e.url)
			_, err := cl.ListServers(ctx, &configv1.ListServersRequest{})
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("ListServers: %v", err)
				}
				return
			}
			wantCode(t, err, tc.code, tc.msg)
			// Writes are guarded the same way, and nothing is stored.
			_, err = configv1connect.NewPrincipalServiceClient(hc, e.url).PutPrincipal(ctx, &configv1.PutPrincipalRequest{
				Principal: &configv1.Principal{Name: "intruder", Kind: configv1.PrincipalKind_PRINCIPAL_KIND_USER, Role: configv1.Role_ROLE_ADMIN},
			})
			wantCode(t, err, tc.code, tc.msg)
			if _, ok := e.st.Principal("intruder"); ok {
				t.Fatal("unauthenticated write was stored")
			}
		})
	}
}

type headerRT struct{ authz string }

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if h.authz != "" {
		r.Header.Set("Authorization", h.authz)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// A revoked key stops working on every replica, not only the one that
// revoked it.
func TestRevokedKeyStopsOnOtherReplica(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	other := e.newReplica()
	e.putPrincipal("ops", configv1.Role_ROLE_ADMIN)
	key, meta := e.createKey("ops")

	waitFor(t, "key to work on the second replica", func() bool {
		_, err := other.as(key).servers.ListServers(ctx, &configv1.ListServersRequest{})
		return err == nil
	})
	if _, err := e.admin().keys.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: meta.GetId()}); err != nil {
		t.Fatal(err)
	}
	// Read-your-writes on the replica that revoked it.
	_, err := e.as(key).servers.ListServers(ctx, &configv1.ListServersRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "invalid API key")
	waitFor(t, "revocation to reach the second replica", func() bool {
		_, err := other.as(key).servers.ListServers(ctx, &configv1.ListServersRequest{})
		return connect.CodeOf(err) == connect.CodeUnauthenticated
	})
	if _, _, state := configapi.ResolveKey(other.st, key, time.Now()); state != configapi.KeyRevoked {
		t.Fatalf("second replica state = %v, want revoked", state)
	}
}

// waitFor polls cond until it holds, failing after a generous bound. It
// checks eventual behaviour, not speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestKeyExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	e.putPrincipal("ci", configv1.Role_ROLE_ADMIN)
	exp := time.Now().Add(time.Hour)
	res, err := e.admin().keys.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: "ci", ExpireTime: timestamppb.New(exp)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, s := configapi.ResolveKey(e.st, res.GetKey(), exp.Add(-time.Second)); s != configapi.KeyValid {
		t.Fatalf("before expiry: %v", s)
	}
	if _, _, s := configapi.ResolveKey(e.st, res.GetKey(), exp); s != configapi.KeyExpired {
		t.Fatalf("at expiry: %v", s)
	}
	_, err = e.admin().keys.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: "ci", ExpireTime: timestamppb.New(time.Now().Add(-time.Minute))})
	wantCode(t, err, connect.CodeInvalidArgument, "expire_time: must be in the future")

	// Over the wire: a key that expires shortly stops working by itself.
	short, err := e.admin().keys.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: "ci", ExpireTime: timestamppb.New(time.Now().Add(time.Second))})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "short key to expire", func() bool {
		_, err := e.as(short.GetKey()).servers.ListServers(ctx, &configv1.ListServersRequest{})
		return connect.CodeOf(err) == connect.CodeUnauthenticated
	})
	if _, _, s := configapi.ResolveKey(e.st, short.GetKey(), time.Now()); s != configapi.KeyExpired {
		t.Fatalf("short key state = %v", s)
	}
}

func TestEnsureAdmin(t *testing.T) {
	e := newEnv(t) // ran EnsureAdmin once and got a key
	ctx := t.Context()
	if !regexp.MustCompile(`^mcpg_[A-Za-z0-9]{40}$`).MatchString(e.adminKey) {
		t.Fatalf("admin key %q has the wrong shape", e.adminKey[:10])
	}
	p, ok := e.st.Principal(configapi.AdminPrincipal)
	if !ok || p.GetRole() != configv1.Role_ROLE_ADMIN || p.GetKind() != configv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT || strings.Join(p.GetServers(), ",") != "*" {
		t.Fatalf("admin principal = %v", p)
	}
	again, err := configapi.EnsureAdmin(ctx, e.st, "")
	if err != nil || again != "" {
		t.Fatalf("second EnsureAdmin = %q, %v; want no new key", again, err)
	}

	// A pinned key is created, works, and survives revocation on restart.
	pinned := "mcpg_" + strings.Repeat("Pinned0", 6)
	if k, err := configapi.EnsureAdmin(ctx, e.st, pinned); err != nil || k != "" {
		t.Fatalf("EnsureAdmin(pinned) = %q, %v", k, err)
	}
	if _, err := e.as(pinned).servers.ListServers(ctx, &configv1.ListServersRequest{}); err != nil {
		t.Fatalf("pinned key: %v", err)
	}
	rec, _, _ := configapi.ResolveKey(e.st, pinned, time.Now())
	if _, err := e.admin().keys.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: rec.GetKey().GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, _, s := configapi.ResolveKey(e.st, pinned, time.Now()); s != configapi.KeyRevoked {
		t.Fatalf("after revoke: %v", s)
	}
	if _, err := configapi.EnsureAdmin(ctx, e.st, pinned); err != nil {
		t.Fatal(err)
	}
	if _, _, s := configapi.ResolveKey(e.st, pinned, time.Now()); s != configapi.KeyValid {
		t.Fatalf("pinned key after restart: %v", s)
	}
	if _, err := configapi.EnsureAdmin(ctx, e.st, "mcpg_short"); err == nil {
		t.Fatal("malformed pinned key accepted")
	}

	// With every admin key revoked, the next start makes a new one.
	for _, rec := range e.st.Keys() {
		if _, err := e.as(pinned).keys.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: rec.GetKey().GetId()}); err != nil {
			t.Fatal(err)
		}
	}
	fresh, err := configapi.EnsureAdmin(ctx, e.st, "")
	if err != nil || fresh == "" {
		t.Fatalf("EnsureAdmin after revoking all = %q, %v", fresh, err)
	}
	if _, err := e.as(fresh).servers.ListServers(ctx, &configv1.ListServersRequest{}); err != nil {
		t.Fatalf("fresh key: %v", err)
	}

	// A demoted admin principal gets its role back.
	cur, _ := e.st.Principal(configapi.AdminPrincipal)
	demoted := proto.CloneOf(cur)
	demoted.Role = configv1.Role_ROLE_MEMBER
	rev, err := e.st.PutPrincipal(ctx, demoted, cur.GetRevision())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := configapi.EnsureAdmin(ctx, e.st, ""); err != nil {
		t.Fatal(err)
	}
	if p, _ := e.st.Principal(configapi.AdminPrincipal); p.GetRole() != configv1.Role_ROLE_ADMIN {
		t.Fatalf("admin role not restored: %v", p.GetRole())
	}
	if _, err := e.as(fresh).servers.ListServers(context.WithoutCancel(ctx), &configv1.ListServersRequest{}); err != nil {
		t.Fatalf("fresh key after role restore: %v", err)
	}
}
