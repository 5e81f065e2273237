package wire

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Policy globs (docs/policy.md). The grammar is deliberately tiny, and
// matching is linear-ish with no regular expressions from config:
//
//	glob  = 1*char
//	'*'   matches any run of characters, including none and '/'
//	'?'   matches exactly one character (one UTF-8 encoded code point)
//	other characters match themselves, case-sensitively
//
// '[', ']' and '\' are reserved (a future class or escape syntax) and make
// a glob invalid, as do control characters, invalid UTF-8, an empty glob
// and one longer than MaxGlobLen bytes.

// MaxGlobLen bounds one glob.
const MaxGlobLen = 256

// Errors of ValidGlob (fixed texts).
var (
	ErrGlobEmpty    = errors.New("empty glob")
	ErrGlobTooLong  = errors.New("glob longer than 256 bytes")
	ErrGlobReserved = errors.New(`glob uses a reserved character ([, ] or \)`)
	ErrGlobInvalid  = errors.New("glob holds invalid UTF-8 or control characters")
)

// ValidGlob reports why g is not a policy glob, or nil.
func ValidGlob(g string) error {
	switch {
	case g == "":
		return ErrGlobEmpty
	case len(g) > MaxGlobLen:
		return ErrGlobTooLong
	case !utf8.ValidString(g):
		return ErrGlobInvalid
	case strings.ContainsAny(g, `[]\`):
		return ErrGlobReserved
	}
	for _, r := range g {
		if r < 0x20 || r == 0x7f {
			return ErrGlobInvalid
		}
	}
	return nil
}

// GlobMatch reports whether s matches the glob g (see ValidGlob for the
// grammar; an invalid glob is matched literally except for '*' and '?').
// It runs in O(len(g)·len(s)) at worst: the classic single-backtrack
// wildcard algorithm, no recursion.
func GlobMatch(g, s string) bool {
	if !hasWildcard(g) {
		return g == s
	}
	gi, si := 0, 0
	starG, starS := -1, 0
	for si < len(s) {
		if gi < len(g) {
			switch c := g[gi]; c {
			case '*':
				starG, starS = gi, si
				gi++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(s[si:])
				gi++
				si += n
				continue
			default:
				if c == s[si] {
					gi++
					si++
					continue
				}
			}
		}
		if starG < 0 {
			return false
		}
		// Let the last '*' swallow one more character.
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		gi, si = starG+1, starS
	}
	for gi < len(g) && g[gi] == '*' {
		gi++
	}
	return gi == len(g)
}

// hasWildcard reports whether g holds '*' or '?' (a byte loop: cheaper
// than strings.ContainsAny on the decision's hot path).
func hasWildcard(g string) bool {
	for i := 0; i < len(g); i++ {
		if g[i] == '*' || g[i] == '?' {
			return true
		}
	}
	return false
}

// GlobAny reports whether s matches one of gs.
func GlobAny(gs []string, s string) bool {
	for _, g := range gs {
		if GlobMatch(g, s) {
			return true
		}
	}
	return false
}

// Rule ids a DENY names for the server's own settings.
const (
	RuleServerAllowedTools    = "server:allowed_tools"
	RuleServerDisallowedTools = "server:disallowed_tools"
	// RuleServerPassthrough: a passthrough server's call came without a
	// usable X-MCP-<Server>-Authorization.
	RuleServerPassthrough = "server:passthrough"
	// RuleServerOnToolChange: the tool's definition changed since it was
	// approved and the server blocks changed tools.
	RuleServerOnToolChange = "server:on_tool_change"
	// RuleServerToolScopes: the access token lacks a scope the server's
	// tool_scopes require for the tool (403 insufficient_scope).
	RuleServerToolScopes = "server:tool_scopes"
)

// Kinds and effects of visibility entries, numbered as
// mcpgate.authorize.v1.PolicyKind and VisibilityEffect (api/wire links no
// generated code; a test in controlplane/authorize pins the numbers).
const (
	KindTool     = 1
	KindResource = 2
	KindPrompt   = 3

	EffectAllow    = 1
	EffectDeny     = 2
	EffectRestrict = 3
)

// VisibilityRule is one compiled policy entry
// (*authorizev1.VisibilityRule).
type VisibilityRule[K, E ~int32] interface {
	GetKind() K
	GetGlob() string
	GetEffect() E
	GetRuleId() string
}

// Visible is the one visibility rule of the gateway: whether the principal
// an ALLOW was issued for may see (in tools/list, resources/list,
// resources/templates/list, prompts/list) and call (tools/call,
// resources/read, prompts/get) the tool, resource or prompt name of kind,
// given the ALLOW's server tool lists (allowed, disallowed) and compiled
// policy entries (rules). The control plane's decision uses it for calls
// and data planes for list filtering, so a principal sees exactly what it
// may call. When it is not visible, rule names what hid it (a policy id,
// or RuleServerAllowedTools / RuleServerDisallowedTools). Precedence:
//
//  1. tools only: the server's allowed_tools (when set) must list the name
//     and disallowed_tools must not (they apply to everyone);
//  2. a DENY entry matching the name hides it (deny wins), as does an
//     entry of an effect this version does not know (fail closed);
//  3. a name matched by any ALLOW or RESTRICT entry is restricted: visible
//     only when an ALLOW entry (an ALLOW rule naming this principal or one
//     of its groups) matches it; otherwise the first RESTRICT entry names
//     the rule;
//  4. otherwise visible (the server grant decides, as without policies).
func Visible[K, E ~int32, R VisibilityRule[K, E]](allowed, disallowed []string, rules []R, kind K, name string) (ok bool, rule string) {
	if kind == KindTool {
		if ok, rule := serverToolLists(allowed, disallowed, name); !ok {
			return false, rule
		}
	}
	restrictedBy, granted := "", false
	for _, r := range rules {
		if r.GetKind() != kind {
			continue
		}
		switch r.GetEffect() {
		case EffectAllow:
			if !granted && GlobMatch(r.GetGlob(), name) {
				granted = true
			}
		case EffectRestrict:
			if restrictedBy == "" && GlobMatch(r.GetGlob(), name) {
				restrictedBy = r.GetRuleId()
			}
		default: // EffectDeny, and any effect this version does not know
			if GlobMatch(r.GetGlob(), name) {
				return false, r.GetRuleId()
			}
		}
	}
	if restrictedBy != "" && !granted {
		return false, restrictedBy
	}
	return true, ""
}

// serverToolLists applies a server's allowed_tools and disallowed_tools
// to tool.
func serverToolLists(allowed, disallowed []string, tool string) (bool, string) {
	if len(allowed) > 0 && !containsString(allowed, tool) {
		return false, RuleServerAllowedTools
	}
	if containsString(disallowed, tool) {
		return false, RuleServerDisallowedTools
	}
	return true, ""
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
