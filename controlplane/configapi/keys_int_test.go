package configapi_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

func TestCreateKey(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.admin().keys
	e.putPrincipal("dave", configv1.Role_ROLE_MEMBER)
	e.putPrincipal("erin", configv1.Role_ROLE_MEMBER)

	res, err := c.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: "dave", Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	key := res.GetKey()
	if !res.GetCreated() || !regexp.MustCompile(`^mcpg_[A-Za-z0-9]{40}$`).MatchString(key) {
		t.Fatalf("created=%v, key shape wrong (%d chars)", res.GetCreated(), len(key))
	}
	meta := res.GetApiKey()
	sum := store.HashKey(key)
	if meta.GetId() != store.KeyID(sum) || meta.GetDisplayPrefix() != key[:10] || meta.GetPrincipal() != "dave" || meta.GetName() != "laptop" || meta.GetRevision() == 0 {
		t.Fatalf("metadata = %v", meta)
	}
	// Only the hash reaches etcd.
	raw := e.rawValue(store.KindKey, meta.GetId())
	if bytes.Contains(raw, []byte(key)) || bytes.Contains(raw, []byte(key[10:])) {
		t.Fatal("raw etcd value contains the plaintext key")
	}
	if !bytes.Contains(raw, sum[:]) {
		t.Fatal("raw etcd value does not contain the key's SHA-256")
	}
	// Lists carry neither plaintext nor hash.
	list, err := c.ListKeys(ctx, &configv1.ListKeysRequest{Principal: "dave"})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := protojson.Marshal(list)
	if len(list.GetKeys()) != 1 || strings.Contains(string(js), key[10:]) || strings.Contains(string(js), base64.StdEncoding.EncodeToString(sum[:])) || strings.Contains(string(js), fmt.Sprintf("%x", sum)) {
		t.Fatalf("list = %s", js)
	}
	all, err := c.ListKeys(ctx, &configv1.ListKeysRequest{})
	if err != nil || len(all.GetKeys()) != 2 { // admin's and dave's
		t.Fatalf("all keys = %d, %v", len(all.GetKeys()), err)
	}
	if strings.Contains(e.logs.String(), key) {
		t.Fatal("the plaintext key reached the logs")
	}

	// Pinned keys are idempotent for the same principal.
	pinned := "mcpg_" + strings.Repeat("AbC123", 6)
	for i, want := range []bool{true, false} {
		res, err := c.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: "erin", Key: pinned})
		if err != nil || res.GetCreated() != want {
			t.Fatalf("pinned create %d: created=%v err=%v", i, res.GetCreated(), err)
		}
	}
	if _, _, s := configapi.ResolveKey(e.st, pinned, time.Now()); s != configapi.KeyValid {
		t.Fatalf("pinned key state %v", s)
	}
	_, err = c.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: "dave", Key: pinned})
	wantCode(t, err, connect.CodeAlreadyExists, "key: already exists for another principal")

	for _, tc := range []struct {
		name string
		req  *configv1.CreateKeyRequest
		code connect.Code
		msg  string
	}{
		{"no principal", &configv1.CreateKeyRequest{}, connect.CodeInvalidArgument, "principal: required"},
		{"bad principal", &configv1.CreateKeyRequest{Principal: "a/b"}, connect.CodeInvalidArgument, "principal: must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
		{"missing principal", &configv1.CreateKeyRequest{Principal: "nobody"}, connect.CodeNotFound, "principal not found"},
		{"short pinned key", &configv1.CreateKeyRequest{Principal: "dave", Key: "mcpg_abc"}, connect.CodeInvalidArgument, "key: must match ^mcpg_[A-Za-z0-9]{32,}$"},
		{"pinned key wrong prefix", &configv1.CreateKeyRequest{Principal: "dave", Key: "sk_" + strings.Repeat("a", 40)}, connect.CodeInvalidArgument, "key: must match ^mcpg_[A-Za-z0-9]{32,}$"},
		{"past expiry", &configv1.CreateKeyRequest{Principal: "dave", ExpireTime: timestamppb.New(time.Now().Add(-time.Second))}, connect.CodeInvalidArgument, "expire_time: must be in the future"},
		{"long name", &configv1.CreateKeyRequest{Principal: "dave", Name: strings.Repeat("n", 129)}, connect.CodeInvalidArgument, "name: longer than 128 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CreateKey(ctx, tc.req)
			wantCode(t, err, tc.code, tc.msg)
		})
	}
}

