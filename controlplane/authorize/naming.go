package authorize

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/mcpgate/mcpgate/api/wire"
)

// Naming is how one member of an aggregate (the root /mcp or a virtual
// server) exposes its upstream tools and prompts: renames[upstream] when
// present, else Prefix + upstream (wire.ExposedName). Source names the
// member in error messages (e.g. `members[1] (notes)`).
type Naming struct {
	Source  string
	Prefix  string
	Renames map[string]string
}

// ErrNaming: the members' names could collide. The error's text is fixed
// here, names both sources and contains only configured names, never a
// secret: the admin API sends it as is.
var ErrNaming = errors.New("naming conflict")

// NamingError is a naming conflict; errors.Is(err, ErrNaming) holds.
type NamingError struct{ Msg string }

func (e *NamingError) Error() string        { return e.Msg }
func (e *NamingError) Is(target error) bool { return target == ErrNaming }

func namingErr(format string, args ...any) error {
	return &NamingError{Msg: fmt.Sprintf(format, args...)}
}

// MaxToolPrefixLen bounds a member's tool prefix.
const MaxToolPrefixLen = 64

// ValidToolPrefix reports whether p can start exposed names: at most
// MaxToolPrefixLen characters of the tool-name alphabet (possibly none).
func ValidToolPrefix(p string) bool {
	return p == "" || (len(p) <= MaxToolPrefixLen && wire.ValidToolName(p))
}

// CheckNaming is the one rule that keeps an aggregate's exposed names
// unambiguous whatever tools the upstreams have, so that an exposed name
// resolves to at most one member and adding a member never renames or
// re-routes another member's tool:
//   - every prefix is a ValidToolPrefix and the prefixes are prefix-free
//     (no member's prefix starts another's, equal ones included);
//   - every rename target is a valid tool name (wire.ValidToolName), no two
//     rename targets are equal, and no rename target starts with any
//     member's prefix (its own included: it could equal one of that
//     member's prefixed names).
//
// The first violation found is returned as a *NamingError naming both
// sources; members are examined in order, renames in sorted order.
func CheckNaming(ms []Naming) error {
	for i, m := range ms {
		if !ValidToolPrefix(m.Prefix) {
			return namingErr("%s: tool prefix %q must be at most %d characters of A-Z, a-z, 0-9, '_', '-' and '.'", m.Source, m.Prefix, MaxToolPrefixLen)
		}
		for j := range i {
			o := ms[j]
			if strings.HasPrefix(m.Prefix, o.Prefix) || strings.HasPrefix(o.Prefix, m.Prefix) {
				return namingErr("%s: tool prefix %q and %s: tool prefix %q are not prefix-free (one starts with the other, so a name could belong to both)", o.Source, o.Prefix, m.Source, m.Prefix)
			}
		}
	}
	type target struct {
		source, upstream string
	}
	seen := map[string]target{}
	for _, m := range ms {
		ups := make([]string, 0, len(m.Renames))
		for up := range m.Renames {
			ups = append(ups, up)
		}
		sort.Strings(ups)
		for _, up := range ups {
			ex := m.Renames[up]
			if up == "" {
				return namingErr("%s: renames: an upstream name is empty", m.Source)
			}
			if !wire.ValidToolName(ex) {
				return namingErr("%s: renames[%q] = %q: %s", m.Source, up, ex, wire.ToolNameRule)
			}
			if t, ok := seen[ex]; ok {
				return namingErr("%s: renames[%q] = %q collides with %s: renames[%q] = %q", m.Source, up, ex, t.source, t.upstream, ex)
			}
			seen[ex] = target{m.Source, up}
			for _, o := range ms {
				if strings.HasPrefix(ex, o.Prefix) {
					return namingErr("%s: renames[%q] = %q falls in %s's names (tool prefix %q)", m.Source, up, ex, o.Source, o.Prefix)
				}
			}
		}
	}
	return nil
}

// Resolve returns the member (index into ms) whose exposed name exposed is,
// and the upstream name it stands for. A name that no member has, or (only
// with members CheckNaming refuses) more than one, resolves to nothing.
func Resolve(ms []Naming, exposed string) (member int, upstream string, ok bool) {
	member = -1
	for i, m := range ms {
		up, found := wire.UpstreamName(m.Prefix, m.Renames, exposed)
		if !found {
			continue
		}
		if member >= 0 {
			return -1, "", false
		}
		member, upstream = i, up
	}
	if member < 0 {
		return -1, "", false
	}
	return member, upstream, true
}
