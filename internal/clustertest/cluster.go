package clustertest

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/controlplane/vault"
	"github.com/mcpgate/mcpgate/ops/tlsconfig"
)

// Options shape a cluster.
type Options struct {
	// Controls and Proxies default to 2.
	Controls, Proxies int
	// ControlArgs and ProxyArgs are appended to every replica's flags.
	ControlArgs, ProxyArgs []string
	// TLS runs the control planes' listener over TLS and authenticates data
	// planes with client certificates (one per data plane) instead of the
	// shared token.
	TLS bool
	// FarControls control planes run in a "far region": they reach etcd
	// through Cluster.WAN (toxiproxy), and FarProxies data planes there use
	// only them. Both default to 0.
	FarControls, FarProxies int
}

// Node is an mcpgate process with its listener.
type Node struct {
	*Process
	// URL is the base URL of its main listener (control: admin API and
	// Authorize; proxy: the public MCP listener, also its public URL).
	URL string
	// MetricsURL is the base URL of its metrics/health listener.
	MetricsURL string
	// AuditLog is the file its audit events go to.
	AuditLog string
}

// Cluster is the production topology on loopback.
type Cluster struct {
	Bin            Binaries
	Dir            string
	Etcd           *Etcd
	Controls       []*Node
	Proxies        []*Node
	AdminKey       string
	DataPlaneToken string
	VaultKeyset    string
	// PKI is set with Options.TLS.
	PKI *tlsconfig.Files
	// WAN is the far region's link to etcd (set with Options.FarControls).
	WAN *WAN
	// FarControls and FarProxies are the far region's replicas.
	FarControls, FarProxies []*Node
}