func TestRevokeKey(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.admin().keys
	e.putPrincipal("fay", configv1.Role_ROLE_ADMIN)
	// Two pinned keys sharing a display prefix make the prefix ambiguous.
	k1 := "mcpg_Shared" + strings.Repeat("1", 32)
	k2 := "mcpg_Shared" + strings.Repeat("2", 32)
	for _, k := range []string{k1, k2} {
		if _, err := c.CreateKey(ctx, &configv1.CreateKeyRequest{Principal: "fay", Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: "mcpg_Share"})
	wantCode(t, err, connect.CodeInvalidArgument, "id: prefix matches more than one key; use the key id")
	_, err = c.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: "mcpg_Nothing"})
	wantCode(t, err, connect.CodeNotFound, "api key not found")
	_, err = c.RevokeKey(ctx, &configv1.RevokeKeyRequest{})
	wantCode(t, err, connect.CodeInvalidArgument, "id: required")
	_, err = c.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: "mcpg"})
	wantCode(t, err, connect.CodeInvalidArgument, "id: a key id or at least 6 characters of its display prefix")

	// By display prefix, when unambiguous.
	gen, meta := e.createKey("fay")
	res, err := c.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: meta.GetDisplayPrefix()})
	if err != nil {
		t.Fatal(err)
	}
	if !res.GetApiKey().GetRevoked() || res.GetApiKey().GetRevokeTime() == nil || res.GetApiKey().GetId() != meta.GetId() {
		t.Fatalf("revoked = %v", res.GetApiKey())
	}
	if _, _, s := configapi.ResolveKey(e.st, gen, time.Now()); s != configapi.KeyRevoked {
		t.Fatalf("state = %v", s)
	}
	// Revoking again is a no-op.
	again, err := c.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: meta.GetId()})
	if err != nil || again.GetApiKey().GetRevision() != res.GetApiKey().GetRevision() {
		t.Fatalf("second revoke: %v", err)
	}
	// By id.
	id1 := store.KeyID(store.HashKey(k1))
	if _, err := c.RevokeKey(ctx, &configv1.RevokeKeyRequest{Id: id1}); err != nil {
		t.Fatal(err)
	}
	_, err = e.as(k1).servers.ListServers(ctx, &configv1.ListServersRequest{})
	wantCode(t, err, connect.CodeUnauthenticated, "invalid API key")
	if _, err := e.as(k2).servers.ListServers(ctx, &configv1.ListServersRequest{}); err != nil {
		t.Fatalf("unrevoked sibling key: %v", err)
	}
}

func TestConnections(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	c := e.admin().conns
	const access, refresh = "ya29.ACCESS-TOKEN-SECRET", "1//REFRESH-TOKEN-SECRET"
	var last int64
	for _, pr := range [][2]string{{"gina", "gmail"}, {"gina", "drive"}, {"hal", "gmail"}} {
		rev, err := e.st.PutGrant(ctx, &vaultv1.Connection{
			Principal: pr[0], Server: pr[1], Scopes: []string{"email"}, State: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE,
			HasRefreshToken: true,
		}, &storev1.UpstreamToken{AccessToken: access, RefreshToken: refresh}, 0)
		if err != nil {
			t.Fatal(err)
		}
		last = rev
	}
	if err := e.st.WaitRevision(ctx, last); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		principal, server string
		want              []string
	}{
		{"", "", []string{"gina/drive", "gina/gmail", "hal/gmail"}},
		{"gina", "", []string{"gina/drive", "gina/gmail"}},
		{"", "gmail", []string{"gina/gmail", "hal/gmail"}},
		{"hal", "drive", nil},
	} {
		res, err := c.ListConnections(ctx, &vaultv1.ListConnectionsRequest{Principal: tc.principal, Server: tc.server})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, cn := range res.GetConnections() {
			got = append(got, cn.GetPrincipal()+"/"+cn.GetServer())
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Fatalf("list(%q,%q) = %v, want %v", tc.principal, tc.server, got, tc.want)
		}
		js, _ := protojson.Marshal(res)
		if strings.Contains(string(js), "SECRET") {
			t.Fatalf("list leaks a token: %s", js)
		}
	}
	if _, err := c.RevokeConnection(ctx, &vaultv1.RevokeConnectionRequest{Principal: "gina", Server: "gmail"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.st.Grant("gina", "gmail"); ok {
		t.Fatal("grant still cached after revoke")
	}
	_, err := c.RevokeConnection(ctx, &vaultv1.RevokeConnectionRequest{Principal: "gina", Server: "gmail"})
	wantCode(t, err, connect.CodeNotFound, "connection not found")
	_, err = c.RevokeConnection(ctx, &vaultv1.RevokeConnectionRequest{Principal: "gina"})
	wantCode(t, err, connect.CodeInvalidArgument, "server: required")
}

func TestAuditLog(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	s := httpServer("audited")
	s.AuthType, s.AuthValue = configv1.AuthType_AUTH_TYPE_API_KEY, "AUDIT-SECRET-VALUE"
	if _, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: s}); err != nil {
		t.Fatal(err)
	}
	_, err := e.admin().servers.PutServer(ctx, &configv1.PutServerRequest{Server: s})
	wantCode(t, err, connect.CodeAborted, "")
	var events []map[string]any
	for line := range strings.SplitSeq(e.logs.String(), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil && ev["msg"] == "admin audit" && ev["kind"] == "server" {
			events = append(events, ev)
		}
	}
	if len(events) != 2 {
		t.Fatalf("%d audit events, want 2: %s", len(events), e.logs.String())
	}
	for i, want := range []string{"ok", "aborted"} {
		ev := events[i]
		if ev["action"] != "put" || ev["name"] != "audited" || ev["actor"] != configapi.AdminPrincipal || ev["result"] != want {
			t.Fatalf("event %d = %v", i, ev)
		}
	}
	if strings.Contains(e.logs.String(), "AUDIT-SECRET-VALUE") {
		t.Fatal("secret in logs")
	}
}
