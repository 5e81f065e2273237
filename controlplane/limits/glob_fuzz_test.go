package limits_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/controlplane/limits"
)

// globRegexp is the reference meaning of a glob, for ASCII input: '*' any
// run, '?' one character, everything else literal.
func globRegexp(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)\A`)
	for _, r := range pattern {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`\z`)
	return regexp.MustCompile(b.String())
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzGlob: Glob (admin pattern, client-chosen tool name) never panics,
// agrees with the regular-expression meaning on ASCII, and a pattern
// always matches itself when it has no wildcard.
func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{{"create_*", "create_issue"}, {"a*b?c", "axxbyc"}, {"*", ""}, {"?", "é"}, {"**a", "aaa"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, name string) {
		if len(pattern) > 128 || len(name) > 256 {
			return
		}
		got := limits.Glob(pattern, name)
		if !strings.ContainsAny(pattern, "*?") && got != (pattern == name) {
			t.Fatalf("literal %q vs %q: %v", pattern, name, got)
		}
		if ascii(pattern) && ascii(name) {
			if want := globRegexp(pattern).MatchString(name); got != want {
				t.Fatalf("Glob(%q, %q) = %v, regexp says %v", pattern, name, got, want)
			}
		}
	})
}
