package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mcpgate/mcpgate/internal/clustertest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	clustertest.Cleanup()
	os.Exit(code)
}

// flags lists the flags a binary's help output documents.
type flags struct {
	help string
	set  map[string]bool
}

var (
	goFlagRE   = regexp.MustCompile(`(?m)^\s+-([a-z0-9][a-z0-9-]*)`)
	etcdFlagRE = regexp.MustCompile(`(?m)^\s+--([a-z0-9][a-z0-9-]*)`)
)

func helpFlags(t *testing.T, re *regexp.Regexp, bin string, args ...string) flags {
	t.Helper()
	out, _ := exec.Command(bin, args...).CombinedOutput() // -h may exit non-zero
	f := flags{help: string(out), set: map[string]bool{}}
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		f.set[m[1]] = true
	}
	if len(f.set) < 3 {
		t.Fatalf("%s %v: no flags found in help output:\n%s", bin, args, out)
	}
	return f
}

type binaries struct {
	bins    clustertest.Binaries
	mcpgate map[string]flags // by subcommand
	root    string           // `mcpgate --help`
	etcd    flags
}

func load(t *testing.T) *binaries {
	t.Helper()
	b := &binaries{bins: clustertest.Build(t), mcpgate: map[string]flags{}}
	for _, sub := range []string{"control", "proxy"} {
		b.mcpgate[sub] = helpFlags(t, goFlagRE, b.bins.Mcpgate, sub, "-h")
	}
	root, _ := exec.Command(b.bins.Mcpgate, "--help").CombinedOutput()
	b.root = string(root)
	b.etcd = helpFlags(t, etcdFlagRE, b.bins.Etcd, "--help")
	return b
}

// checkArgs checks a command line: binary name, subcommand, flags.
func (b *binaries) checkArgs(t *testing.T, where string, argv []string) {
	t.Helper()
	if len(argv) == 0 {
		t.Errorf("%s: empty command", where)
		return
	}
	var known flags
	rest := argv[1:]
	switch filepath.Base(argv[0]) {
	case "mcpgate", "mcpgate-proxy":
		sub := "proxy"
		if filepath.Base(argv[0]) == "mcpgate" {
			if len(rest) == 0 {
				t.Errorf("%s: mcpgate without a subcommand", where)
				return
			}
			sub, rest = rest[0], rest[1:]
		}
		var ok bool
		if known, ok = b.mcpgate[sub]; !ok {
			t.Errorf("%s: unknown mcpgate subcommand %q", where, sub)
			return
		}
	case "etcd":
		known = b.etcd
	default:
		t.Errorf("%s: unexpected binary %q", where, argv[0])
		return
	}
	n := 0
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if !strings.HasPrefix(a, "-") {
			continue // a value of the previous flag
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !known.set[name] {
			t.Errorf("%s: flag --%s is not in %s's help output", where, name, argv[0])
		}
		n++
	}
	if n == 0 {
		t.Errorf("%s: no flags checked", where)
	}
}

func TestKubernetesManifests(t *testing.T) {
	b := load(t)
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	kinds := map[string]int{}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		var labels []map[string]string // pod template labels in this file
		var selectors []map[string]string
		for i := 0; ; i++ {
			var doc manifest
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", file, i, err)
			}
			kinds[doc.Kind]++
			if doc.APIVersion == "" || doc.Metadata.Name == "" || doc.Metadata.Namespace != "mcpgate" {
				t.Errorf("%s document %d: missing apiVersion, name or namespace", file, i)
			}
			switch doc.Kind {
			case "Service":
				selectors = append(selectors, doc.Spec.Selector.MatchLabels)
			case "Deployment", "StatefulSet":
				labels = append(labels, doc.Spec.Template.Metadata.Labels)
				if !subset(doc.Spec.Selector.MatchLabels, doc.Spec.Template.Metadata.Labels) {
					t.Errorf("%s %s: selector does not match the pod labels", file, doc.Metadata.Name)
				}
				for _, c := range doc.Spec.Template.Spec.Containers {
					where := file + " " + doc.Metadata.Name + "/" + c.Name
					b.checkArgs(t, where, append(slices.Clone(c.Command), c.Args...))
					checkProbes(t, where, c)
				}
			}
		}
		f.Close()
		for _, sel := range selectors {
			if !slices.ContainsFunc(labels, func(l map[string]string) bool { return subset(sel, l) }) {
				t.Errorf("%s: a Service selects %v, which no workload in the file carries", file, sel)
			}
		}
	}
	for _, k := range []string{"Deployment", "StatefulSet", "Service"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

// checkProbes: mcpgate containers probe /healthz and /readyz on the port
// their --metrics-listen flag binds.
func checkProbes(t *testing.T, where string, c container) {
	t.Helper()
	if len(c.Command) == 0 || c.Command[0] != "mcpgate" {
		return
	}
	var metricsPort string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--metrics-listen="); ok {
			metricsPort = v[strings.LastIndex(v, ":")+1:]
		}
	}
	if metricsPort == "" {
		t.Errorf("%s: no --metrics-listen", where)
		return
	}
	ports := map[string]string{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, p := range []struct {
		name  string
		probe *probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil {
			t.Errorf("%s: no %s probe", where, p.name)
			continue
		}
		port := p.probe.HTTPGet.Port
		if named, ok := ports[port]; ok {
			port = named
		}
		if p.probe.HTTPGet.Path != p.path || port != metricsPort {
			t.Errorf("%s: %s probe %s on port %s, want %s on %s", where, p.name, p.probe.HTTPGet.Path, port, p.path, metricsPort)
		}
	}
}

