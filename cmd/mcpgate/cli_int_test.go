package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/idjagtest"
)

var bin string

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run()) // a fuzz worker runs only the fuzz target: no binary
	}
	dir, err := os.MkdirTemp("", "mcpgate-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "mcpgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// gateway is a running `mcpgate dev`.
type gateway struct {
	cmd     *exec.Cmd
	banner  string
	stderr  *bytes.Buffer
	done    chan error
	control string
}

var readyLine = "Press Ctrl-C to stop."

// startDev runs `mcpgate dev` in dir (data in dir/.mcpgate) and waits for
// its banner.
func startDev(t *testing.T, dir, adminAddr string, extra ...string) *gateway {
	t.Helper()
	args := append([]string{"dev", "--listen", "127.0.0.1:0", "--admin-listen", adminAddr, "--log-format", "text"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MCPGATE_ADMIN_KEY=", "MCPGATE_CONTROL_PLANE=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1), control: "http://" + adminAddr}
	cmd.Stderr = g.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-g.done
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
		g.done <- cmd.Wait()
	}()
	var banner strings.Builder
	timeout := time.After(90 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("mcpgate dev exited before ready:\n%s\nstderr:\n%s", banner.String(), g.stderr)
			}
			banner.WriteString(l + "\n")
			if l == readyLine {
				g.banner = banner.String()
				go func() {
					for range lines {
					}
				}()
				return g
			}
		case <-timeout:
			t.Fatalf("mcpgate dev not ready:\n%s", banner.String())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit (20 s hang guard).
func (g *gateway) stop(t *testing.T) {
	t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-g.done:
		if err != nil {
			t.Fatalf("mcpgate dev exit: %v\nstderr:\n%s", err, g.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("mcpgate dev did not exit within 20 s of SIGTERM")
	}
}

type result struct {
	stdout, stderr string
	code           int
}

// cli runs an admin command in dir against the gateway, with env extra.
func (g *gateway) cli(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "MCPGATE_ADMIN_KEY=", "MCPGATE_CONTROL_PLANE="+g.control), env...)
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

func (g *gateway) ok(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	r := g.cli(t, dir, env, args...)
	if r.code != 0 {
		t.Fatalf("mcpgate %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

const cfgYAML = `
mcp_servers:
  github:
    url: https://api.githubcopilot.example/mcp
    transport: http
    auth_type: bearer_token
    auth_value: os.environ/GH_TOKEN
    static_headers:
      X-Team: os.environ/TEAM_SECRET
    allowed_tools: [search]
    description: GitHub
  plain:
    url: http://127.0.0.1:9/mcp
principals:
  - name: alice
    kind: user
    servers: [github, plain]
  - name: bot
    kind: service_account
    servers: ["*"]
keys:
  - principal: bot
    name: ci
    key: os.environ/BOT_KEY
  - principal: alice
    name: laptop
    expires: 720h
`

const (
	ghToken    = "ghp_supersecretvalue123"
	teamSecret = "team-secret-xyz"
	botKey     = "mcpg_0123456789abcdefghijABCDEFGHIJ0123456789"
)

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	admin := freeAddr(t)
	g := startDev(t, dir, admin)
	for _, want := range []string{"New admin key", "  metrics:        off", "Demo route \"echo\"", "claude mcp add --transport http echo", "X-MCPGate-API-Key: mcpg_"} {
		if !strings.Contains(g.banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, g.banner)
		}
	}
	adminKey, err := os.ReadFile(filepath.Join(dir, ".mcpgate", "admin-key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"admin-key", "demo-key", "dataplane-token", "vault-keyset.json"} {
		fi, err := os.Stat(filepath.Join(dir, ".mcpgate", f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	cfgPath := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"GH_TOKEN=" + ghToken, "TEAM_SECRET=" + teamSecret, "BOT_KEY=" + botKey}

	t.Run("demo identity provider", func(t *testing.T) {
		iss := regexp.MustCompile(`Sign in with Demo IdP" \(a built-in OpenID provider at (http://127\.0\.0\.1:\d+)\)`).FindStringSubmatch(g.banner)
		pub := regexp.MustCompile(`gateway \(MCP\):\s+(http://127\.0\.0\.1:\d+)`).FindStringSubmatch(g.banner)
		if iss == nil || pub == nil || !strings.Contains(g.banner, "ada@demo.example") {
			t.Fatalf("banner lacks the demo IdP:\n%s", g.banner)
		}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(pub[1] + "/signin?next=connections")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := regexp.MustCompile(`<a class="idp" href="([^"]*)">Sign in with Demo IdP</a>`).FindSubmatch(page)
		if resp.StatusCode != http.StatusOK || m == nil {
			t.Fatalf("sign-in page: %d %s", resp.StatusCode, page)
		}
		resp, err = c.Get(pub[1] + "/" + html.UnescapeString(string(m[1])))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), iss[1]+"/") {
			t.Fatalf("start: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}

		// The demo IdP is trusted for ID-JAGs: an assertion naming it as
		// issuer gets as far as its key set (an untrusted issuer is refused
		// before that).
		reg, err := http.Post(pub[1]+"/register", "application/json", strings.NewReader(`{"redirect_uris":["http://127.0.0.1/cb"],`+
			`"grant_types":["authorization_code","urn:ietf:params:oauth:grant-type:jwt-bearer"],"token_endpoint_auth_method":"client_secret_basic"}`))
		if err != nil {
			t.Fatal(err)
		}
		var client struct {
			ID     string `json:"client_id"`
			Secret string `json:"client_secret"`
		}
		err = json.NewDecoder(reg.Body).Decode(&client)
		reg.Body.Close()
		if err != nil || reg.StatusCode != http.StatusCreated {
			t.Fatalf("register: %d %v", reg.StatusCode, err)
		}
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for _, tc := range []struct{ issuer, desc string }{
			{iss[1], "the assertion's signing key is unknown to its issuer"},
			{"https://idp.example", "the assertion's issuer is not a trusted identity provider"},
		} {
			jag := idjagtest.Sign(key, "not-a-demo-key", idjagtest.Typ, map[string]any{"iss": tc.issuer, "sub": "demo-ada", "aud": pub[1],
				"client_id": client.ID, "resource": pub[1] + "/echo/mcp", "jti": "j1", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
			req, _ := http.NewRequest(http.MethodPost, pub[1]+"/token", strings.NewReader(url.Values{
				"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {jag}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(url.QueryEscape(client.ID), url.QueryEscape(client.Secret))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_grant" || body["error_description"] != tc.desc {
				t.Errorf("ID-JAG from %s: %d %v", tc.issuer, resp.StatusCode, body)
			}
		}
	})
	t.Run("demo route through the gateway", func(t *testing.T) {
		demoKey := regexp.MustCompile(`key (mcpg_[A-Za-z0-9]+)`).FindStringSubmatch(g.banner)
		route := regexp.MustCompile(`http://127\.0\.0\.1:\d+/echo/mcp`).FindString(g.banner)
		if demoKey == nil || route == "" {
			t.Fatalf("no demo key or route in banner:\n%s", g.banner)
		}
		callCountdown(t, route, demoKey[1])
	})

	t.Run("apply twice", func(t *testing.T) {
		out := g.ok(t, dir, env, "apply", "-f", cfgPath)
		for _, want := range []string{"server github: created", "server plain: created", "principal alice: created",
			"principal bot: created", "key ci: created", "key laptop: created", "6 created, 0 changed, 0 unchanged"} {
			if !strings.Contains(out, want) {
				t.Errorf("first apply lacks %q:\n%s", want, out)
			}
		}
		if !regexp.MustCompile(`key: mcpg_[A-Za-z0-9]{32,}`).MatchString(out) {
			t.Errorf("first apply does not show the generated key once:\n%s", out)
		}
		out = g.ok(t, dir, env, "apply", "-f", cfgPath)
		if !strings.Contains(out, "0 created, 0 changed, 6 unchanged") || strings.Contains(out, "key: mcpg_") {
			t.Errorf("second apply is not all unchanged:\n%s", out)
		}
		changed := strings.Replace(cfgYAML, "description: GitHub", "description: GitHub MCP", 1)
		if err := os.WriteFile(cfgPath, []byte(changed), 0o600); err != nil {
			t.Fatal(err)
		}
		out = g.ok(t, dir, env, "apply", "-f", cfgPath)
		if !strings.Contains(out, "server github: changed") || !strings.Contains(out, "0 created, 1 changed, 5 unchanged") {
			t.Errorf("edited apply:\n%s", out)
		}
	})

	t.Run("apply errors", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		tests := []struct{ name, yaml, want string }{
			{"unknown field", "mcp_servers:\n  x:\n    url: http://a/mcp\n    urll: b\n", `line 4: unknown field "urll"`},
			{"missing env", "mcp_servers:\n  x:\n    url: os.environ/NOT_SET_ANYWHERE\n", "environment variable NOT_SET_ANYWHERE is not set"},
			{"server validation", "mcp_servers:\n  bad:\n    url: ftp://example.com/mcp\n", `server "bad": `},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if err := os.WriteFile(bad, []byte(tc.yaml), 0o600); err != nil {
					t.Fatal(err)
				}
				r := g.cli(t, dir, nil, "apply", "-f", bad)
				if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
					t.Errorf("exit %d, stderr %q; want non-zero and one line containing %q", r.code, r.stderr, tc.want)
				}
			})
		}
	})

	t.Run("servers never show secrets", func(t *testing.T) {
		for _, args := range [][]string{
			{"servers", "list"}, {"servers", "list", "-o", "json"},
			{"servers", "get", "github"}, {"servers", "get", "github", "-o", "json"},
		} {
			out := g.ok(t, dir, nil, args...)
			if strings.Contains(out, ghToken) || strings.Contains(out, teamSecret) {
				t.Errorf("%v prints a secret:\n%s", args, out)
			}
			if !strings.Contains(out, "github") {
				t.Errorf("%v lacks the server:\n%s", args, out)
			}
		}
		out := g.ok(t, dir, nil, "servers", "get", "github")
		if !strings.Contains(out, "auth_value=set") || !strings.Contains(out, "X-Team=set") {
			t.Errorf("get does not show that secrets are set:\n%s", out)
		}
	})

	t.Run("principals", func(t *testing.T) {
		out := g.ok(t, dir, nil, "principals", "list")
		for _, want := range []string{"alice", "bot", "demo", "admin", "service_account"} {
			if !strings.Contains(out, want) {
				t.Errorf("principals list lacks %q:\n%s", want, out)
			}
		}
		out = g.ok(t, dir, nil, "principals", "get", "alice", "-o", "json")
		if !strings.Contains(out, `"name": "alice"`) {
			t.Errorf("principals get -o json:\n%s", out)
		}
	})

	t.Run("keys", func(t *testing.T) {
		out := g.ok(t, dir, nil, "keys", "create", "--principal", "alice", "--name", "tmp", "--expires", "1h")
		key := regexp.MustCompile(`key: (mcpg_[A-Za-z0-9]{32,})`).FindStringSubmatch(out)
		id := regexp.MustCompile(`created key ([0-9a-f]+)`).FindStringSubmatch(out)
		if key == nil || id == nil {
			t.Fatalf("keys create:\n%s", out)
		}
		out = g.ok(t, dir, nil, "keys", "list", "--principal", "alice")
		if !strings.Contains(out, id[1]) || strings.Contains(out, key[1]) || strings.Contains(out, botKey) {
			t.Errorf("keys list (want id %s, never the key):\n%s", id[1], out)
		}
		g.ok(t, dir, nil, "keys", "revoke", id[1])
		out = g.ok(t, dir, nil, "keys", "list", "--principal", "alice")
		if !regexp.MustCompile(id[1] + `.*revoked`).MatchString(out) {
			t.Errorf("revoked key not shown as revoked:\n%s", out)
		}
	})

	t.Run("connections", func(t *testing.T) {
		out := g.ok(t, dir, nil, "connections", "list")
		if !strings.HasPrefix(out, "PRINCIPAL") {
			t.Errorf("connections list:\n%s", out)
		}
	})

	t.Run("errors are one line", func(t *testing.T) {
		tests := []struct {
			name string
			env  []string
			args []string
			want string
		}{
			{"bad admin key", nil, []string{"servers", "list", "--admin-key", "mcpg_wrongwrongwrongwrongwrongwrongwrong"}, "admin key missing or invalid"},
			{"no admin key", nil, []string{"servers", "list", "--admin-key", " "}, "admin key missing or invalid"},
			{"not found", nil, []string{"servers", "get", "nope"}, `server "nope"`},
			{"unavailable", []string{"MCPGATE_CONTROL_PLANE=http://" + freeAddr(t)}, []string{"servers", "list"}, "control plane unavailable"},
			{"usage", nil, []string{"servers", "frobnicate"}, "mcpgate servers list"},
			{"unknown command", nil, []string{"frobnicate"}, "unknown command"},
			{"bad flag", nil, []string{"servers", "list", "--bogus"}, "flag provided but not defined: -bogus"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := g.cli(t, dir, tc.env, tc.args...)
				if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
					t.Errorf("exit %d, stderr %q; want non-zero and one line containing %q", r.code, r.stderr, tc.want)
				}
			})
		}
	})

	t.Run("standalone proxy", func(t *testing.T) {
		token, err := os.ReadFile(filepath.Join(dir, ".mcpgate", "dataplane-token"))
		if err != nil {
			t.Fatal(err)
		}
		addr := freeAddr(t)
		p := startProcess(t, dir, []string{"MCPGATE_DATAPLANE_TOKEN=" + strings.TrimSpace(string(token))},
			"proxy", "--control-plane", g.control, "--public-url", "http://"+addr, "--listen", addr)
		waitListening(t, addr)
		demoKey := regexp.MustCompile(`key (mcpg_[A-Za-z0-9]+)`).FindStringSubmatch(g.banner)
		callCountdown(t, "http://"+addr+"/echo/mcp", demoKey[1])
		stopProcess(t, p)
	})

	t.Run("restart keeps objects", func(t *testing.T) {
		g.stop(t)
		g2 := startDev(t, dir, admin)
		if strings.Contains(g2.banner, "New admin key") {
			t.Errorf("restart created a new admin key:\n%s", g2.banner)
		}
		if k, _ := os.ReadFile(filepath.Join(dir, ".mcpgate", "admin-key")); !bytes.Equal(k, adminKey) {
			t.Error("restart changed the admin key file")
		}
		out := g2.ok(t, dir, nil, "servers", "list")
		for _, want := range []string{"github", "plain", "echo"} {
			if !strings.Contains(out, want) {
				t.Errorf("after restart servers list lacks %q:\n%s", want, out)
			}
		}
		out = g2.ok(t, dir, env, "apply", "-f", cfgPath)
		if !strings.Contains(out, "0 created, 0 changed, 6 unchanged") {
			t.Errorf("apply after restart:\n%s", out)
		}
		g2.stop(t)
	})
}

// callCountdown calls the demo's countdown tool through the gateway and
// checks its progress notifications arrive.
func callCountdown(t *testing.T, route, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	progress := make(chan float64, 16)
	client := mcp.NewClient(&mcp.Implementation{Name: "cli-test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			progress <- req.Params.Progress
		},
	})
	hc := &http.Client{Transport: headerTransport{key: key}}
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: route, HTTPClient: hc}, nil)
	if err != nil {
		t.Fatalf("connect through gateway: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{
		Name:      "countdown",
		Arguments: map[string]any{"from": 3, "delay_ms": 10},
		Meta:      mcp.Meta{"progressToken": "p1"},
	})
	if err != nil {
		t.Fatalf("countdown: %v", err)
	}
	for i := range 3 {
		select {
		case <-progress:
		case <-ctx.Done():
			t.Fatalf("progress notification %d never arrived", i+1)
		}
	}
	if tc, ok := res.Content[0].(*mcp.TextContent); !ok || tc.Text != "liftoff" {
		t.Errorf("countdown result %+v", res.Content)
	}
	echo, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
	if tc, ok := echo.Content[0].(*mcp.TextContent); !ok || tc.Text != "hi" {
		t.Errorf("echo result %+v", echo.Content)
	}
}

type headerTransport struct{ key string }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-MCPGate-API-Key", h.key)
	return http.DefaultTransport.RoundTrip(r)
}

