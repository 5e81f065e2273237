package main_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// cliStdin is cli with stdin.
func (g *gateway) cliStdin(t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MCPGATE_ADMIN_KEY=", "MCPGATE_CONTROL_PLANE="+g.control)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// headerLog records the upstream auth headers of every request.
type headerLog struct {
	mu   sync.Mutex
	seen []string
}

func (h *headerLog) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.seen = append(h.seen, "Authorization="+r.Header.Get("Authorization")+" X-API-Key="+r.Header.Get("X-API-Key"))
		h.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (h *headerLog) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.seen...)
}

// TestCLIVerbs: `servers add` and `principals create` create objects (never
// replace them) with secrets read from a file or stdin, and their effect is
// visible end to end: a key of the created principal reaches the added
// servers through the gateway, which sends the upstream the secrets given.
func TestCLIVerbs(t *testing.T) {
	const fileSecret, stdinSecret = "file-secret-0123456789", "stdin-secret-9876543210"

	srv := mcp.NewServer(&mcp.Implementation{Name: "verbs-upstream", Version: "1"}, nil)
	mcp.AddTool(srv, &mcp.Tool{Name: "ping"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "pong"}}}, nil, nil
	})
	mcp.AddTool(srv, &mcp.Tool{Name: "hidden"}, func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{}, nil, nil
	})
	var log headerLog
	up := httptest.NewServer(log.wrap(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv }, nil)))
	defer up.Close()

	dir := t.TempDir()
	g := startDev(t, dir, freeAddr(t))
	secretPath := filepath.Join(dir, "token")
	if err := os.WriteFile(secretPath, []byte(fileSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out := g.ok(t, dir, nil, "servers", "add", "up", "--url", up.URL+"/mcp", "--auth-type", "bearer_token",
		"--auth-value-file", secretPath, "--allowed-tools", "ping", "--description", "added by the CLI", "--protocol-version", "2025-11-25")
	if out != "server up created (route /up/mcp)\n" {
		t.Errorf("servers add: %q", out)
	}
	r := g.cliStdin(t, dir, stdinSecret+"\n", "servers", "add", "up2", "--url", up.URL+"/mcp", "--auth-type", "api_key",
		"--auth-value-file", "-", "--disallowed-tools", "hidden", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"name": "up2"`) || !strings.Contains(r.stdout, `"auth_value_set": true`) ||
		!strings.Contains(r.stdout, `"changed": true`) || strings.Contains(r.stdout, stdinSecret) {
		t.Errorf("servers add from stdin -o json: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out = g.ok(t, dir, nil, "servers", "get", "up", "-o", "json")
	for _, want := range []string{`"auth_type": "AUTH_TYPE_BEARER_TOKEN"`, `"auth_value_set": true`, `"allowed_tools": [`, `"description": "added by the CLI"`, `"protocol_version": "2025-11-25"`} {
		if !strings.Contains(out, want) {
			t.Errorf("servers get up lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, fileSecret) {
		t.Errorf("servers get shows the secret:\n%s", out)
	}

	out = g.ok(t, dir, nil, "principals", "create", "robot", "--servers", "up,up2", "--kind", "service_account")
	if out != "principal robot created (service_account, member; servers up,up2)\n" {
		t.Errorf("principals create: %q", out)
	}
	out = g.ok(t, dir, nil, "principals", "create", "viewer", "-o", "json")
	if !strings.Contains(out, `"name": "viewer"`) || !strings.Contains(out, `"kind": "PRINCIPAL_KIND_USER"`) || !strings.Contains(out, `"role": "ROLE_MEMBER"`) {
		t.Errorf("principals create -o json:\n%s", out)
	}

	// A key of the created principal reaches both routes; the upstream
	// gets the secret from the file as a bearer token on one and the one
	// from stdin as X-API-Key on the other.
	out = g.ok(t, dir, nil, "keys", "create", "--principal", "robot")
	key := regexp.MustCompile(`key: (mcpg_[A-Za-z0-9]{32,})`).FindStringSubmatch(out)
	base := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(regexp.MustCompile(`http://127\.0\.0\.1:\d+/echo/mcp`).FindString(g.banner))
	if key == nil || base == "" {
		t.Fatalf("no key or no data plane URL:\n%s\n%s", out, g.banner)
	}
	if got := pingTools(t, base+"/up/mcp", key[1]); got != "ping" {
		t.Errorf("route up tools %q, want ping", got)
	}
	if got := pingTools(t, base+"/up2/mcp", key[1]); got != "ping" {
		t.Errorf("route up2 tools %q, want ping (hidden disallowed)", got)
	}
	var bearer, apiKey bool
	for _, h := range log.all() {
		bearer = bearer || h == "Authorization=Bearer "+fileSecret+" X-API-Key="
		apiKey = apiKey || h == "Authorization= X-API-Key="+stdinSecret
	}
	if !bearer || !apiKey {
		t.Errorf("upstream headers %q: want the file secret as bearer and the stdin secret as X-API-Key", log.all())
	}

	t.Run("refusals are one line", func(t *testing.T) {
		empty := filepath.Join(dir, "empty")
		if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name  string
			stdin string
			args  []string
			code  int
			want  string
		}{
			{"server exists", "", []string{"servers", "add", "up", "--url", up.URL + "/mcp"}, 1, `server "up" already exists (change it with apply, or delete it first)`},
			{"principal exists", "", []string{"principals", "create", "robot"}, 1, `principal "robot" already exists`},
			{"secret as a flag", "", []string{"servers", "add", "x", "--url", up.URL, "--auth-value", "s3cr3t-flag"}, 2, "flag provided but not defined: -auth-value"},
			{"bad auth type", "", []string{"servers", "add", "x", "--url", up.URL, "--auth-type", "magic"}, 2, "want one of api_key, authorization, basic, bearer_token, none, oauth2, passthrough, token"},
			{"validated by the control plane", "", []string{"servers", "add", "x", "--url", "ftp://example.com/mcp"}, 1, `server "x": url: must be an absolute http or https URL`},
			{"secret missing", "", []string{"servers", "add", "x", "--url", up.URL, "--auth-type", "bearer_token"}, 1, `server "x": auth_value`},
			{"empty secret file", "", []string{"servers", "add", "x", "--url", up.URL, "--auth-type", "bearer_token", "--auth-value-file", empty}, 2, "--auth-value-file: empty"},
			{"empty stdin", "", []string{"servers", "add", "x", "--url", up.URL, "--auth-type", "bearer_token", "--auth-value-file", "-"}, 2, "--auth-value-file: empty"},
			{"no such file", "", []string{"servers", "add", "x", "--url", up.URL, "--auth-value-file", filepath.Join(dir, "nope")}, 1, "--auth-value-file: open"},
			{"stdin twice", "a\n", []string{"servers", "add", "x", "--url", up.URL, "--auth-type", "oauth2", "--auth-value-file", "-", "--client-secret-file", "-"}, 2, "cannot both read stdin"},
			{"no name", "", []string{"servers", "add", "--url", up.URL}, 2, "mcpgate servers add NAME --url URL"},
			{"unknown principal kind", "", []string{"principals", "create", "y", "--kind", "robot"}, 2, "want one of service_account, user"},
			{"bad server name granted", "", []string{"principals", "create", "y", "--servers", "ok,Bad Name"}, 1, `principal "y": servers[1]: must be a server name or "*"`},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := g.cliStdin(t, dir, tc.stdin, tc.args...)
				if r.code != tc.code || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 || r.stdout != "" {
					t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and one line containing %q", r.code, r.stdout, r.stderr, tc.code, tc.want)
				}
				if strings.Contains(r.stderr, "s3cr3t-flag") {
					t.Errorf("stderr echoes the secret: %q", r.stderr)
				}
			})
		}
	})
	out = g.ok(t, dir, nil, "servers", "list")
	if strings.Contains(out, "\nx ") || !strings.Contains(out, "up2") {
		t.Errorf("servers list after the refusals:\n%s", out)
	}
	g.stop(t)
}

// pingTools lists the tools of route with key and calls ping.
func pingTools(t *testing.T, route, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "verbs-test", Version: "1"}, nil).
		Connect(ctx, &mcp.StreamableClientTransport{Endpoint: route, HTTPClient: &http.Client{Transport: headerTransport{key: key}}}, nil)
	if err != nil {
		t.Fatalf("connect %s: %v", route, err)
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list %s: %v", route, err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ping"})
	if err != nil {
		t.Fatalf("ping %s: %v", route, err)
	}
	if tc, ok := res.Content[0].(*mcp.TextContent); !ok || tc.Text != "pong" {
		t.Errorf("ping result %+v", res.Content)
	}
	return strings.Join(names, ",")
}
