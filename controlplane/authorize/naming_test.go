package authorize_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/authorize"
)

func TestCheckNaming(t *testing.T) {
	n := func(src, prefix string, kv ...string) authorize.Naming {
		r := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			r[kv[i]] = kv[i+1]
		}
		return authorize.Naming{Source: src, Prefix: prefix, Renames: r}
	}
	for _, c := range []struct {
		name string
		ms   []authorize.Naming
		want string // "" = accepted
	}{
		{"defaults", []authorize.Naming{n("echo", "echo__"), n("notes", "notes__"), n("Gmail", "Gmail__")}, ""},
		{"renames outside every prefix", []authorize.Naming{n("echo", "echo__", "search", "find"), n("notes", "n.", "add", "note_add")}, ""},
		{"one member, empty prefix", []authorize.Naming{n("echo", "")}, ""},
		{"no members", nil, ""},
		{"equal prefixes", []authorize.Naming{n("members[0] (a)", "x__"), n("members[1] (b)", "x__")},
			`members[0] (a): tool prefix "x__" and members[1] (b): tool prefix "x__" are not prefix-free (one starts with the other, so a name could belong to both)`},
		{"nested default prefixes", []authorize.Naming{n("server \"a\"", "a__"), n("server \"a__b\"", "a__b__")},
			`server "a": tool prefix "a__" and server "a__b": tool prefix "a__b__" are not prefix-free (one starts with the other, so a name could belong to both)`},
		{"empty prefix beside another", []authorize.Naming{n("members[0] (a)", "a__"), n("members[1] (b)", "")},
			`members[0] (a): tool prefix "a__" and members[1] (b): tool prefix "" are not prefix-free (one starts with the other, so a name could belong to both)`},
		{"invalid prefix", []authorize.Naming{n("members[0] (a)", "a/")},
			`members[0] (a): tool prefix "a/" must be at most 64 characters of A-Z, a-z, 0-9, '_', '-' and '.'`},
		{"long prefix", []authorize.Naming{n("members[0] (a)", strings.Repeat("p", 65))},
			`members[0] (a): tool prefix "` + strings.Repeat("p", 65) + `" must be at most 64 characters of A-Z, a-z, 0-9, '_', '-' and '.'`},
		{"rename target invalid", []authorize.Naming{n("members[0] (a)", "a__", "search", "find me")},
			`members[0] (a): renames["search"] = "find me": ` + wire.ToolNameRule},
		{"rename target too long", []authorize.Naming{n("members[0] (a)", "a__", "search", strings.Repeat("f", 129))},
			`members[0] (a): renames["search"] = "` + strings.Repeat("f", 129) + `": ` + wire.ToolNameRule},
		{"renames collide", []authorize.Naming{n("members[0] (a)", "a__", "search", "find"), n("members[1] (b)", "b__", "lookup", "find")},
			`members[1] (b): renames["lookup"] = "find" collides with members[0] (a): renames["search"] = "find"`},
		{"renames collide within a member", []authorize.Naming{n("members[0] (a)", "a__", "search", "find", "lookup", "find")},
			`members[0] (a): renames["search"] = "find" collides with members[0] (a): renames["lookup"] = "find"`},
		{"rename in another member's prefix space", []authorize.Naming{n("members[0] (a)", "a__", "search", "b__search"), n("members[1] (b)", "b__")},
			`members[0] (a): renames["search"] = "b__search" falls in members[1] (b)'s names (tool prefix "b__")`},
		{"rename in its own prefix space", []authorize.Naming{n("members[0] (a)", "a__", "search", "a__find")},
			`members[0] (a): renames["search"] = "a__find" falls in members[0] (a)'s names (tool prefix "a__")`},
		{"empty upstream name", []authorize.Naming{n("members[0] (a)", "a__", "", "find")}, `members[0] (a): renames: an upstream name is empty`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := authorize.CheckNaming(c.ms)
			if c.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || err.Error() != c.want || !errors.Is(err, authorize.ErrNaming) {
				t.Fatalf("err = %v\nwant %s", err, c.want)
			}
		})
	}
}

