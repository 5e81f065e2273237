package stacktest_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/internal/stacktest"
)

// hangGuard bounds every wait in these tests; it is never a timing
// assertion, only a way to fail instead of hanging.
const hangGuard = 60 * time.Second

// headerTransport adds fixed headers to every request.
type headerTransport struct {
	h    http.Header
	base http.RoundTripper
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, vs := range t.h {
		r.Header[k] = vs
	}
	return t.base.RoundTrip(r)
}

func keyClient(key string) *http.Client {
	return &http.Client{Transport: headerTransport{h: http.Header{"X-Mcpgate-Api-Key": {key}}, base: http.DefaultTransport}}
}

func wait[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(hangGuard):
		t.Fatalf("hang guard: %s never happened", what)
	}
	var zero T
	return zero
}

func textOf(t *testing.T, r *mcp.CallToolResult) string {
	t.Helper()
	var b strings.Builder
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// rawPost sends one JSON-RPC body to url with headers.
func rawPost(t *testing.T, url string, h http.Header, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// assertNoAdmission fails if any request rec saw carried an admission
// credential or one of secrets, or if rec saw nothing at all.
func assertNoAdmission(t *testing.T, rec *stacktest.Recorder, secrets ...string) {
	t.Helper()
	seen := rec.Requests()
	if len(seen) == 0 {
		t.Fatal("the upstream saw no request")
	}
	for _, s := range seen {
		if bad := stacktest.AdmissionHeaders(s.Header, secrets...); len(bad) > 0 {
			t.Errorf("%s %s reached the upstream with admission credentials %q", s.Method, s.RPCMethod, bad)
		}
	}
}

// TestGoSDK_APIKey drives the official Go SDK client through the gateway
// with an API key: initialize, filtered tools/list, tools/call whose result
// cannot exist before the client has received its progress notification,
// the standalone GET stream, session replay by another principal or on
// another route, and DELETE.
func TestGoSDK_APIKey(t *testing.T) {
	s := stacktest.Start(t)
	alice := s.AddUser("alice", stacktest.GateRoute, stacktest.EchoRoute)
	bob := s.AddUser("bob", stacktest.GateRoute)

	var mu sync.Mutex
	var events []string
	listChanged := make(chan struct{}, 1)
	client := mcp.NewClient(&mcp.Implementation{Name: "stacktest", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			events = append(events, "progress:"+req.Params.Message)
			mu.Unlock()
			s.Upstream.Release("k1") // the tool may finish only now
		},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case listChanged <- struct{}{}:
			default:
			}
		},
	})
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: s.RouteURL(stacktest.GateRoute), HTTPClient: keyClient(alice)}, nil)
	if err != nil {
		t.Fatalf("initialize through the gateway: %v", err)
	}
	if got := cs.InitializeResult().ServerInfo.Name; got != "stacktest-upstream" {
		t.Errorf("server name %q", got)
	}
	sid := cs.ID()
	if sid == "" {
		t.Fatal("no session handle")
	}

	t.Run("tools/list filtered", func(t *testing.T) {
		res, err := cs.ListTools(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
		}
		slices.Sort(names)
		if want := []string{"echo", "gated", "release"}; !slices.Equal(names, want) {
			t.Errorf("tools %v, want %v", names, want)
		}
	})

	t.Run("tools/call streams progress before the result", func(t *testing.T) {
		params := &mcp.CallToolParams{Name: "gated", Arguments: map[string]any{"key": "k1"}}
		params.SetProgressToken("p1")
		res, err := cs.CallTool(t.Context(), params)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		events = append(events, "result:"+textOf(t, res))
		got := slices.Clone(events)
		mu.Unlock()
		if want := []string{"progress:waiting", "result:released k1"}; !slices.Equal(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
	})

	t.Run("GET stream delivers server-initiated messages", func(t *testing.T) {
		wait(t, s.Upstream.Recorder.Streams(), "the upstream standalone GET stream")
		mcp.AddTool(s.Upstream.Server, &mcp.Tool{Name: "late"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{}, nil, nil
		})
		wait(t, listChanged, "notifications/tools/list_changed over the GET stream")
		var gets int
		for _, r := range s.Upstream.Recorder.Requests() {
			if r.Method == http.MethodGet {
				gets++
			}
		}
		if gets == 0 {
			t.Error("the upstream saw no GET")
		}
	})

	listBody := `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`
	sess := func(key string) http.Header {
		return http.Header{"X-Mcpgate-Api-Key": {key}, "Mcp-Session-Id": {sid}, "Mcp-Protocol-Version": {"2025-11-25"}}
	}
	t.Run("session replay", func(t *testing.T) {
		for _, tc := range []struct {
			name, key, route string
			want             int
		}{
			{"owner on its route", alice, stacktest.GateRoute, http.StatusOK},
			{"another principal", bob, stacktest.GateRoute, http.StatusNotFound},
			{"owner on another route", alice, stacktest.EchoRoute, http.StatusNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := rawPost(t, s.RouteURL(tc.route), sess(tc.key), listBody)
				if resp.StatusCode != tc.want {
					t.Errorf("status %d, want %d; body %s", resp.StatusCode, tc.want, body)
				}
			})
		}
	})

	t.Run("DELETE ends the upstream session", func(t *testing.T) {
		if err := cs.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		var deletes int
		for _, r := range s.Upstream.Recorder.Requests() {
			if r.Method == http.MethodDelete {
				deletes++
			}
		}
		if deletes != 1 {
			t.Errorf("upstream saw %d DELETEs, want 1", deletes)
		}
		resp, body := rawPost(t, s.RouteURL(stacktest.GateRoute), sess(alice), listBody)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("after DELETE: status %d, want 404; body %s", resp.StatusCode, body)
		}
	})

	assertNoAdmission(t, s.Upstream.Recorder, alice, bob, s.DataPlaneToken)
}

