package controlplane_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/controlplane"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
	"github.com/mcpgate/mcpgate/ops/audit"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := strings.Split(strings.TrimSpace(s.b.String()), "\n")
	s.b.Reset()
	if len(out) == 1 && out[0] == "" {
		return nil
	}
	return out
}

// TestAuditAdminOnlyAndGrantWrites: the admin audit interceptor sees admin
// writes only (Authorize and GetSessionKeys are no longer NO_SIDE_EFFECTS,
// and must not flood the admin trail with data-plane calls), while the
// grant writes AuthorizeService causes are audited by grants: here a grant
// marked unusable after an upstream 401.
func TestAuditAdminOnlyAndGrantWrites(t *testing.T) {
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	st := store.New(etcdtest.New(t), kr, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer wcancel()
	adminKey, err := configapi.EnsureAdmin(wctx, st, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutPrincipal(wctx, &configv1.Principal{Name: "alice", Servers: []string{"*"}}, 0); err != nil {
		t.Fatal(err)
	}
	rev, err := st.PutGrant(wctx, &vaultv1.Connection{Principal: "alice", Server: "Gmail", State: vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE},
		&storev1.UpstreamToken{AccessToken: "upstream-token", Expiry: timestamppb.New(time.Now().Add(time.Hour))}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(wctx, rev); err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	al := audit.New(&buf)
	const dp = "dp-token-0123456789abcdef"
	hs := httptest.NewServer(controlplane.NewHandler(st, controlplane.Config{
		DataPlaneTokens:     []string{dp},
		Grants:              grants.Config{Audit: al},
		AdminHandlerOptions: []connect.HandlerOption{connect.WithInterceptors(audit.AdminInterceptor(al, nil))},
	}, log))
	t.Cleanup(hs.Close)

	ac := authorizev1connect.NewAuthorizeServiceClient(&http.Client{Transport: authHeader("Bearer " + dp)}, hs.URL)
	if _, err := ac.GetSessionKeys(wctx, &authorizev1.GetSessionKeysRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.Authorize(wctx, &authorizev1.AuthorizeRequest{Route: "Gmail", PublicBaseUrl: "https://gw.example.com"}); err != nil {
		t.Fatal(err)
	}
	if got := buf.lines(); len(got) != 0 {
		t.Fatalf("data-plane reads audited as admin writes: %q", got)
	}
	if _, err := ac.ReportUpstreamUnauthorized(wctx, &authorizev1.ReportUpstreamUnauthorizedRequest{Route: "Gmail", Principal: "alice"}); err != nil {
		t.Fatal(err)
	}
	got := buf.lines()
	if len(got) != 1 || !strings.Contains(got[0], `"kind":"admin_write"`) || !strings.Contains(got[0], `"procedure":"grants/mark_unusable"`) ||
		!strings.Contains(got[0], `"object":"alice/Gmail"`) || !strings.Contains(got[0], `"code":"ok"`) || strings.Contains(got[0], "upstream-token") {
		t.Fatalf("grant mark audit: %q", got)
	}
	sc := configv1connect.NewServerServiceClient(&http.Client{Transport: authHeader("Bearer " + adminKey)}, hs.URL)
	if _, err := sc.DeleteServer(wctx, &configv1.DeleteServerRequest{Name: "nope"}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("delete: %v", err)
	}
	if got := buf.lines(); len(got) != 1 || !strings.Contains(got[0], `"procedure":"/mcpgate.config.v1.ServerService/DeleteServer"`) {
		t.Fatalf("admin write audit: %q", got)
	}
}
