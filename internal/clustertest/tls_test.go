package clustertest

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1/configv1connect"
	"github.com/mcpgate/mcpgate/ops/tlsconfig"
)

// TestMutualTLSBetweenPlanes runs the topology with TLS on the control
// planes and one client certificate per data plane (no shared token): MCP
// traffic flows, admins use TLS with their admin key, and a data plane
// without an accepted certificate (and only a guessed token) cannot get a
// single decision.
func TestMutualTLSBetweenPlanes(t *testing.T) {
	f := setupWith(t, Options{TLS: true})
	for _, cl := range f.clients(t, f.key, 1) {
		if err := cl.Echo(f.ctx, "over mTLS"); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := f.c.CLI(f.ctx, 0, "servers", "list"); code != 0 || !strings.Contains(out, "echo") {
		t.Errorf("CLI over TLS: exit %d: %s", code, out)
	}
	anon := configv1connect.NewServerServiceClient(f.c.HTTPClient(), f.c.Controls[0].URL)
	if _, err := anon.ListServers(f.ctx, &configv1.ListServersRequest{}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("admin API without a key: %v, want unauthenticated", err)
	}
	if resp, err := http.Get(strings.Replace(f.c.Controls[0].URL, "https://", "http://", 1) + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest { // Go's "HTTP request to an HTTPS server"
			t.Errorf("the control plane's TLS listener answered plain HTTP with %d", resp.StatusCode)
		}
	}

	other, err := tlsconfig.WritePKI(filepath.Join(f.c.Dir, "other-pki"), []string{"127.0.0.1"}, "intruder")
	if err != nil {
		t.Fatal(err)
	}
	rogues := []struct {
		name  string
		extra []string
	}{
		{"no_client_certificate", []string{"--control-plane-ca", f.c.PKI.CA}},
		{"certificate_from_another_ca", []string{"--control-plane-ca", f.c.PKI.CA,
			"--control-plane-cert", other.ClientCerts[0], "--control-plane-key", other.ClientKeys[0]}},
	}
	for _, r := range rogues {
		t.Run(r.name, func(t *testing.T) {
			ports := freePorts(t, 2)
			url := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
			args := append([]string{"proxy", "--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]),
				"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--public-url", url,
				"--control-plane", strings.Join(f.c.ControlURLs(), ",")}, r.extra...)
			n := &Node{Process: newProcess(t, f.c.Dir, "rogue-"+r.name, f.c.Bin.Mcpgate, args, []string{"MCPGATE_DATAPLANE_TOKEN=guessed-token"}), URL: url,
				MetricsURL: fmt.Sprintf("http://127.0.0.1:%d", ports[1])}
			if err := n.Start(); err != nil {
				t.Fatal(err)
			}
			defer n.Kill()
			if err := waitHTTP(f.ctx, n.Process, n.MetricsURL+"/healthz", func(r *http.Response) bool { return r.StatusCode == 200 }); err != nil {
				t.Fatal(err)
			}
			before := f.up.Requests()
			status, retry, _, err := Post(f.ctx, url, "echo", f.key, InitializeBody)
			if err != nil {
				t.Fatal(err)
			}
			if status != http.StatusServiceUnavailable || retry == "" {
				t.Errorf("rogue data plane: %d (Retry-After %q), want 503: no decision without an accepted certificate", status, retry)
			}
			if f.up.Requests() != before {
				t.Error("a request through the rogue data plane reached the upstream")
			}
		})
	}
}
