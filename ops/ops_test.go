package ops_test

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/ops"
)

func TestEnvName(t *testing.T) {
	for flagName, want := range map[string]string{
		"listen":                    "MCPGATE_LISTEN",
		"vault-keyset-file":         "MCPGATE_VAULT_KEYSET_FILE",
		"max-streams-per-principal": "MCPGATE_MAX_STREAMS_PER_PRINCIPAL",
		"catchup-reads-per-second":  "MCPGATE_CATCHUP_READS_PER_SECOND",
	} {
		if got := ops.EnvName(flagName); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flagName, got, want)
		}
	}
}

type testFlags struct {
	listen  string
	keyset  string
	drain   time.Duration
	streams int
}

func newFlags() (*flag.FlagSet, *testFlags) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f testFlags
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "listener")
	fs.StringVar(&f.keyset, "vault-keyset-file", "", "keyset file")
	ops.Deprecate(fs, "vault-keyset", "vault-keyset-file")
	fs.DurationVar(&f.drain, "drain-timeout", ops.DefaultDrainTimeout, "drain")
	fs.IntVar(&f.streams, "max-streams", 32, "streams")
	ops.DocumentEnv(fs)
	return fs, &f
}

func lookup(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// TestApplyEnv: a flag wins over its variable, which wins over the
// default; an empty variable counts as unset; the deprecated flag sets the
// new one with a warning, and its own derived variable (here the keyset's
// contents, MCPGATE_VAULT_KEYSET) is never read as a path.
func TestApplyEnv(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		env      map[string]string
		want     testFlags
		warnings []string
	}{
		{"defaults", nil, nil, testFlags{"127.0.0.1:8080", "", 10 * time.Second, 32}, nil},
		{"env", nil, map[string]string{
			"MCPGATE_LISTEN": ":9", "MCPGATE_VAULT_KEYSET_FILE": "/ks.json", "MCPGATE_DRAIN_TIMEOUT": "3s", "MCPGATE_MAX_STREAMS": "4",
		}, testFlags{":9", "/ks.json", 3 * time.Second, 4}, nil},
		{"empty env is unset", nil, map[string]string{"MCPGATE_LISTEN": ""}, testFlags{"127.0.0.1:8080", "", 10 * time.Second, 32}, nil},
		{"flag wins", []string{"--listen", ":1", "--drain-timeout", "1s"}, map[string]string{"MCPGATE_LISTEN": ":9", "MCPGATE_DRAIN_TIMEOUT": "3s"},
			testFlags{":1", "", time.Second, 32}, nil},
		{"deprecated flag", []string{"--vault-keyset", "/old.json"}, map[string]string{"MCPGATE_VAULT_KEYSET_FILE": "/env.json"},
			testFlags{"127.0.0.1:8080", "/old.json", 10 * time.Second, 32}, []string{"--vault-keyset is deprecated; use --vault-keyset-file"}},
		{"alias has no variable", nil, map[string]string{"MCPGATE_VAULT_KEYSET": `{"primaryKeyId":1}`},
			testFlags{"127.0.0.1:8080", "", 10 * time.Second, 32}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, got := newFlags()
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			warnings, err := ops.ApplyEnv(fs, lookup(tc.env))
			if err != nil {
				t.Fatalf("ApplyEnv: %v", err)
			}
			if *got != tc.want {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
			if strings.Join(warnings, "\n") != strings.Join(tc.warnings, "\n") {
				t.Errorf("warnings %q, want %q", warnings, tc.warnings)
			}
		})
	}
}

// TestApplyEnvMalformed: a malformed variable is an error naming the
// variable and what it must be, never echoing the value (variables carry
// secrets). Before, --drain-timeout and the data plane's limits silently
// fell back to their defaults.
func TestApplyEnvMalformed(t *testing.T) {
	for env, want := range map[string]string{
		"MCPGATE_DRAIN_TIMEOUT": "MCPGATE_DRAIN_TIMEOUT is not a valid duration",
		"MCPGATE_MAX_STREAMS":   "MCPGATE_MAX_STREAMS is not a valid number",
	} {
		fs, _ := newFlags()
		if err := fs.Parse(nil); err != nil {
			t.Fatal(err)
		}
		_, err := ops.ApplyEnv(fs, lookup(map[string]string{env: "s3cret-soon"}))
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", env, err, want)
		}
	}
}

// TestDocumentEnv: -h names every flag's variable, and not the deprecated
// alias's.
func TestDocumentEnv(t *testing.T) {
	fs, _ := newFlags()
	var b strings.Builder
	fs.SetOutput(&b)
	fs.PrintDefaults()
	for _, v := range []string{"$MCPGATE_LISTEN", "$MCPGATE_VAULT_KEYSET_FILE", "$MCPGATE_DRAIN_TIMEOUT", "$MCPGATE_MAX_STREAMS"} {
		if !strings.Contains(b.String(), v) {
			t.Errorf("help lacks %s:\n%s", v, b.String())
		}
	}
	if strings.Contains(b.String(), "$MCPGATE_VAULT_KEYSET)") {
		t.Errorf("help gives the deprecated flag a variable:\n%s", b.String())
	}
}