func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Spec struct {
		Selector yamlSelector `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				Containers []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// yamlSelector is a Service's plain selector or a workload's matchLabels.
type yamlSelector struct {
	MatchLabels map[string]string
	plain       map[string]string
}

func (s *yamlSelector) UnmarshalYAML(n *yaml.Node) error {
	var m map[string]any
	if err := n.Decode(&m); err != nil {
		return err
	}
	if ml, ok := m["matchLabels"]; ok {
		s.MatchLabels = map[string]string{}
		for k, v := range ml.(map[string]any) {
			s.MatchLabels[k], _ = v.(string)
		}
		return nil
	}
	s.plain = map[string]string{}
	for k, v := range m {
		s.plain[k], _ = v.(string)
	}
	s.MatchLabels = s.plain
	return nil
}

type container struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort string `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// unit is a parsed systemd unit: directive → values (continuations joined).
func parseUnit(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		k, v, ok := strings.Cut(cur.String(), "=")
		if !ok {
			t.Errorf("%s: malformed line %q", path, cur.String())
		}
		out[k] = append(out[k], v)
		cur.Reset()
	}
	return out
}

func TestSystemdUnits(t *testing.T) {
	b := load(t)
	units, err := filepath.Glob("systemd/*.service")
	if err != nil || len(units) < 3 {
		t.Fatalf("units: %v %v", units, err)
	}
	for _, u := range units {
		d := parseUnit(t, u)
		exec := d["ExecStart"]
		if len(exec) != 1 {
			t.Errorf("%s: %d ExecStart lines, want 1", u, len(exec))
			continue
		}
		b.checkArgs(t, u, strings.Fields(exec[0]))
		for _, ef := range d["EnvironmentFile"] {
			local := filepath.Join("systemd", filepath.Base(ef))
			checkEnvFile(t, b, local, strings.Fields(exec[0]))
		}
		verify(t, b, u, d)
	}
}

// checkEnvFile: every MCPGATE_ variable is one the binary documents, and
// every ${VAR} the command line uses is defined.
func checkEnvFile(t *testing.T, b *binaries, path string, argv []string) {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("environment file %s missing: %v", path, err)
		return
	}
	defined := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: malformed %q", path, line)
			continue
		}
		defined[k] = true
		if strings.HasPrefix(k, "MCPGATE_") {
			help := b.root
			for _, f := range b.mcpgate {
				help += f.help
			}
			if !strings.Contains(help, k) {
				t.Errorf("%s: %s is not documented by mcpgate", path, k)
			}
		}
	}
	for _, a := range argv {
		for _, m := range regexp.MustCompile(`\$\{([A-Z_]+)\}`).FindAllStringSubmatch(a, -1) {
			if !defined[m[1]] {
				t.Errorf("%s uses ${%s}, which %s does not define", argv[0], m[1], path)
			}
		}
	}
}

// verify runs systemd-analyze verify (when the machine has it) on a copy
// of the unit whose binary and environment file point at real files.
func verify(t *testing.T, b *binaries, unit string, d map[string][]string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze not installed: %s checked by parsing only", unit)
		return
	}
	body, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	s := string(body)
	s = strings.ReplaceAll(s, "/usr/local/bin/mcpgate", b.bins.Mcpgate)
	s = strings.ReplaceAll(s, "/usr/local/bin/etcd", b.bins.Etcd)
	for _, ef := range d["EnvironmentFile"] {
		abs, _ := filepath.Abs(filepath.Join("systemd", filepath.Base(ef)))
		s = strings.ReplaceAll(s, ef, abs)
	}
	dir := t.TempDir()
	cp := filepath.Join(dir, filepath.Base(unit))
	if err := os.WriteFile(cp, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", cp).CombinedOutput()
	var problems []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// The test machine has no mcpgate/etcd users and no network
		// target units; those are deployment facts, not unit errors.
		if l == "" || strings.Contains(l, "user") || strings.Contains(l, "network-online.target") {
			continue
		}
		problems = append(problems, l)
	}
	if err != nil || len(problems) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, strings.Join(problems, "\n"))
	}
}
