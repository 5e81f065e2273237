package authorize

import (
	"slices"
	"strings"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// Reasons of a DENY by policy.
const (
	// ReasonPolicyDenied: a DENY rule naming the principal (or one of its
	// groups) matches the tool, resource or prompt.
	ReasonPolicyDenied = "denied by policy"
	// ReasonPolicyRestricted: ALLOW rules restrict the tool, resource or
	// prompt to other principals and groups.
	ReasonPolicyRestricted = "not allowed by policy"
)

// PolicyState reads the ordered policy list; *store.Store implements it.
type PolicyState interface {
	Policies() *configv1.PolicySet
	// PoliciesFor returns, in order, the rules whose servers globs match
	// server (the store memoizes it per snapshot).
	PoliciesFor(server string) []*configv1.Policy
	// CompiledVisibility returns compile(), which depends only on the
	// snapshot's rules for server, principal and groups; the store
	// memoizes it per snapshot. The result must not be modified.
	CompiledVisibility(server, principal string, groups []string, compile func() []*authorizev1.VisibilityRule) []*authorizev1.VisibilityRule
}

// StepKind says what kind of check a trace step records.
type StepKind string

// Step kinds. Checks added later (scopes, limits, pins) append their own.
const (
	StepGrant       StepKind = "grant"
	StepRule        StepKind = "rule"
	StepServerTools StepKind = "server_tools"
	StepAuth        StepKind = "auth"
	StepScope       StepKind = "scope"
	StepLimit       StepKind = "limit"
	StepPin         StepKind = "pin"
)

// Step is one check that contributed to a decision.
type Step struct {
	Kind StepKind
	// Subject is what the step is about: a server, a rule id, an auth mode.
	Subject string
	Detail  string
}

// Trace collects the steps of one decision, for explain. A nil *Trace
// collects nothing (the hot path): Add is safe on it.
type Trace struct {
	Steps []Step
}

// Add appends a step to t, when t is not nil.
func (t *Trace) Add(kind StepKind, subject, detail string) {
	if t != nil {
		t.Steps = append(t.Steps, Step{Kind: kind, Subject: subject, Detail: detail})
	}
}

// EffectiveGroups returns the groups p is a member of that exist: its
// admin-set groups, then the IdP-asserted ones, without duplicates (the
// memberships Granted honours).
func EffectiveGroups(st GroupState, p *configv1.Principal) []string {
	var out []string
	add := func(name string) {
		if name == "" || slices.Contains(out, name) {
			return
		}
		if _, ok := st.Group(name); ok {
			out = append(out, name)
		}
	}
	for _, g := range p.GetGroups() {
		add(g)
	}
	for _, a := range p.GetAssertedGroups() {
		add(a.GetGroup())
	}
	return out
}

// ruleApplies reports whether rule r names the principal called name or
// one of groups.
func ruleApplies(r *configv1.Policy, name string, groups []string) bool {
	if wire.GlobAny(r.GetPrincipals(), name) {
		return true
	}
	for _, g := range groups {
		if wire.GlobAny(r.GetGroups(), g) {
			return true
		}
	}
	return false
}

// kindGlobs are r's globs of kind.
func kindGlobs(r *configv1.Policy, kind authorizev1.PolicyKind) []string {
	switch kind {
	case authorizev1.PolicyKind_POLICY_KIND_TOOL:
		return r.GetTools()
	case authorizev1.PolicyKind_POLICY_KIND_RESOURCE:
		return r.GetResources()
	case authorizev1.PolicyKind_POLICY_KIND_PROMPT:
		return r.GetPrompts()
	}
	return nil
}

var policyKinds = [...]authorizev1.PolicyKind{
	authorizev1.PolicyKind_POLICY_KIND_TOOL,
	authorizev1.PolicyKind_POLICY_KIND_RESOURCE,
	authorizev1.PolicyKind_POLICY_KIND_PROMPT,
}

// CompileVisibility compiles rules (those that target the route's server,
// PolicyState.PoliciesFor) for the principal called name with the
// effective groups: a DENY rule naming
// the principal becomes DENY entries, an ALLOW rule naming it ALLOW
// entries, an ALLOW rule naming others RESTRICT entries; DENY rules naming
// others and rules of other servers drop out. The result, with the
// server's tool lists, is what api/wire.Visible decides with.
func CompileVisibility(rules []*configv1.Policy, name string, groups []string) []*authorizev1.VisibilityRule {
	if len(rules) == 0 {
		return nil
	}
	n := 0
	for _, r := range rules {
		n += len(r.GetTools()) + len(r.GetResources()) + len(r.GetPrompts())
	}
	// One allocation for every entry: they are created in place, never
	// copied.
	slab := make([]authorizev1.VisibilityRule, n)
	out := make([]*authorizev1.VisibilityRule, 0, n)
	for _, r := range rules {
		applies := ruleApplies(r, name, groups)
		var effect authorizev1.VisibilityEffect
		switch r.GetEffect() {
		case configv1.PolicyEffect_POLICY_EFFECT_DENY:
			if !applies {
				continue
			}
			effect = authorizev1.VisibilityEffect_VISIBILITY_EFFECT_DENY
		case configv1.PolicyEffect_POLICY_EFFECT_ALLOW:
			effect = authorizev1.VisibilityEffect_VISIBILITY_EFFECT_RESTRICT
			if applies {
				effect = authorizev1.VisibilityEffect_VISIBILITY_EFFECT_ALLOW
			}
		default:
			// Validation refuses it; a stored one fails closed: it hides
			// what it names from everyone.
			effect = authorizev1.VisibilityEffect_VISIBILITY_EFFECT_DENY
		}
		for _, k := range policyKinds {
			for _, g := range kindGlobs(r, k) {
				v := &slab[len(out)]
				v.Kind, v.Glob, v.Effect, v.RuleId = k, g, effect, r.GetId()
				out = append(out, v)
			}
		}
	}
	return out
}

// callTarget is the kind and name a call method acts on: tools/call's
// tool, resources/read's URI, prompts/get's prompt.
func callTarget(req *authorizev1.AuthorizeRequest) (authorizev1.PolicyKind, string, bool) {
	switch req.GetJsonrpcMethod() {
	case "tools/call":
		return authorizev1.PolicyKind_POLICY_KIND_TOOL, req.GetToolName(), true
	case "resources/read":
		return authorizev1.PolicyKind_POLICY_KIND_RESOURCE, req.GetResourceUri(), true
	case "prompts/get":
		return authorizev1.PolicyKind_POLICY_KIND_PROMPT, req.GetPromptName(), true
	}
	return 0, "", false
}

// kindNoun names kind in trace details.
func kindNoun(k authorizev1.PolicyKind) string {
	switch k {
	case authorizev1.PolicyKind_POLICY_KIND_TOOL:
		return "tool"
	case authorizev1.PolicyKind_POLICY_KIND_RESOURCE:
		return "resource"
	default:
		return "prompt"
	}
}

// denyReason is the fixed reason of a DENY by wire.Visible's rule among
// vis.
func denyReason(vis []*authorizev1.VisibilityRule, rule string) string {
	if rule == wire.RuleServerAllowedTools || rule == wire.RuleServerDisallowedTools {
		return ReasonToolForbidden
	}
	for _, v := range vis {
		if v.GetRuleId() == rule && v.GetEffect() == authorizev1.VisibilityEffect_VISIBILITY_EFFECT_RESTRICT {
			return ReasonPolicyRestricted
		}
	}
	return ReasonPolicyDenied
}

// traceRules records, for explain, the server's tool lists and every rule
// that targets the call's name on server, with whether it names the
// principal.
func traceRules(tr *Trace, rules []*configv1.Policy, def *configv1.McpServer, who string, groups []string, kind authorizev1.PolicyKind, name string) {
	if tr == nil {
		return
	}
	if kind == authorizev1.PolicyKind_POLICY_KIND_TOOL {
		if al := def.GetAllowedTools(); len(al) > 0 {
			if slices.Contains(al, name) {
				tr.Add(StepServerTools, "allowed_tools", "lists "+name)
			} else {
				tr.Add(StepServerTools, "allowed_tools", "does not list "+name)
			}
		}
		if slices.Contains(def.GetDisallowedTools(), name) {
			tr.Add(StepServerTools, "disallowed_tools", "lists "+name)
		}
	}
	matched := false
	for _, r := range rules {
		g := ""
		for _, x := range kindGlobs(r, kind) {
			if wire.GlobMatch(x, name) {
				g = x
				break
			}
		}
		if g == "" {
			continue
		}
		matched = true
		effect := strings.ToLower(strings.TrimPrefix(r.GetEffect().String(), "POLICY_EFFECT_"))
		names := "does not name " + who
		if ruleApplies(r, who, groups) {
			names = "names " + who
		}
		tr.Add(StepRule, r.GetId(), effect+" "+kindNoun(kind)+" "+g+" ("+names+")")
	}
	if !matched {
		tr.Add(StepRule, "-", "no rule targets "+kindNoun(kind)+" "+name)
	}
}

// traceGrant records where p's grant of server comes from.
func traceGrant(tr *Trace, st GroupState, p *configv1.Principal, server string) {
	if tr == nil {
		return
	}
	found := false
	for _, e := range EffectiveServers(st, p) {
		if e.GetServer() != server && e.GetServer() != "*" {
			continue
		}
		for _, src := range e.GetSources() {
			found = true
			detail := "own servers"
			switch {
			case src.GetGroup() != "" && src.GetIdentityProvider() != "":
				detail = "group " + src.GetGroup() + " (asserted by " + src.GetIdentityProvider() + ")"
			case src.GetGroup() != "":
				detail = "group " + src.GetGroup()
			}
			if e.GetServer() == "*" {
				detail += ", every server"
			}
			tr.Add(StepGrant, server, detail)
		}
	}
	if !found {
		tr.Add(StepGrant, server, "not granted")
	}
}
