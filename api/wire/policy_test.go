package wire

import (
	"testing"
	"unicode/utf8"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// refMatch is the glob grammar spelled out recursively over code points:
// '*' any run, '?' one code point, anything else itself.
func refMatch(g, s []rune) bool {
	if len(g) == 0 {
		return len(s) == 0
	}
	switch g[0] {
	case '*':
		for i := 0; i <= len(s); i++ {
			if refMatch(g[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return len(s) > 0 && refMatch(g[1:], s[1:])
	}
	return len(s) > 0 && s[0] == g[0] && refMatch(g[1:], s[1:])
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		g, s string
		want bool
	}{
		{"merge_*", "merge_pr", true},
		{"merge_*", "merge_", true},
		{"merge_*", "merg", false},
		{"*", "", true},
		{"*", "a/b/c", true},
		{"file:///docs/*", "file:///docs/a/b.md", true},
		{"file:///docs/*", "file:///doc/a", false},
		{"?", "é", true},
		{"?", "ab", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*b*b*", "abxbx", true},
		{"*b*b*", "abx", false},
		{"exact", "exact", true},
		{"exact", "Exact", false},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"**", "x", true},
	} {
		if got := GlobMatch(tc.g, tc.s); got != tc.want {
			t.Errorf("GlobMatch(%q, %q) = %v, want %v", tc.g, tc.s, got, tc.want)
		}
	}
	for _, tc := range []struct {
		g   string
		err error
	}{
		{"", ErrGlobEmpty}, {string(make([]byte, 257)), ErrGlobTooLong}, {"a[b]", ErrGlobReserved}, {`a\*`, ErrGlobReserved},
		{"a\x00", ErrGlobInvalid}, {"\xff", ErrGlobInvalid}, {"a\x7f", ErrGlobInvalid}, {"merge_*", nil}, {"file:///?/*", nil},
	} {
		if err := ValidGlob(tc.g); err != tc.err {
			t.Errorf("ValidGlob(%q) = %v, want %v", tc.g, err, tc.err)
		}
	}
}

// FuzzGlobMatch: GlobMatch agrees with the recursive reference for every
// valid glob and valid UTF-8 name, and never panics on anything.
func FuzzGlobMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"merge_*", "merge_pr"}, {"*b*b*", "abxbx"}, {"?", "é"}, {"file:///*", "file:///a/b"}, {"a?c*", "abcd"}, {"**?", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, g, s string) {
		got := GlobMatch(g, s)
		if ValidGlob(g) != nil || !utf8.ValidString(s) || len(s) > 256 {
			return
		}
		if want := refMatch([]rune(g), []rune(s)); got != want {
			t.Fatalf("GlobMatch(%q, %q) = %v, reference %v", g, s, got, want)
		}
	})
}

// TestVisible: the precedence of the one visibility rule.
func TestVisible(t *testing.T) {
	const (
		tool  = authorizev1.PolicyKind_POLICY_KIND_TOOL
		res   = authorizev1.PolicyKind_POLICY_KIND_RESOURCE
		allow = authorizev1.VisibilityEffect_VISIBILITY_EFFECT_ALLOW
		deny  = authorizev1.VisibilityEffect_VISIBILITY_EFFECT_DENY
		restr = authorizev1.VisibilityEffect_VISIBILITY_EFFECT_RESTRICT
	)
	a := &authorizev1.Allow{AllowedTools: []string{"a", "merge_pr", "merge_x", "admin", "q"}, DisallowedTools: []string{"q"}, Visibility: []*authorizev1.VisibilityRule{
		{Kind: tool, Glob: "merge_*", Effect: restr, RuleId: "r1"},
		{Kind: tool, Glob: "merge_pr", Effect: allow, RuleId: "r2"},
		{Kind: tool, Glob: "adm*", Effect: deny, RuleId: "r3"},
		{Kind: tool, Glob: "adm*", Effect: allow, RuleId: "r4"},
		{Kind: res, Glob: "*", Effect: 99, RuleId: "future"},
	}}
	for _, tc := range []struct {
		kind authorizev1.PolicyKind
		name string
		ok   bool
		rule string
	}{
		{tool, "a", true, ""},
		{tool, "b", false, RuleServerAllowedTools},
		{tool, "q", false, RuleServerDisallowedTools},
		{tool, "merge_pr", true, ""},
		{tool, "merge_x", false, "r1"},
		{tool, "admin", false, "r3"},
		{res, "file:///x", false, "future"},
		{authorizev1.PolicyKind_POLICY_KIND_PROMPT, "b", true, ""},
	} {
		if ok, rule := Visible(a, tc.kind, tc.name); ok != tc.ok || rule != tc.rule {
			t.Errorf("Visible(%v %q) = %v %q, want %v %q", tc.kind, tc.name, ok, rule, tc.ok, tc.rule)
		}
	}
	if ok, _ := Visible(nil, tool, "a"); ok {
		t.Error("a nil ALLOW shows something")
	}
}