type process struct {
	cmd    *exec.Cmd
	output *bytes.Buffer
	done   chan error
}

// startProcess runs the binary in dir with args until the test ends.
func startProcess(t *testing.T, dir string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	p := &process{cmd: cmd, output: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// stopProcess sends SIGTERM and expects a clean exit (20 s hang guard).
func stopProcess(t *testing.T, p *process) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, p.output)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit within 20 s of SIGTERM\n%s", p.output)
	}
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDevConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(cfg, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GH_TOKEN", ghToken)
	t.Setenv("TEAM_SECRET", teamSecret)
	t.Setenv("BOT_KEY", botKey)
	g := startDev(t, dir, freeAddr(t), "--config", cfg)
	for _, want := range []string{"Applied " + cfg, "server github: created", "key laptop: created", "key: mcpg_"} {
		if !strings.Contains(g.banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, g.banner)
		}
	}
	if strings.Contains(g.banner, "Demo route") || strings.Contains(g.banner, ghToken) {
		t.Errorf("banner shows the demo or a secret:\n%s", g.banner)
	}
	out := g.ok(t, dir, nil, "servers", "list")
	if strings.Contains(out, "echo") || !strings.Contains(out, "github") {
		t.Errorf("servers list:\n%s", out)
	}
	if out := g.ok(t, dir, nil, "servers", "delete", "plain"); out != "server plain deleted\n" {
		t.Errorf("servers delete: %q", out)
	}
	if r := g.cli(t, dir, nil, "servers", "get", "plain"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("get after delete: exit %d, %q", r.code, r.stderr)
	}
	if out := g.ok(t, dir, nil, "principals", "delete", "bot"); out != "principal bot deleted\n" {
		t.Errorf("principals delete: %q", out)
	}
	g.stop(t)
}
