package controlplane_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1/vaultv1connect"
	"github.com/mcpgate/mcpgate/controlplane"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

type authHeader string

func (h authHeader) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if h != "" {
		r.Header.Set("Authorization", string(h))
	}
	return http.DefaultTransport.RoundTrip(r)
}

// Every admin service of the wired handler requires an admin key.
func TestNewHandler_AdminServicesRequireAdminKey(t *testing.T) {
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
	if err != nil || adminKey == "" {
		t.Fatalf("EnsureAdmin = %v", err)
	}
	hs := httptest.NewServer(controlplane.NewHandler(st, controlplane.Config{DataPlaneTokens: []string{"dp-token-0123456789abcdef"}}, log))
	t.Cleanup(hs.Close)

	calls := map[string]func(hc *http.Client) error{
		"servers": func(hc *http.Client) error {
			_, err := configv1connect.NewServerServiceClient(hc, hs.URL).ListServers(t.Context(), &configv1.ListServersRequest{})
			return err
		},
		"principals": func(hc *http.Client) error {
			_, err := configv1connect.NewPrincipalServiceClient(hc, hs.URL).ListPrincipals(t.Context(), &configv1.ListPrincipalsRequest{})
			return err
		},
		"keys": func(hc *http.Client) error {
			_, err := configv1connect.NewKeyServiceClient(hc, hs.URL).ListKeys(t.Context(), &configv1.ListKeysRequest{})
			return err
		},
		"connections": func(hc *http.Client) error {
			_, err := vaultv1connect.NewConnectionServiceClient(hc, hs.URL).ListConnections(t.Context(), &vaultv1.ListConnectionsRequest{})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				header authHeader
				want   connect.Code // 0: allowed
			}{
				{"", connect.CodeUnauthenticated},
				{"Bearer dp-token-0123456789abcdef", connect.CodeUnauthenticated},
				{authHeader("Bearer " + adminKey), 0},
			} {
				err := call(&http.Client{Transport: tc.header})
				if tc.want == 0 && err != nil {
					t.Fatalf("with admin key: %v", err)
				}
				if tc.want != 0 && connect.CodeOf(err) != tc.want {
					t.Fatalf("header %.12q: err = %v, want %v", string(tc.header), err, tc.want)
				}
			}
		})
	}
}
