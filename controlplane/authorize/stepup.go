package authorize

import (
	"path"
	"slices"
	"sort"
	"strings"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

// Reasons of the step-up and tool-pinning outcomes.
const (
	// ReasonInsufficientScope: the access token lacks a gateway scope the
	// tool needs (403 insufficient_scope).
	ReasonInsufficientScope = "access token lacks a scope the tool needs"
	// ReasonUpstreamScope: the person's upstream grant lacks an upstream
	// scope the tool needs (the upstream sign-in CHALLENGE).
	ReasonUpstreamScope = "upstream grant lacks a scope the tool needs"
	// ReasonToolChanged: the tool's definition changed since it was
	// approved and the server blocks changed tools.
	ReasonToolChanged = "tool definition changed; approval pending"
)

// PinState looks tool pins up; *store.Store implements it. A State without
// it pins nothing.
type PinState interface {
	ToolPins(server string) (*store.ToolPins, bool)
}

// ToolMatches reports whether tool matches the tool_scopes glob (path.Match
// syntax; a malformed glob, which validation refuses, matches nothing).
func ToolMatches(glob, tool string) bool {
	ok, err := path.Match(glob, tool)
	return err == nil && ok
}

// ToolNeeds returns the gateway scopes and the upstream scopes a tools/call
// of tool needs on def: the union over every tool_scopes rule matching it,
// sorted, without duplicates.
func ToolNeeds(def *configv1.McpServer, tool string) (scopes, upstream []string) {
	for _, r := range def.GetToolScopes() {
		if ToolMatches(r.GetTool(), tool) {
			scopes = append(scopes, r.GetScopes()...)
			upstream = append(upstream, r.GetUpstreamScopes()...)
		}
	}
	return sortedSet(scopes), sortedSet(upstream)
}

// OfferedScopes returns every gateway scope a client may request for def's
// route: the server's scopes, then those of its tool_scopes, in order,
// without duplicates. A request naming no scope is granted the server's
// scopes only: tool scopes are asked for explicitly (step-up).
func OfferedScopes(def *configv1.McpServer) []string {
	out := slices.Clone(def.GetScopes())
	for _, r := range def.GetToolScopes() {
		for _, sc := range r.GetScopes() {
			if !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
	}
	return out
}

// UpstreamScopesFor returns the upstream scopes a person's grant for def
// needs to serve a gateway token carrying granted: the server's scopes the
// token carries, and the upstream scopes of every tool_scopes rule whose
// gateway scopes the token all carries (so a rule without gateway scopes
// always counts), sorted.
func UpstreamScopesFor(def *configv1.McpServer, granted []string) []string {
	var out []string
	for _, sc := range def.GetScopes() {
		if slices.Contains(granted, sc) {
			out = append(out, sc)
		}
	}
	return Union(out, ToolUpstreamScopesFor(def, granted))
}

// ToolUpstreamScopesFor returns the upstream scopes of the tool_scopes
// rules whose gateway scopes granted all carries, sorted: what a grant
// must hold beyond the server's own scopes (a grant lacking one of these
// is upgraded at the next authorization).
func ToolUpstreamScopesFor(def *configv1.McpServer, granted []string) []string {
	var out []string
	for _, r := range def.GetToolScopes() {
		if len(r.GetUpstreamScopes()) > 0 && subset(r.GetScopes(), granted) {
			out = append(out, r.GetUpstreamScopes()...)
		}
	}
	return sortedSet(out)
}

// Missing returns the members of need that have lacks.
func Missing(need, have []string) []string {
	var out []string
	for _, sc := range need {
		if !slices.Contains(have, sc) {
			out = append(out, sc)
		}
	}
	return out
}

func subset(a, b []string) bool { return len(Missing(a, b)) == 0 }

// Union returns the sorted, duplicate-free union of sets.
func Union(sets ...[]string) []string {
	var out []string
	for _, s := range sets {
		out = append(out, s...)
	}
	return sortedSet(out)
}

func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	sort.Strings(s)
	return slices.Compact(s)
}

// ToolBlocked reports whether calls of tool on srv are refused because its
// definition changed since it was approved and the server blocks changed
// tools.
func ToolBlocked(st State, def *configv1.McpServer, tool string) bool {
	if def.GetOnToolChange() != configv1.ToolChangeMode_TOOL_CHANGE_MODE_BLOCK {
		return false
	}
	ps, ok := st.(PinState)
	if !ok {
		return false
	}
	tp, ok := ps.ToolPins(def.GetName())
	if !ok {
		return false
	}
	pending, ok := tp.Pending[tool]
	return ok && pending != tp.Approved[tool]
}

// toolPinning is the Allow's view of srv's pins, nil when the server does
// not pin its tools.
func toolPinning(st State, def *configv1.McpServer) *authorizev1.ToolPinning {
	mode := def.GetOnToolChange()
	if mode != configv1.ToolChangeMode_TOOL_CHANGE_MODE_WARN && mode != configv1.ToolChangeMode_TOOL_CHANGE_MODE_BLOCK {
		return nil
	}
	tp := &authorizev1.ToolPinning{Block: mode == configv1.ToolChangeMode_TOOL_CHANGE_MODE_BLOCK}
	if ps, ok := st.(PinState); ok {
		if pins, ok := ps.ToolPins(def.GetName()); ok {
			// Shared with the cache, built once per change: never
			// modified (the response is only serialized).
			tp.Pins, tp.Pending = pins.Approved, pins.Pending
		}
	}
	return tp
}

// stepUp checks a tools/call of tool against the server's tool_scopes and
// pins, after the principal was found granted the server. It returns nil
// when the call may proceed, else the answer:
//   - a tool whose changed definition is blocked: DENY (ReasonToolChanged);
//   - a gateway access token (no API key presented: keys are not scoped)
//     lacking a scope the tool needs: DENY with InsufficientScope naming
//     the token's scopes and the needed ones (403 insufficient_scope);
//   - an oauth2 authorization_code server whose principal's grant (of
//     this principal) lacks an upstream scope the tool needs: the upstream
//     sign-in CHALLENGE naming the gateway scopes to request (the token's,
//     or the server's for an API key, plus the tool's), whose
//     authorization upgrades the grant.
func stepUp(st State, srv *store.Server, id identity, tool string, tr *Trace, deny func(string) *authorizev1.AuthorizeResponse,
	challenge func(identity, string, string, string, []string) *authorizev1.AuthorizeResponse) *authorizev1.AuthorizeResponse {
	def := srv.Def
	tracePin(tr, st, def, tool)
	if ToolBlocked(st, def, tool) {
		r := deny(ReasonToolChanged)
		r.RuleId = wire.RuleServerOnToolChange
		return r
	}
	need, upNeed := ToolNeeds(def, tool)
	traceToolScopes(tr, def, tool)
	held := def.GetScopes()
	if id.scoped {
		held = id.scopes
		if len(Missing(need, id.scopes)) > 0 {
			r := deny(ReasonInsufficientScope)
			r.RuleId = wire.RuleServerToolScopes
			r.Deny.InsufficientScope = &authorizev1.InsufficientScope{Scopes: Union(id.scopes, need)}
			return r
		}
	} else if len(need) > 0 {
		// Explain's identity presents no credential: say what a token
		// must carry.
		tr.Add(StepScope, "access token", "must carry "+strings.Join(need, " ")+" (an API key is not scoped)")
	}
	if len(upNeed) > 0 && def.GetAuthType() == configv1.AuthType_AUTH_TYPE_OAUTH2 &&
		def.GetOauth2Flow() == configv1.OAuth2Flow_O_AUTH2_FLOW_AUTHORIZATION_CODE {
		g, ok := st.Grant(id.principal.GetName(), def.GetName())
		if ok && g.Conn.GetPrincipalUid() == id.principal.GetUid() {
			if missing := Missing(upNeed, g.Conn.GetScopes()); len(missing) > 0 {
				tr.Add(StepScope, "upstream grant", "lacks "+strings.Join(missing, " ")+": the person must sign in upstream again")
				return challenge(id, ReasonUpstreamScope, "", "", Union(held, need))
			}
			tr.Add(StepScope, "upstream grant", "holds "+strings.Join(upNeed, " "))
		}
	}
	return nil
}

// traceToolScopes records every tool_scopes rule of def matching tool,
// with the gateway and upstream scopes it asks for.
func traceToolScopes(tr *Trace, def *configv1.McpServer, tool string) {
	if tr == nil {
		return
	}
	for _, r := range def.GetToolScopes() {
		if !ToolMatches(r.GetTool(), tool) {
			continue
		}
		var parts []string
		if sc := r.GetScopes(); len(sc) > 0 {
			parts = append(parts, "scopes "+strings.Join(sc, " "))
		}
		if sc := r.GetUpstreamScopes(); len(sc) > 0 {
			parts = append(parts, "upstream scopes "+strings.Join(sc, " "))
		}
		if len(parts) == 0 {
			parts = append(parts, "no scope")
		}
		tr.Add(StepScope, "tool_scopes "+r.GetTool(), "needs "+strings.Join(parts, ", "))
	}
}

// tracePin records the pin of tool on def when the server pins its
// tools (on_tool_change warn or block).
func tracePin(tr *Trace, st State, def *configv1.McpServer, tool string) {
	if tr == nil {
		return
	}
	var mode string
	switch def.GetOnToolChange() {
	case configv1.ToolChangeMode_TOOL_CHANGE_MODE_BLOCK:
		mode = "block"
	case configv1.ToolChangeMode_TOOL_CHANGE_MODE_WARN:
		mode = "warn"
	default:
		return
	}
	var tp *store.ToolPins
	if ps, ok := st.(PinState); ok {
		tp, _ = ps.ToolPins(def.GetName())
	}
	var approved, pending string
	var pinned, changed bool
	if tp != nil {
		approved, pinned = tp.Approved[tool]
		pending, changed = tp.Pending[tool]
		changed = changed && pending != approved
	}
	switch {
	case !pinned:
		tr.Add(StepPin, tool, "not seen yet: pinned when the server first lists it (on_tool_change "+mode+")")
	case changed && mode == "block":
		tr.Add(StepPin, tool, "definition changed since approval: refused until approved (on_tool_change block)")
	case changed:
		tr.Add(StepPin, tool, "definition changed since approval: allowed with an audit event (on_tool_change warn)")
	default:
		tr.Add(StepPin, tool, "definition approved (on_tool_change "+mode+")")
	}
}