// TestChallenge covers the reported case and its neighbours end to end: an
// oauth2 + authorization_code route, a principal without an upstream grant
// → 401 with exactly one challenge, never reaching the upstream.
func TestChallenge(t *testing.T) {
	s := stacktest.Start(t)
	alice := s.AddUser("alice", stacktest.NotesRoute)
	prm := s.PRMURL(stacktest.NotesRoute)
	base := `Bearer resource_metadata="` + prm + `", scope="notes.read notes.write"`
	// Callers without a usable credential are not told the route's scopes
	// (issue 8 item 16).
	anon := `Bearer resource_metadata="` + prm + `"`
	for _, tc := range []struct {
		name   string
		header http.Header
		want   string // WWW-Authenticate, or its prefix when wantPrefix
		prefix bool
	}{
		{"reported case: x-litellm-api-key Bearer", http.Header{"x-litellm-api-key": {"Bearer " + alice}}, base, false},
		{"X-MCPGate-API-Key", http.Header{"X-Mcpgate-Api-Key": {alice}}, base, false},
		{"Authorization Bearer key", http.Header{"Authorization": {"Bearer " + alice}}, base, false},
		{"no credential", nil, anon, false},
		{"unknown key", http.Header{"X-Mcpgate-Api-Key": {"mcpg_" + strings.Repeat("x", 40)}}, anon + `, error="invalid_token"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawPost(t, s.RouteURL(stacktest.NotesRoute), tc.header, initializeBody)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401; body %s", resp.StatusCode, body)
			}
			www := resp.Header.Values("WWW-Authenticate")
			if len(www) != 1 {
				t.Fatalf("WWW-Authenticate %q, want exactly one", www)
			}
			if tc.prefix && !strings.HasPrefix(www[0], tc.want) || !tc.prefix && www[0] != tc.want {
				t.Errorf("WWW-Authenticate\n got %s\nwant %s", www[0], tc.want)
			}
		})
	}
	if n := len(s.Notes.Requests()); n != 0 {
		t.Errorf("the upstream saw %d requests", n)
	}
}

// TestControlPlaneDown stops the control plane: the data plane answers 503
// with Retry-After, and serves again once the control plane is back on the
// same address, without being restarted itself.
func TestControlPlaneDown(t *testing.T) {
	s := stacktest.Start(t)
	alice := s.AddUser("alice", stacktest.EchoRoute)
	h := http.Header{"X-Mcpgate-Api-Key": {alice}}
	url := s.RouteURL(stacktest.EchoRoute)

	if resp, body := rawPost(t, url, h, initializeBody); resp.StatusCode != http.StatusOK {
		t.Fatalf("before: status %d, body %s", resp.StatusCode, body)
	}
	s.StopControlPlane()
	resp, body := rawPost(t, url, h, initializeBody)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("control plane down: status %d, Retry-After %q, body %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	s.StartControlPlane()
	// The data plane may still hold the replica as failed for a moment;
	// retry (hang guard only) until it is used again.
	deadline := time.Now().Add(hangGuard)
	for {
		resp, body = rawPost(t, url, h, initializeBody)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("recovering: status %d, body %s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatal("hang guard: the data plane never recovered")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestControlPlaneHangs keeps the control plane's socket open but silent:
// the data plane gives up after its Authorize timeout with 503.
func TestControlPlaneHangs(t *testing.T) {
	s := stacktest.Start(t, stacktest.WithAuthorizeTimeout(300*time.Millisecond))
	alice := s.AddUser("alice", stacktest.EchoRoute)
	release := s.PauseControlPlane()
	defer release()
	resp, body := rawPost(t, s.RouteURL(stacktest.EchoRoute), http.Header{"X-Mcpgate-Api-Key": {alice}}, initializeBody)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q, body %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	release()
	if resp, body := rawPost(t, s.RouteURL(stacktest.EchoRoute), http.Header{"X-Mcpgate-Api-Key": {alice}}, initializeBody); resp.StatusCode != http.StatusOK {
		t.Fatalf("after release: status %d, body %s", resp.StatusCode, body)
	}
}

// TestGoSDK_DenyKeepsSession calls a tool the route disallows: the call
// fails with the gateway's JSON-RPC error, the upstream never sees it, and
// the session stays usable (the Go SDK client keeps a session only when a
// 4xx body is a JSON-RPC response to the request's own id).
func TestGoSDK_DenyKeepsSession(t *testing.T) {
	s := stacktest.Start(t)
	alice := s.AddUser("alice", stacktest.GateRoute)
	client := mcp.NewClient(&mcp.Implementation{Name: "stacktest", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: s.RouteURL(stacktest.GateRoute), HTTPClient: keyClient(alice)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	_, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "secret"})
	if err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("tools/call secret: err %v, want the gateway's forbidden error", err)
	}
	for _, r := range s.Upstream.Recorder.Requests() {
		if r.Tool == "secret" {
			t.Errorf("the upstream saw tools/call secret")
		}
		if r.Method == http.MethodDelete {
			t.Errorf("the client ended its session after the refusal")
		}
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "still here"}})
	if err != nil {
		t.Fatalf("the session did not survive the refusal: %v", err)
	}
	if got := textOf(t, res); got != "still here" {
		t.Errorf("echo %q", got)
	}
}

// TestGoSDK_ToolsListFilter checks tools/list through the gateway for each
// combination of the server's allowed and disallowed tool lists.
func TestGoSDK_ToolsListFilter(t *testing.T) {
	s := stacktest.Start(t)
	for _, tc := range []struct {
		name                string
		allowed, disallowed []string
		want                []string
	}{
		{"unfiltered", nil, nil, []string{"echo", "gated", "release", "secret"}},
		{"allowed", []string{"echo", "secret"}, nil, []string{"echo", "secret"}},
		{"disallowed", nil, []string{"gated", "secret"}, []string{"echo", "release"}},
		{"both", []string{"echo", "gated"}, []string{"release"}, []string{"echo", "gated"}},
	} {
		s.PutServer(&configv1.McpServer{Name: tc.name, Url: s.UpstreamURL, Transport: configv1.Transport_TRANSPORT_HTTP,
			AuthType: configv1.AuthType_AUTH_TYPE_NONE, AllowedTools: tc.allowed, DisallowedTools: tc.disallowed})
		t.Run(tc.name, func(t *testing.T) {
			key := s.AddUser("u-"+tc.name, tc.name)
			client := mcp.NewClient(&mcp.Implementation{Name: "stacktest", Version: "1"}, nil)
			cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: s.RouteURL(tc.name), HTTPClient: keyClient(key), DisableStandaloneSSE: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			res, err := cs.ListTools(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tool := range res.Tools {
				names = append(names, tool.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, tc.want) {
				t.Errorf("tools %v, want %v", names, tc.want)
			}
		})
	}
}
