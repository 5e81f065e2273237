package authorizeapi_test

import (
	"errors"
	"testing"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/internal/etcdtest"
)

// TestMisconfiguredIsFailedPrecondition: a server whose definition cannot
// produce an upstream credential is a deterministic failure, so the answer
// is failed_precondition (data planes do not retry it on other replicas),
// with a fixed message; only transient failures are unavailable.
func TestMisconfiguredIsFailedPrecondition(t *testing.T) {
	srv := etcdtest.Start(t)
	kr, err := vault.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t, srv, kr)
	seed(t, st)
	ctx := t.Context()
	rev, err := st.PutServer(ctx, &configv1.McpServer{
		Name: "static", Url: "https://upstream.example/mcp", AuthType: configv1.AuthType_AUTH_TYPE_BEARER_TOKEN,
	}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	c := client(serve(t, st), dataPlaneToken)
	req := authorizeReq()
	req.Route = "static"
	_, err = c.Authorize(ctx, req)
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition || ce.Message() != "server misconfigured" {
		t.Fatalf("bearer_token without auth_value: %v, want failed_precondition: server misconfigured", err)
	}
}
