package store_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

func runStore(t *testing.T, cli *clientv3.Client, s store.Sealer) *store.Store {
	t.Helper()
	st := store.New(cli, s, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := st.WaitSynced(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st
}

// onlyKey returns a keyring holding only key id of k (as a keyset whose old
// keys were deleted).
func onlyKey(t *testing.T, k *vault.Keyring, id uint32) *vault.Keyring {
	t.Helper()
	js, err := k.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var ks map[string]any
	if err := json.Unmarshal(js, &ks); err != nil {
		t.Fatal(err)
	}
	var keep []any
	for _, key := range ks["key"].([]any) {
		if uint32(key.(map[string]any)["keyId"].(float64)) == id {
			keep = append(keep, key)
		}
	}
	if len(keep) != 1 {
		t.Fatalf("key %d not in keyset", id)
	}
	ks["key"], ks["primaryKeyId"] = keep, id
	js, _ = json.Marshal(ks)
	out, err := vault.Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sealedIDs returns the tink key id of every sealed blob in etcd.
func sealedIDs(t *testing.T, cli *clientv3.Client) map[string]uint32 {
	t.Helper()
	resp, err := cli.Get(t.Context(), store.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint32{}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		var blob []byte
		switch {
		case strings.HasPrefix(k, store.Prefix+store.KindServer+"/"):
			var r storev1.ServerRecord
			_ = proto.Unmarshal(kv.Value, &r)
			blob = r.GetSealedSecrets()
		case strings.HasPrefix(k, store.Prefix+store.KindGrant+"/"):
			var r storev1.GrantRecord
			_ = proto.Unmarshal(kv.Value, &r)
			blob = r.GetSealedToken()
		case strings.HasPrefix(k, store.Prefix+store.KindSessionKey+"/"):
			var r storev1.SessionKeyRecord
			_ = proto.Unmarshal(kv.Value, &r)
			blob = r.GetSealedKey()
		default:
			continue
		}
		out[k] = store.SealedKeyID(blob)
	}
	return out
}

func TestStore_Reseal(t *testing.T) {
	cli := etcdtest.New(t)
	ctx := t.Context()
	k, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	oldID := k.PrimaryKeyID()
	st := runStore(t, cli, k)

	def := &configv1.McpServer{Name: "notes", Url: "http://up/mcp", AuthType: configv1.AuthType_AUTH_TYPE_OAUTH2, ClientId: "gw"}
	if _, err := st.PutServer(ctx, def, &storev1.ServerSecrets{ClientSecret: "client-secret-1"}, 0); err != nil {
		t.Fatal(err)
	}
	conn := &vaultv1.Connection{Principal: "alice", Server: "notes", State: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE}
	if _, err := st.PutGrant(ctx, conn, &storev1.UpstreamToken{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: timestamppb.New(time.Now().Add(time.Hour))}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutSessionKey(ctx, &store.SessionKey{ID: "sk1", Key: []byte("0123456789abcdef0123456789abcdef"), Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// A server without secrets has nothing to reseal.
	if _, err := st.PutServer(ctx, &configv1.McpServer{Name: "open", Url: "http://open/mcp"}, nil, 0); err != nil {
		t.Fatal(err)
	}

	before := sealedIDs(t, cli)
	if len(before) != 4 {
		t.Fatalf("sealed records %v", before)
	}
	newID, err := k.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if newID == oldID || k.PrimaryKeyID() != newID {
		t.Fatalf("rotate: old %d new %d primary %d", oldID, newID, k.PrimaryKeyID())
	}
	n, err := st.Reseal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("resealed %d records, want 3", n)
	}
	for key, id := range sealedIDs(t, cli) {
		want := newID
		if before[key] == 0 {
			want = 0 // no secrets
		} else if before[key] != oldID {
			t.Fatalf("%s was sealed by %d before, want %d", key, before[key], oldID)
		}
		if id != want {
			t.Errorf("%s sealed by key %d, want %d", key, id, want)
		}
	}
	if n, err := st.Reseal(ctx); err != nil || n != 0 {
		t.Fatalf("second reseal: %d %v", n, err)
	}

	// A replica holding only the new key opens everything.
	st2 := runStore(t, cli, onlyKey(t, k, newID))
	srv, ok := st2.Server("notes")
	if !ok || srv.Secrets.GetClientSecret() != "client-secret-1" {
		t.Fatalf("server: %v %v", ok, srv)
	}
	g, ok := st2.Grant("alice", "notes")
	if !ok || g.Token.GetRefreshToken() != "rt-1" || g.Token.GetAccessToken() != "at-1" {
		t.Fatalf("grant: %v %v", ok, g)
	}
	if sk := st2.SessionKeys(); len(sk) != 1 || string(sk[0].Key) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("session keys %v", sk)
	}
	// And one holding only the old key opens nothing any more.
	st3 := runStore(t, cli, onlyKey(t, k, oldID))
	if _, ok := st3.Server("notes"); ok {
		t.Fatal("old key still opens the server secrets")
	}
	if _, ok := st3.Grant("alice", "notes"); ok {
		t.Fatal("old key still opens the grant")
	}
}

// hookSealer runs hook the first time a grant is opened once armed.
type hookSealer struct {
	*vault.Keyring
	armed atomic.Bool
	hook  func()
}

func (h *hookSealer) Open(ct, ad []byte) ([]byte, error) {
	if strings.HasPrefix(string(ad), "mcpgate/grant/") && h.armed.CompareAndSwap(true, false) {
		h.hook()
	}
	return h.Keyring.Open(ct, ad)
}

// A grant rewritten while Reseal works on it is not overwritten with the
// stale plaintext: the compare-and-swap fails, Reseal re-reads, and finds
// the new value already sealed by the primary key.
func TestStore_ResealConcurrentWrite(t *testing.T) {
	cli := etcdtest.New(t)
	ctx := t.Context()
	k, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	hs := &hookSealer{Keyring: k}
	st := runStore(t, cli, hs)
	conn := &vaultv1.Connection{Principal: "alice", Server: "notes", State: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE}
	rev, err := st.PutGrant(ctx, conn, &storev1.UpstreamToken{AccessToken: "at-1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The cache must have opened the grant before the hook is armed, so
	// that the hook fires inside Reseal.
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	var hookErr error
	hs.hook = func() {
		_, hookErr = st.PutGrant(ctx, conn, &storev1.UpstreamToken{AccessToken: "at-2"}, -1)
	}
	newID, err := k.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	hs.armed.Store(true)
	n, err := st.Reseal(ctx)
	if err != nil || hookErr != nil {
		t.Fatalf("Reseal: %v, concurrent write: %v", err, hookErr)
	}
	if hs.armed.Load() {
		t.Fatal("the concurrent write never happened")
	}
	if n != 0 {
		t.Fatalf("resealed %d, want 0 (the concurrent write already used the new key)", n)
	}
	g, err := st.GetGrant(ctx, "alice", "notes")
	if err != nil {
		t.Fatal(err)
	}
	if g.Token.GetAccessToken() != "at-2" {
		t.Fatalf("grant holds %q: the concurrent write was lost", g.Token.GetAccessToken())
	}
	if id := sealedIDs(t, cli); len(id) != 1 {
		t.Fatalf("sealed records %v", id)
	} else {
		for key, got := range id {
			if got != newID {
				t.Fatalf("%s sealed by %d, want %d", key, got, newID)
			}
		}
	}
}
