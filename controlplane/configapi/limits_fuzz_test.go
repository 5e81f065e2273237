package configapi

import (
	"strings"
	"testing"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// FuzzValidateRateLimit: validation of an admin's rate limit never panics,
// accepts only definitions Check can count (names by api/wire's grammar,
// printable globs, bounds in range with at least one set), and its fixed
// messages never echo a value.
func FuzzValidateRateLimit(f *testing.F) {
	f.Add("writes", "alice", "github", "create_*", int64(0), int64(30), int64(500))
	f.Add("a b", "*", "*", "", int64(-1), int64(0), int64(0))
	f.Add("x", "bob", "a/b", "tool with space", int64(1), int64(0), int64(1_000_000_000_001))
	f.Fuzz(func(t *testing.T, id, principal, server, tool string, ps, pm, pd int64) {
		l := &configv1.RateLimit{Id: id, Principals: []string{principal}, Servers: []string{server}, Tools: []string{tool},
			PerSecond: ps, PerMinute: pm, PerDay: pd}
		err := validateRateLimit(l)
		if err == nil {
			if !wire.ValidServerName(id) || !wire.ValidServerName(principal) || (server != "*" && !wire.ValidServerName(server)) || !validGlob(tool) {
				t.Fatalf("accepted %v", l)
			}
			if ps < 0 || pm < 0 || pd < 0 || ps+pm+pd == 0 || max(ps, pm, pd) > maxLimitValue {
				t.Fatalf("accepted bounds %d %d %d", ps, pm, pd)
			}
			return
		}
		for _, v := range []string{id, principal, server, tool} {
			if len(v) >= 12 && strings.Contains(err.Error(), v) {
				t.Fatalf("message %q echoes %q", err.Error(), v)
			}
		}
	})
}