// exposedNames returns every exposed name of ms over the upstream tools
// tools[i] of member i, mapped to "member/upstream".
func exposedNames(t *testing.T, ms []authorize.Naming, tools [][]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i, m := range ms {
		for _, up := range tools[i] {
			ex := wire.ExposedName(m.Prefix, m.Renames, up)
			if prev, dup := out[ex]; dup {
				t.Fatalf("%q exposed twice: %s and %s/%s", ex, prev, m.Source, up)
			}
			out[ex] = m.Source + "/" + up
			j, back, ok := authorize.Resolve(ms, ex)
			if !ok || j != i || back != up {
				t.Fatalf("Resolve(%q) = %d %q %v, want %d %q", ex, j, back, ok, i, up)
			}
		}
	}
	return out
}

// TestAddingAMemberRenamesNothing: with three members, then a fourth (whose
// upstream has the same tool names as the others, and a name that looks
// like another member's), every existing exposed name stays and resolves to
// the same member and upstream tool.
func TestAddingAMemberRenamesNothing(t *testing.T) {
	three := []authorize.Naming{
		{Source: "echo", Prefix: "echo__", Renames: map[string]string{"search": "find"}},
		{Source: "notes", Prefix: "notes__"},
		{Source: "Gmail", Prefix: "Gmail__"},
	}
	tools := [][]string{{"echo", "search", "add"}, {"add", "list", "search"}, {"send", "add", "echo__echo"}}
	if err := authorize.CheckNaming(three); err != nil {
		t.Fatal(err)
	}
	before := exposedNames(t, three, tools)
	four := append(three[:3:3], authorize.Naming{Source: "calendar", Prefix: "calendar__", Renames: map[string]string{"list": "events"}})
	if err := authorize.CheckNaming(four); err != nil {
		t.Fatal(err)
	}
	after := exposedNames(t, four, append(tools, []string{"add", "search", "list", "echo", "notes__add"}))
	for ex, src := range before {
		if after[ex] != src {
			t.Errorf("%q was %s, is %q after adding a member", ex, src, after[ex])
		}
	}
	if len(after) != len(before)+5 {
		t.Errorf("%d names after, want %d", len(after), len(before)+5)
	}
}

// FuzzResolve checks exposed-name resolution over members CheckNaming
// accepts: a name resolves to at most one member, and to exactly the
// upstream name whose exposed name it is (ExposedName inverts it).
func FuzzResolve(f *testing.F) {
	for _, s := range [][4]string{
		{"echo__", "notes__", "search=find", "echo__search"},
		{"echo__", "n.", "", "n.add"},
		{"a__", "b__", "x=y", "y"},
		{"", "", "", "anything"},
		{"echo__", "notes__", "add=notes__add", "notes__add"},
		{"a.", "b-", "q=r;s=t", "b-s"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, p0, p1, renames, exposed string) {
		r0 := map[string]string{}
		for _, kv := range strings.Split(renames, ";") {
			if up, ex, ok := strings.Cut(kv, "="); ok {
				r0[up] = ex
			}
		}
		ms := []authorize.Naming{{Source: "a", Prefix: p0, Renames: r0}, {Source: "b", Prefix: p1}}
		if authorize.CheckNaming(ms) != nil {
			return
		}
		i, up, ok := authorize.Resolve(ms, exposed)
		if !ok {
			if i != -1 || up != "" {
				t.Fatalf("unresolved %q returned %d %q", exposed, i, up)
			}
			for j, m := range ms {
				if strings.HasPrefix(exposed, m.Prefix) && len(exposed) > len(m.Prefix) {
					rest := exposed[len(m.Prefix):]
					if _, renamed := m.Renames[rest]; !renamed {
						t.Fatalf("%q is member %d's name of %q but did not resolve", exposed, j, rest)
					}
				}
			}
			return
		}
		m := ms[i]
		if got := wire.ExposedName(m.Prefix, m.Renames, up); got != exposed {
			t.Fatalf("Resolve(%q) = member %d upstream %q, whose exposed name is %q", exposed, i, up, got)
		}
		for j, o := range ms {
			if j == i {
				continue
			}
			if _, found := wire.UpstreamName(o.Prefix, o.Renames, exposed); found {
				t.Fatalf("%q belongs to members %d and %d", exposed, i, j)
			}
		}
	})
}
