package stacktest_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
	"github.com/mcpgate/mcpgate/controlplane/grants"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// exchangeEndpoint is an upstream's RFC 8693 token endpoint: it accepts
// the gateway's client credentials and the subject tokens it knows (each
// person's IdP token), requires the configured audience, and mints
// "upstream:<person>:<audience>".
type exchangeEndpoint struct {
	t        *testing.T
	audience string
	subjects map[string]string // subject token → person
	calls    atomic.Int64
}

func (x *exchangeEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x.calls.Add(1)
	w.Header().Set("Content-Type", "application/json")
	fail := func(status int, code string) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	if id, secret, ok := r.BasicAuth(); !ok || id != "gw-exchange" || secret != "gw-exchange-secret" {
		fail(http.StatusUnauthorized, "invalid_client")
		return
	}
	_ = r.ParseForm()
	f := r.PostForm
	if f.Get("grant_type") != grants.GrantTokenExchange || f.Get("subject_token_type") != grants.TokenTypeIDToken ||
		f.Get("requested_token_type") != grants.TokenTypeAccessToken || f.Get("scope") != "docs.read" {
		x.t.Errorf("exchange request %v", f)
		fail(http.StatusBadRequest, "invalid_request")
		return
	}
	if f.Get("audience") != x.audience {
		fail(http.StatusBadRequest, "invalid_target")
		return
	}
	person, ok := x.subjects[f.Get("subject_token")]
	if !ok {
		fail(http.StatusBadRequest, "invalid_grant")
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"access_token": "upstream:" + person + ":" + x.audience, "issued_token_type": grants.TokenTypeAccessToken,
		"token_type": "Bearer", "expires_in": 3600,
	})
}

// TestTokenExchangeUpstream: an oauth2 token_exchange route reaches the
// upstream with a token the upstream's token endpoint minted for the
// signed-in person and the configured audience (the endpoint asserts
// subject, audience, scope and client credentials; the upstream MCP server
// sees the token); concurrent calls exchange once and later calls reuse
// the cached token; a person without an IdP token, or whose IdP token the
// upstream refuses, gets the 401 sign-in challenge, never a 500.
func TestTokenExchangeUpstream(t *testing.T) {
	s := stacktest.Start(t)
	x := &exchangeEndpoint{t: t, audience: "https://docs.example/api", subjects: map[string]string{"idp-token-alice": "alice"}}
	ts := httptest.NewServer(x)
	t.Cleanup(ts.Close)
	s.PutServer(&configv1.McpServer{
		Name: "docs", Url: s.EchoURL, Transport: configv1.Transport_TRANSPORT_HTTP, AuthType: configv1.AuthType_AUTH_TYPE_OAUTH2,
		Oauth2Flow: configv1.OAuth2Flow_O_AUTH2_FLOW_TOKEN_EXCHANGE, ClientId: "gw-exchange", ClientSecret: "gw-exchange-secret",
		TokenUrl: ts.URL + "/token", Scopes: []string{"docs.read"}, TokenExchangeAudience: x.audience,
	})
	alice := s.AddUser("alice", "docs")
	bob := s.AddUser("bob", "docs")
	carol := s.AddUser("carol", "docs")
	save := func(principal, token string) {
		t.Helper()
		head, err := s.Store.HeadRevision(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Store.WaitRevision(t.Context(), head); err != nil {
			t.Fatal(err)
		}
		p, ok := s.Store.Principal(principal)
		if !ok || p.GetUid() == "" {
			t.Fatalf("principal %s: %v", principal, p)
		}
		uid := p.GetUid()
		rev, err := s.Store.SaveIdPToken(t.Context(), principal, uid, "corp", &storev1.IdPToken{
			SubjectToken: token, SubjectTokenType: grants.TokenTypeIDToken, Expiry: timestamppb.New(time.Now().Add(time.Hour)),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Store.WaitRevision(t.Context(), rev); err != nil {
			t.Fatal(err)
		}
	}
	save("alice", "idp-token-alice")
	save("carol", "idp-token-unknown-upstream")

	cs, err := mcp.NewClient(&mcp.Implementation{Name: "exchange", Version: "1"}, nil).
		Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: s.RouteURL("docs"), HTTPClient: keyClient(alice)}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
			if err != nil || res.IsError {
				t.Errorf("call %d: %v %v", i, res, err)
			}
		})
	}
	wg.Wait()
	if n := x.calls.Load(); n != 1 {
		t.Errorf("%d token exchanges for concurrent calls, want 1", n)
	}
	want := "Bearer upstream:alice:" + x.audience
	seen := 0
	for _, r := range s.Echo.Requests() {
		if r.Method == http.MethodPost {
			seen++
			if got := r.Header.Get("Authorization"); got != want {
				t.Errorf("upstream saw Authorization %q, want %q", got, want)
			}
		}
	}
	if seen < 9 { // initialize, initialized, eight calls
		t.Errorf("upstream saw %d POSTs", seen)
	}

	for _, tc := range []struct{ name, key string }{
		{"no IdP token", bob},
		{"IdP token refused upstream", carol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, body := rawPost(t, s.RouteURL("docs"), http.Header{"X-Mcpgate-Api-Key": {tc.key}}, initializeBody)
			if r.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer ") {
				t.Errorf("%d %q %s", r.StatusCode, r.Header.Get("WWW-Authenticate"), body)
			}
		})
	}
}
