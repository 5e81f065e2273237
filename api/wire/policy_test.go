package wire

import (
	"testing"
	"unicode/utf8"
)

// testRule is a compiled entry (the planes use *authorizev1.VisibilityRule).
type testRule struct {
	kind, effect int32
	glob, id     string
}

func (r testRule) GetKind() int32    { return r.kind }
func (r testRule) GetGlob() string   { return r.glob }
func (r testRule) GetEffect() int32  { return r.effect }
func (r testRule) GetRuleId() string { return r.id }

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
	allowed, disallowed := []string{"a", "merge_pr", "merge_x", "admin", "q"}, []string{"q"}
	rules := []testRule{
		{KindTool, EffectRestrict, "merge_*", "r1"},
		{KindTool, EffectAllow, "merge_pr", "r2"},
		{KindTool, EffectDeny, "adm*", "r3"},
		{KindTool, EffectAllow, "adm*", "r4"},
		{KindResource, 99, "*", "future"},
		{KindPrompt, EffectRestrict, "p*", "r5"},
	}
	for _, tc := range []struct {
		kind int32
		name string
		ok   bool
		rule string
	}{
		{KindTool, "a", true, ""},
		{KindTool, "b", false, RuleServerAllowedTools},
		{KindTool, "q", false, RuleServerDisallowedTools},
		{KindTool, "merge_pr", true, ""},
		{KindTool, "merge_x", false, "r1"},
		{KindTool, "admin", false, "r3"},
		{KindResource, "file:///x", false, "future"},
		{KindPrompt, "b", true, ""},
		{KindPrompt, "pq", false, "r5"},
		{KindPrompt, "q", true, ""}, // the server's tool lists are for tools
	} {
		if ok, rule := Visible(allowed, disallowed, rules, tc.kind, tc.name); ok != tc.ok || rule != tc.rule {
			t.Errorf("Visible(%v %q) = %v %q, want %v %q", tc.kind, tc.name, ok, rule, tc.ok, tc.rule)
		}
	}
	if ok, _ := Visible(nil, nil, []testRule(nil), int32(KindTool), "a"); !ok {
		t.Error("without lists or rules a name is hidden")
	}
}