// Start builds the binaries (once), starts a three-member etcd cluster,
// the control planes on it and the data planes in front of them, and
// waits until all are ready.
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	if opts.Controls == 0 {
		opts.Controls = 2
	}
	if opts.Proxies == 0 {
		opts.Proxies = 2
	}
	c := &Cluster{
		Bin:            Build(tb),
		Dir:            tb.TempDir(),
		AdminKey:       "mcpg_" + randomBase62(tb, 40),
		DataPlaneToken: randomBase62(tb, 40),
	}
	c.VaultKeyset = filepath.Join(c.Dir, "vault-keyset.json")
	if _, err := vault.LoadOrCreate(c.VaultKeyset); err != nil {
		tb.Fatal(err)
	}
	scheme := "http"
	if opts.TLS {
		var dps []string
		for i := range opts.Proxies + opts.FarProxies {
			dps = append(dps, fmt.Sprintf("dp-%d", i))
		}
		pki, err := tlsconfig.WritePKI(filepath.Join(c.Dir, "pki"), []string{"127.0.0.1", "localhost"}, dps...)
		if err != nil {
			tb.Fatal(err)
		}
		c.PKI, scheme = pki, "https"
	}
	c.Etcd = StartEtcd(tb, c.Bin.Etcd, c.Dir, 3)

	ports := freePorts(tb, 2*(opts.Controls+opts.Proxies+opts.FarControls+opts.FarProxies))
	next := func() int { p := ports[0]; ports = ports[1:]; return p }
	if opts.FarControls > 0 {
		var targets []string
		for _, u := range c.Etcd.ClientURLs {
			targets = append(targets, strings.TrimPrefix(u, "http://"))
		}
		c.WAN = StartWAN(tb, targets)
	}
	newControl := func(name, endpoints string) *Node {
		listen, metrics := next(), next()
		args := append([]string{"control",
			"--listen", fmt.Sprintf("127.0.0.1:%d", listen),
			"--etcd-endpoints", endpoints,
			"--vault-keyset-file", c.VaultKeyset,
			"--log-format", "json",
		}, opts.ControlArgs...)
		audit := filepath.Join(c.Dir, name+"-audit.jsonl")
		args = append(args, "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", metrics), "--audit-log", audit)
		env := []string{"MCPGATE_ADMIN_KEY=" + c.AdminKey, "MCPGATE_DATAPLANE_TOKEN=" + c.DataPlaneToken}
		if opts.TLS {
			args = append(args, "--tls-cert", c.PKI.ServerCert, "--tls-key", c.PKI.ServerKey, "--client-ca", c.PKI.CA)
			env = env[:1] // data planes authenticate with certificates only
		}
		return &Node{
			Process:    newProcess(tb, c.Dir, name, c.Bin.Mcpgate, args, env),
			URL:        fmt.Sprintf("%s://127.0.0.1:%d", scheme, listen),
			MetricsURL: fmt.Sprintf("http://127.0.0.1:%d", metrics),
			AuditLog:   audit,
		}
	}
	for i := range opts.Controls {
		c.Controls = append(c.Controls, newControl(fmt.Sprintf("control-%d", i), c.Etcd.Endpoints()))
	}
	for i := range opts.FarControls {
		c.FarControls = append(c.FarControls, newControl(fmt.Sprintf("far-control-%d", i), c.WAN.Endpoints()))
	}
	newProxy := func(name string, i int, controls []string) *Node {
		listen, metrics := next(), next()
		url := fmt.Sprintf("http://127.0.0.1:%d", listen)
		args := append([]string{"proxy",
			"--listen", fmt.Sprintf("127.0.0.1:%d", listen),
			"--public-url", url,
			"--control-plane", strings.Join(controls, ","),
			"--log-format", "json",
		}, opts.ProxyArgs...)
		audit := filepath.Join(c.Dir, name+"-audit.jsonl")
		args = append(args, "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", metrics), "--audit-log", audit)
		env := []string{"MCPGATE_DATAPLANE_TOKEN=" + c.DataPlaneToken}
		if opts.TLS {
			args = append(args, "--control-plane-ca", c.PKI.CA,
				"--control-plane-cert", c.PKI.ClientCerts[i], "--control-plane-key", c.PKI.ClientKeys[i])
			env = nil
		}
		return &Node{
			Process:    newProcess(tb, c.Dir, name, c.Bin.Mcpgate, args, env),
			URL:        url,
			MetricsURL: fmt.Sprintf("http://127.0.0.1:%d", metrics),
			AuditLog:   audit,
		}
	}
	for i := range opts.Proxies {
		c.Proxies = append(c.Proxies, newProxy(fmt.Sprintf("proxy-%d", i), i, c.ControlURLs()))
	}
	var far []string
	for _, n := range c.FarControls {
		far = append(far, n.URL)
	}
	for i := range opts.FarProxies {
		c.FarProxies = append(c.FarProxies, newProxy(fmt.Sprintf("far-proxy-%d", i), opts.Proxies+i, far))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// All replicas start at once on the empty cluster and race to create
	// the admin principal and key, as a fresh deployment does.
	controls := append(slices.Clone(c.Controls), c.FarControls...)
	proxies := append(slices.Clone(c.Proxies), c.FarProxies...)
	for _, n := range controls {
		if err := n.Start(); err != nil {
			tb.Fatal(err)
		}
	}
	for _, n := range controls {
		if err := n.WaitReady(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	for _, n := range proxies {
		if err := n.Start(); err != nil {
			tb.Fatal(err)
		}
	}
	for _, n := range proxies {
		if err := n.WaitReady(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

// ControlURLs are the control planes' base URLs.
func (c *Cluster) ControlURLs() []string {
	var out []string
	for _, n := range c.Controls {
		out = append(out, n.URL)
	}
	return out
}

// HTTPClient is a client for the control planes' listener (trusting the
// test CA with Options.TLS; no client certificate: an admin's view).
func (c *Cluster) HTTPClient() *http.Client {
	hc := &http.Client{Timeout: 30 * time.Second} // a write without quorum takes etcd's request timeout
	if c.PKI != nil {
		cfg, err := tlsconfig.Client(c.PKI.CA, "", "")
		if err != nil {
			panic(err) // WritePKI wrote a valid CA
		}
		hc.Transport = &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	}
	return hc
}

// WaitReady waits until the node's /readyz answers 200.
func (n *Node) WaitReady(ctx context.Context) error {
	return waitHTTP(ctx, n.Process, n.MetricsURL+"/readyz", func(r *http.Response) bool {
		return r.StatusCode == http.StatusOK
	})
}

// Restart starts a stopped node again (same ports) and waits until ready.
func (n *Node) Restart(ctx context.Context) error {
	if err := n.Start(); err != nil {
		return err
	}
	return n.WaitReady(ctx)
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randomBase62(tb testing.TB, n int) string {
	b := make([]byte, n)
	for i := range b {
		v, err := rand.Int(rand.Reader, big.NewInt(int64(len(base62))))
		if err != nil {
			tb.Fatal(err)
		}
		b[i] = base62[v.Int64()]
	}
	return string(b)
}
