package vaultapi_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/controlplane/vaultapi"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

func TestRotateKey(t *testing.T) {
	cli := etcdtest.New(t)
	log := slog.New(slog.DiscardHandler)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	first := kr.PrimaryKeyID()
	st := store.New(cli, kr, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := st.WaitSynced(t.Context()); err != nil {
		t.Fatal(err)
	}
	conn := &vaultv1.Connection{Principal: "alice", Server: "notes", State: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE}
	for _, p := range []string{"alice", "bob"} {
		conn.Principal = p
		if _, err := st.PutGrant(t.Context(), conn, &storev1.UpstreamToken{AccessToken: "at-" + p, Expiry: timestamppb.New(time.Now().Add(time.Hour))}, 0); err != nil {
			t.Fatal(err)
		}
	}

	mux := http.NewServeMux()
	mux.Handle(vaultv1connect.NewVaultServiceHandler(vaultapi.New(kr, st, log)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	client := vaultv1connect.NewVaultServiceClient(srv.Client(), srv.URL)

	resp, err := client.RotateKey(t.Context(), &vaultv1.RotateKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPrimaryKeyId() == first || resp.GetPrimaryKeyId() != kr.PrimaryKeyID() || resp.GetRecordsResealed() != 2 {
		t.Fatalf("response %v (first key %d)", resp, first)
	}
	raws, err := st.List(t.Context(), store.KindGrant)
	if err != nil || len(raws) != 2 {
		t.Fatalf("grants in etcd: %d %v", len(raws), err)
	}
	for name, raw := range raws {
		var rec storev1.GrantRecord
		if err := proto.Unmarshal(raw, &rec); err != nil {
			t.Fatal(err)
		}
		if id := store.SealedKeyID(rec.GetSealedToken()); id != resp.GetPrimaryKeyId() {
			t.Fatalf("%q sealed by %d, want %d", name, id, resp.GetPrimaryKeyId())
		}
	}
	for _, p := range []string{"alice", "bob"} {
		if g, err := st.GetGrant(t.Context(), p, "notes"); err != nil || g.Token.GetAccessToken() != "at-"+p {
			t.Fatalf("grant after rotation: %v", err)
		}
	}
}

// TestPromoteKeyTwoReplicas is the multi-replica procedure: a key added to
// the keyset file and given to both replicas, then promoted on one of them;
// the other replica opens every resealed record at once.
func TestPromoteKeyTwoReplicas(t *testing.T) {
	srv := etcdtest.Start(t)
	log := slog.New(slog.DiscardHandler)
	file := t.TempDir() + "/keyset.json"
	base, err := vault.LoadOrCreate(file)
	if err != nil {
		t.Fatal(err)
	}
	added, err := base.AddKey() // `mcpgate vault add-key`: opens, does not seal yet
	if err != nil {
		t.Fatal(err)
	}
	if base.PrimaryKeyID() == added {
		t.Fatal("AddKey made the new key primary")
	}
	replica := func() (*vault.Keyring, *store.Store) {
		kr, err := vault.LoadOrCreate(file) // each replica reads the distributed file
		if err != nil {
			t.Fatal(err)
		}
		st := store.New(srv.Client(t), kr, log)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = st.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		if err := st.WaitSynced(t.Context()); err != nil {
			t.Fatal(err)
		}
		return kr, st
	}
	krA, stA := replica()
	_, stB := replica()
	conn := &vaultv1.Connection{Principal: "alice", Server: "notes", State: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE}
	rev, err := stA.PutGrant(t.Context(), conn, &storev1.UpstreamToken{AccessToken: "at-alice"}, 0)
	if err != nil {
		t.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle(vaultv1connect.NewVaultServiceHandler(vaultapi.New(krA, stA, log)))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	client := vaultv1connect.NewVaultServiceClient(hs.Client(), hs.URL)

	if _, err := client.RotateKey(t.Context(), &vaultv1.RotateKeyRequest{PromoteKeyId: 12345}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("unknown key: %v, want invalid_argument", err)
	}
	resp, err := client.RotateKey(t.Context(), &vaultv1.RotateKeyRequest{PromoteKeyId: added})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetPrimaryKeyId() != added || resp.GetRecordsResealed() != 1 {
		t.Fatalf("response %v, want key %d and 1 record", resp, added)
	}
	// Replica B never restarted: its cache must still decode the grant.
	if err := stB.WaitRevision(t.Context(), rev+1); err != nil {
		t.Fatal(err)
	}
	g, ok := stB.Grant("alice", "notes")
	if !ok || g.Token.GetAccessToken() != "at-alice" || store.SealedKeyID(mustSealed(t, stB)) != added {
		t.Fatalf("replica B after promotion: ok=%v grant=%v", ok, g)
	}
}

func mustSealed(t *testing.T, st *store.Store) []byte {
	t.Helper()
	raws, err := st.List(t.Context(), store.KindGrant)
	if err != nil || len(raws) != 1 {
		t.Fatalf("grants: %d %v", len(raws), err)
	}
	for _, raw := range raws {
		var rec storev1.GrantRecord
		if err := proto.Unmarshal(raw, &rec); err != nil {
			t.Fatal(err)
		}
		return rec.GetSealedToken()
	}
	return nil
}
