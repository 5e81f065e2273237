package ops_test

import (
	"testing"

	"github.com/mcpgate/mcpgate/ops"
)

// FuzzApplyEnv: whatever a variable holds, ApplyEnv either takes it or
// fails with one of the fixed messages (the value never reaches the error:
// variables carry secrets), and a flag given on the command line always
// wins.
func FuzzApplyEnv(f *testing.F) {
	for _, s := range []string{"", "10s", "-1", "0x10", "1e3", "soon", "mcpg_SECRET", "9223372036854775808", "1h\x00"} {
		f.Add(s)
	}
	fixed := map[string]bool{
		"MCPGATE_DRAIN_TIMEOUT is not a valid duration": true,
		"MCPGATE_MAX_STREAMS is not a valid number":     true,
	}
	f.Fuzz(func(t *testing.T, v string) {
		env := map[string]string{
			"MCPGATE_LISTEN": v, "MCPGATE_VAULT_KEYSET_FILE": v,
			"MCPGATE_DRAIN_TIMEOUT": v, "MCPGATE_MAX_STREAMS": v,
		}
		fs, got := newFlags()
		if err := fs.Parse([]string{"--listen", "flag-wins"}); err != nil {
			t.Fatal(err)
		}
		_, err := ops.ApplyEnv(fs, lookup(env))
		if err != nil && !fixed[err.Error()] {
			t.Fatalf("error %q is not a fixed message", err)
		}
		if got.listen != "flag-wins" {
			t.Fatalf("variable %q overrode the flag: %q", v, got.listen)
		}
		if err == nil && v != "" && got.keyset != v {
			t.Fatalf("keyset %q, want %q", got.keyset, v)
		}
	})
}
