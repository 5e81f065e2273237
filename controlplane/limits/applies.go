// Package limits enforces rate limits and quotas (docs/limits.md): which
// limits apply to a call (the pure Applies) and, for the control plane's
// Authorize, the count of calls per principal × server × limit id in UTC
// windows, global across replicas through chunked counters in etcd.
package limits

import (
	"github.com/mcpgate/mcpgate/api/wire"
	"slices"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// ToolsCall is the JSON-RPC method a limit's tool globs are about.
const ToolsCall = "tools/call"

// AppliesTo reports whether limit l counts a call by principal, a member
// of groups, to server; tool is params.name of a tools/call and "" for any
// other request. A limit without principals and groups applies to every
// principal, one without servers (or with "*") to every server, one
// without tools to every request and one with tools to tools/call of a
// tool matching one of its globs.
func AppliesTo(l *configv1.RateLimit, principal string, groups []string, server, tool string) bool {
	return appliesToServer(l, server) && appliesToPrincipal(l, principal, groups) && appliesToTool(l, tool)
}

func appliesToTool(l *configv1.RateLimit, tool string) bool {
	if len(l.GetTools()) == 0 {
		return true
	}
	if tool == "" {
		return false
	}
	for _, g := range l.GetTools() {
		if Glob(g, tool) {
			return true
		}
	}
	return false
}

func appliesToServer(l *configv1.RateLimit, server string) bool {
	if len(l.GetServers()) == 0 {
		return true
	}
	for _, s := range l.GetServers() {
		if s == "*" || s == server {
			return true
		}
	}
	return false
}

// appliesToPrincipal is AppliesTo's principal part.
func appliesToPrincipal(l *configv1.RateLimit, principal string, groups []string) bool {
	if len(l.GetPrincipals()) == 0 && len(l.GetGroups()) == 0 {
		return true
	}
	return slices.Contains(l.GetPrincipals(), principal) || slices.ContainsFunc(l.GetGroups(), func(g string) bool { return slices.Contains(groups, g) })
}

// Applies reports whether any of limits applies to the call (AppliesTo).
// An ALLOW for such a call must not be reused by a decision cache: it
// would skip the count.
func Applies(limits []*configv1.RateLimit, principal string, groups []string, server, tool string) bool {
	return slices.ContainsFunc(limits, func(l *configv1.RateLimit) bool { return AppliesTo(l, principal, groups, server, tool) })
}

// Groups returns the groups p is a member of: those an admin set and
// those an identity provider asserted (a limit's group default applies to
// both).
func Groups(p *configv1.Principal) []string {
	out := slices.Clone(p.GetGroups())
	for _, a := range p.GetAssertedGroups() {
		out = append(out, a.GetGroup())
	}
	return out
}

// Glob matches name against pattern, where '*' matches any run of
// characters (also none) and '?' any one character; every other byte
// matches itself. It is the policy rules' matcher (api/wire.GlobMatch): one
// glob grammar for both.
func Glob(pattern, name string) bool { return wire.GlobMatch(pattern, name) }
