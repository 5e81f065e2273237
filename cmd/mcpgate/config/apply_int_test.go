package config_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/cmd/mcpgate/config"
	"github.com/mcpgate/mcpgate/controlplane"
	"github.com/mcpgate/mcpgate/controlplane/configapi"
	"github.com/mcpgate/mcpgate/controlplane/store"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// controlPlane starts a real control plane on embedded etcd and returns
// admin clients for it.
func controlPlane(t *testing.T) config.Clients {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(etcdtest.New(t), kr, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	key, err := configapi.EnsureAdmin(t.Context(), st, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(controlplane.NewHandler(st, controlplane.Config{DataPlaneTokens: []string{"t"}}, log))
	t.Cleanup(srv.Close)
	opts := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+key)
			return next(ctx, req)
		}
	}))
	hc := &http.Client{}
	return config.Clients{
		Servers:    configv1connect.NewServerServiceClient(hc, srv.URL, opts),
		Principals: configv1connect.NewPrincipalServiceClient(hc, srv.URL, opts),
		Groups:     configv1connect.NewGroupServiceClient(hc, srv.URL, opts),
		Keys:       configv1connect.NewKeyServiceClient(hc, srv.URL, opts),
		// VirtualServers is set for every file: Apply needs it only for
		// files with virtual_servers.
		VirtualServers: configv1connect.NewVirtualServerServiceClient(hc, srv.URL, opts),
	}
}

func outcomes(rs []config.Result) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(r.Kind + " " + r.Name + " " + r.Outcome.String() + "\n")
	}
	return b.String()
}

func TestApply(t *testing.T) {
	c := controlPlane(t)
	env := map[string]string{"SECRET": "s3cret", "PINNED": "mcpg_abcdefghijklmnopqrstuvwxyz0123456789AB"}
	parse := func(y string) *config.File {
		t.Helper()
		f, err := config.Parse([]byte(y), func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	const base = `
mcp_servers:
  one:
    url: http://127.0.0.1:9/mcp
    auth_type: api_key
    auth_value: os.environ/SECRET
  two:
    url: http://127.0.0.1:9/mcp
principals:
  - name: alice
    servers: [one]
keys:
  - principal: alice
    name: pinned
    key: os.environ/PINNED
  - principal: alice
    name: generated
    expires: 24h
`
	ctx := t.Context()
	now := time.Now()
	res, err := config.Apply(ctx, c, parse(base), now)
	if err != nil {
		t.Fatal(err)
	}
	want := "server one created\nserver two created\nprincipal alice created\nkey pinned created\nkey generated created\n"
	if got := outcomes(res); got != want {
		t.Errorf("first apply:\n%s\nwant:\n%s", got, want)
	}
	if res[3].Key != "" || !strings.HasPrefix(res[4].Key, "mcpg_") {
		t.Errorf("only the generated key is returned: pinned %q, generated %q", res[3].Key, res[4].Key)
	}

	res, err = config.Apply(ctx, c, parse(base), now)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := outcomes(res), strings.ReplaceAll(want, "created", "unchanged"); got != want {
		t.Errorf("second apply:\n%s\nwant:\n%s", got, want)
	}

	env["SECRET"] = "rotated"
	edited := strings.Replace(base, "servers: [one]", "servers: [one, two]", 1)
	res, err = config.Apply(ctx, c, parse(edited), now)
	if err != nil {
		t.Fatal(err)
	}
	want = "server one changed\nserver two unchanged\nprincipal alice changed\nkey pinned unchanged\nkey generated unchanged\n"
	if got := outcomes(res); got != want {
		t.Errorf("edited apply:\n%s\nwant:\n%s", got, want)
	}
	got, err := c.Servers.GetServer(ctx, &configv1.GetServerRequest{Name: "one"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetServer().GetAuthValue() != "" || !got.GetServer().GetAuthValueSet() {
		t.Errorf("stored server exposes or lost its secret: %v", got.GetServer())
	}

	tests := []struct{ name, yaml, want string }{
		{"bad url", "mcp_servers:\n  bad:\n    url: ftp://x/mcp\n", `server "bad": `},
		{"missing auth value", "mcp_servers:\n  bad:\n    url: http://x/mcp\n    auth_type: bearer_token\n", `server "bad": `},
		{"bad principal name", "principals:\n  - name: 'no spaces'\n", `principal "no spaces": `},
		{"key of unknown principal", "keys:\n  - principal: ghost\n    name: k\n", `key "k" of principal "ghost" (line 2): `},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Apply(ctx, c, parse(tc.yaml), now)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %v, want prefix %q", err, tc.want)
			}
			if ce := new(connect.Error); err != nil && !errors.As(err, &ce) {
				t.Errorf("error %v is not the control plane's", err)
			}
		})
	}
}
