package dataplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/dataplane/bridge"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// The MCP aggregator: on an aggregate route (/mcp, the root aggregate of
// every server the principal is granted, and /<virtual>/mcp) the gateway is
// itself the MCP server (streamable HTTP, 2025-11-25 sessions; 2026-07-28
// sessionless clients are served by the same code, see agg2026.go). The control plane
// says a route is an aggregate by answering ALLOW with an Aggregate: the
// members the principal may use, each with its own decision exactly as its
// per-server route would decide the request. The aggregator merges
// initialize and the lists, routes tools/call, prompts/get, resources/read
// and completion/complete to the owning member with names translated,
// relays the members' notifications and requests to the client and the
// client's answers back, and answers ping itself.
//
// Names: a member's tool or prompt n is exposed as wire.ExposedName(prefix,
// renames, n); the control plane resolves exposed tool and prompt names
// (tools/call, prompts/get come back with the one owning member and its
// upstream name). Resource URIs are rewritten with wire.ExposedURI and
// un-rewritten here, after which the request is authorized for that member
// alone (AuthorizeRequest.member).
//
// A member needing the person's own upstream connection (CHALLENGE with a
// connect URL) cannot be reached at all, so it is omitted from lists
// without an error; a tools/call of one of its tools (named with the
// member's prefix) returns the URL-mode elicitation error -32042 to clients
// that declared elicitation.url (for a 2026-07-28 client: input_required
// with the URL elicitation, agg2026.go), and a tool error result carrying
// the same link otherwise. Once the person connects, the member is opened on the
// next call, in the same client session.
//
// Not done here: a member's GET stream is joined only for members whose
// session is known when the client opens its GET stream; resource URIs
// inside tool results are not rewritten; events carry no ids (no
// Last-Event-ID resumption on the aggregate).

const (
	// aggParallel bounds the members contacted at once for one request.
	aggParallel = 8
	// aggVersion is the protocol revision the aggregator speaks by
	// default.
	aggVersion = "2025-11-25"
	// rpcCodeURLElicitation is URLElicitationRequiredError (2025-11-25).
	rpcCodeURLElicitation = -32042
)

// aggVersions are the protocol revisions the aggregator accepts from a
// client at initialize; others get aggVersion.
var aggVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26"}

// aggMsg is one JSON-RPC message, decoded exactly (json v2: case-sensitive,
// no duplicate names) from the body the gateway parsed and authorized.
type aggMsg struct {
	JSONRPC string         `json:"jsonrpc"`
	ID      jsontext.Value `json:"id,omitzero"`
	Method  string         `json:"method,omitzero"`
	Params  jsontext.Value `json:"params,omitzero"`
	Result  jsontext.Value `json:"result,omitzero"`
	Error   jsontext.Value `json:"error,omitzero"`
}

// aggCall is one request on an aggregate route.
type aggCall struct {
	route     string
	principal string
	res       *authorizev1.AuthorizeResponse
	base      *authorizev1.AuthorizeRequest
	handle    string // the client's session handle, "" before initialize
	state     aggState
	msg       aggMsg
	log       *slog.Logger
	// modern: the client speaks 2026-07-28 (no session; meta is what its
	// request's _meta declared). parsed is the request as authorized.
	modern bool
	meta   bridge.ClientMeta
	parsed rpcBody
}

// mapKey is the key prefix of this session's reopened members.
func (ac *aggCall) mapKey(member string) string {
	h := ac.handle
	switch {
	case ac.modern:
		// A 2026-07-28 client has no session: its members' sessions are
		// the principal's on this route, per declared client.
		h = "modern\x00" + ac.principal + "\x00" + ac.route + "\x00" + ac.meta.Digest()
	case h == "":
		h = "anon\x00" + ac.principal + "\x00" + ac.route
	}
	return sessionMapKey(h, member)
}

// usable returns the members whose own decision is ALLOW.
func usable(res *authorizev1.AuthorizeResponse) []*authorizev1.AggregateMember {
	var out []*authorizev1.AggregateMember
	for _, m := range res.GetAggregate().GetMembers() {
		if m.GetDecision().GetDecision() == authorizev1.Decision_DECISION_ALLOW && m.GetDecision().GetAllow().GetUpstreamUrl() != "" {
			out = append(out, m)
		}
	}
	return out
}

func findMember(res *authorizev1.AuthorizeResponse, server string) *authorizev1.AggregateMember {
	for _, m := range res.GetAggregate().GetMembers() {
		if m.GetServer() == server {
			return m
		}
	}
	return nil
}

// serveAggregate answers a request the control plane allowed on an
// aggregate route.
func (p *Proxy) serveAggregate(w http.ResponseWriter, r *http.Request, log *slog.Logger, route string, res *authorizev1.AuthorizeResponse, base *authorizev1.AuthorizeRequest, parsed rpcBody, cls classification) {
	ctx := r.Context()
	ac := &aggCall{route: route, principal: res.GetPrincipal(), res: res, base: base, log: log, parsed: parsed}
	if parsed.Batch {
		writeFixed(w, http.StatusBadRequest, rpcInvalidRequest)
		return
	}
	if r.Method == http.MethodPost {
		if err := json.Unmarshal(parsed.Canonical, &ac.msg); err != nil {
			writeFixed(w, http.StatusBadRequest, withID(rpcInvalidRequest, parsed.ID))
			return
		}
	}
	if cls.Modern {
		if !p.aggModern(w, ac) {
			return
		}
	} else if h := r.Header.Get(headerSessionID); h != "" && ac.msg.Method != "initialize" {
		b, err := p.openTagged(ctx, aggTagSession, route, ac.principal, h)
		if err == nil {
			ac.state, err = decodeAggState(b)
		}
		switch {
		case errors.Is(err, errBadHandle), errors.Is(err, errUnknownKey):
			log.InfoContext(ctx, "unknown session handle")
			writeFixed(w, http.StatusNotFound, withID(rpcUnknownSession, parsed.ID))
			return
		case err != nil:
			log.WarnContext(ctx, "session keys unavailable", slog.String("code", codeOf(err)))
			writeResponse(w, unavailable().withID(parsed.ID))
			return
		}
		ac.handle = h
	} else if v := r.Header.Get(headerProtocolVersion); ac.msg.Method != "initialize" && slices.Contains(aggVersions, v) {
		// Without a session: the version the client says it speaks.
		ac.state.Version = v
	}
	if mayStream(r.Method, parsed.Calls) {
		release, ok := p.streams.acquire(ac.principal)
		if !ok {
			writeResponse(w, tooManyStreams(parsed.ID))
			return
		}
		defer release()
	}
	switch r.Method {
	case http.MethodGet:
		p.aggStream(w, r, ac)
		return
	case http.MethodDelete:
		p.aggEnd(ctx, ac)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	m := ac.msg
	switch {
	case m.Method == "" && m.ID != nil:
		p.aggClientResponse(w, r, ac)
		return
	case m.Method == "":
		writeFixed(w, http.StatusBadRequest, rpcInvalidRequest)
		return
	case m.ID == nil:
		p.aggNotification(ctx, ac)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	switch m.Method {
	case "server/discover":
		p.aggDiscover(w, r, ac)
	case "initialize":
		p.aggInitialize(w, r, ac)
	case "ping":
		writeResult(w, m.ID, jsontext.Value(`{}`))
	case "tools/list", "prompts/list", "resources/list", "resources/templates/list":
		p.aggList(w, r, ac)
	case "tools/call", "prompts/get":
		p.aggNamed(w, r, ac)
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		p.aggResource(w, r, ac)
	case "completion/complete":
		p.aggComplete(w, r, ac)
	case "logging/setLevel":
		p.aggBroadcast(ctx, ac, true)
		writeResult(w, m.ID, jsontext.Value(`{}`))
	default:
		if ac.modern {
			// 2026-07-28 (SEP-2575): MethodNotFound with HTTP 404.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write(rpcErrorMsg(m.ID, -32601, "Method not found"))
			return
		}
		writeRPCError(w, m.ID, -32601, "Method not found")
	}
}

// target is how member m is reached in this session.
func (ac *aggCall) target(m *authorizev1.AggregateMember, version string) memberTarget {
	a := m.GetDecision().GetAllow()
	if version == "" {
		version = ac.state.Version
	}
	return memberTarget{server: m.GetServer(), url: a.GetUpstreamUrl(), headers: a.GetUpstreamHeaders(), version: version}
}

// known is member's session id and version, if this session has one.
func (p *Proxy) known(ac *aggCall, server string) (sid, version string, ok bool) {
	if v, ok := p.reopened.get(ac.mapKey(server)); ok {
		sid, version, _ = strings.Cut(v, "\x00")
		return sid, version, true
	}
	if sid, ok := ac.state.Members[server]; ok {
		return sid, ac.state.Versions[server], true
	}
	return "", "", false
}

// memberInit is what a member answered to initialize.
type memberInit struct {
	ProtocolVersion string                    `json:"protocolVersion"`
	Capabilities    map[string]jsontext.Value `json:"capabilities"`
	Instructions    string                    `json:"instructions,omitzero"`
}

// open initializes member m for the client session: initialize, then
// notifications/initialized.
func (p *Proxy) open(ctx context.Context, ac *aggCall, m *authorizev1.AggregateMember) (sid, version string, init memberInit, err error) {
	caps := ac.state.Caps
	if ac.modern {
		// A 2026-07-28 client takes no server-to-client requests: the
		// member is told it may not make them.
		caps = ac.memberCaps()
	}
	if len(caps) == 0 {
		caps = jsontext.Value(`{}`)
	}
	v := ac.state.Version
	if v == "" {
		v = aggVersion
	}
	params, _ := json.Marshal(map[string]any{
		"protocolVersion": v,
		"capabilities":    caps,
		"clientInfo":      map[string]string{"name": "mcpgate", "version": "1"},
	})
	id := jsontext.Value(`"mcpgate-initialize"`)
	body := rpcRequest(id, "initialize", params)
	t := ac.target(m, v)
	reply, sid, err := p.members.exchange(ctx, t, "", body, id, func(jsontext.Value) {})
	if err != nil {
		return "", "", init, err
	}
	var rm aggMsg
	if json.Unmarshal(reply, &rm) != nil || rm.Result == nil || json.Unmarshal(rm.Result, &init) != nil {
		return "", "", init, errMemberFailed
	}
	version = init.ProtocolVersion
	if version == "" {
		version = v
	}
	t.version = version
	if _, _, err := p.members.exchange(ctx, t, sid, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), nil, nil); err != nil {
		return "", "", init, err
	}
	return sid, version, init, nil
}

// reopen opens m and keeps its session id in the per-process map.
// Concurrent reopens of one member of one client session share one
// member session.
func (p *Proxy) reopen(ctx context.Context, ac *aggCall, m *authorizev1.AggregateMember) (string, string, error) {
	key := ac.mapKey(m.GetServer())
	v, err, _ := p.reopening.Do(key, func() (any, error) {
		sid, version, _, err := p.open(ctx, ac, m)
		if err != nil {
			return "", err
		}
		v := sid + "\x00" + version
		p.reopened.put(key, v)
		return v, nil
	})
	if err != nil {
		return "", "", err
	}
	sid, version, _ := strings.Cut(v.(string), "\x00")
	return sid, version, nil
}

// send sends msg (a request when id != nil) to member m in this session,
// opening the member first when the session has none for it and reopening
// it once when its session is gone.
func (p *Proxy) send(ctx context.Context, ac *aggCall, m *authorizev1.AggregateMember, msg []byte, id jsontext.Value, sink func(jsontext.Value)) (jsontext.Value, error) {
	reply, done, err := p.sendModern(ctx, ac, m, msg, id, sink)
	if done {
		return reply, err
	}
	if ac.modern {
		if msg, err = bridge.Downgrade(msg); err != nil {
			return nil, errMemberFailed
		}
	}
	sid, version, ok := p.known(ac, m.GetServer())
	if !ok {
		if sid, version, err = p.reopen(ctx, ac, m); err != nil {
			return p.modernOnlyRetry(ctx, ac, m, msg, id, sink, err)
		}
	}
	reply, _, err = p.members.exchange(ctx, ac.target(m, version), sid, msg, id, sink)
	if errors.Is(err, errMemberModernOnly) {
		return p.modernOnlyRetry(ctx, ac, m, msg, id, sink, err)
	}
	if errors.Is(err, errMemberGone) {
		if nsid, nversion, ok := p.known(ac, m.GetServer()); ok && nsid != sid {
			sid, version = nsid, nversion // another request reopened it meanwhile
		} else {
			ac.log.InfoContext(ctx, "member session gone; reopening", slog.String("member", m.GetServer()))
			if sid, version, err = p.reopen(ctx, ac, m); err != nil {
				return nil, err
			}
		}
		reply, _, err = p.members.exchange(ctx, ac.target(m, version), sid, msg, id, sink)
	}
	return reply, err
}

func (p *Proxy) aggInitialize(w http.ResponseWriter, r *http.Request, ac *aggCall) {
	ctx := r.Context()
	var params struct {
		ProtocolVersion string         `json:"protocolVersion"`
		Capabilities    jsontext.Value `json:"capabilities"`
	}
	if ac.msg.Params != nil {
		if err := json.Unmarshal(ac.msg.Params, &params); err != nil {
			writeRPCError(w, ac.msg.ID, -32602, "Invalid params")
			return
		}
	}
	ac.state = aggState{Version: aggVersion}
	if slices.Contains(aggVersions, params.ProtocolVersion) {
		ac.state.Version = params.ProtocolVersion
	}
	if len(params.Capabilities) > 0 && len(params.Capabilities) <= maxClientCaps && params.Capabilities.Kind() == '{' {
		ac.state.Caps = params.Capabilities.Clone()
		_ = ac.state.Caps.Compact()
	}
	members := usable(ac.res)
	inits := make([]*memberInit, len(members))
	var mu sync.Mutex
	ac.state.Members = map[string]string{}
	var g errgroup.Group
	g.SetLimit(aggParallel)
	for i, m := range members {
		g.Go(func() error {
			if p.upstreamModernOnly(m.GetDecision().GetAllow()) {
				// Stateless: what it says of itself, no session.
				in, _, err := p.discoverModern(ctx, ac, m)
				if err != nil {
					ac.log.WarnContext(ctx, "member unavailable at initialize", slog.String("member", m.GetServer()), slog.String("error", err.Error()))
				}
				inits[i] = in
				return nil
			}
			sid, version, init, err := p.open(ctx, ac, m)
			if errors.Is(err, errMemberModernOnly) {
				_, err = p.modernOnlyRetry(ctx, ac, m, nil, nil, nil, err)
				if err == nil {
					inits[i], _, err = p.discoverModern(ctx, ac, m)
				}
				if err != nil {
					ac.log.WarnContext(ctx, "member unavailable at initialize", slog.String("member", m.GetServer()), slog.String("error", err.Error()))
				}
				return nil
			}
			if err != nil {
				ac.log.WarnContext(ctx, "member unavailable at initialize", slog.String("member", m.GetServer()), slog.String("error", err.Error()))
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			inits[i] = &init
			ac.state.Members[m.GetServer()] = sid
			if version != ac.state.Version {
				if ac.state.Versions == nil {
					ac.state.Versions = map[string]string{}
				}
				ac.state.Versions[m.GetServer()] = version
			}
			return nil
		})
	}
	_ = g.Wait()
	handle, err := p.sealTagged(ctx, aggTagSession, ac.route, ac.principal, ac.state.encode())
	if err != nil {
		ac.log.WarnContext(ctx, "cannot seal session", slog.String("code", codeOf(err)))
		writeResponse(w, unavailable().withID(string(compactID(ac.msg.ID))))
		return
	}
	caps, instructions := mergeInits(members, inits, true)
	result := map[string]any{
		"protocolVersion": ac.state.Version,
		"capabilities":    caps,
		"serverInfo":      ac.serverInfo(),
	}
	if instructions != "" {
		result["instructions"] = instructions
	}
	b, _ := json.Marshal(result, json.Deterministic(true))
	w.Header().Set(headerSessionID, handle)
	writeResult(w, ac.msg.ID, b)
}

// mergeInits merges what the members answered to initialize (or
// server/discover): the gateway's own capabilities (tools always; resources,
// prompts, completions, logging when a member has them; listChanged when
// the client can get the notifications) and the members' instructions under
// their names.
func mergeInits(members []*authorizev1.AggregateMember, inits []*memberInit, listChanged bool) (map[string]any, string) {
	list := func() any {
		if listChanged {
			return map[string]bool{"listChanged": true}
		}
		return map[string]any{}
	}
	caps := map[string]any{"tools": list()}
	var instructions []string
	for i, m := range members {
		in := inits[i]
		if in == nil {
			continue
		}
		for _, k := range []string{"resources", "prompts"} {
			if _, ok := in.Capabilities[k]; ok {
				caps[k] = list()
			}
		}
		for _, k := range []string{"completions", "logging"} {
			if _, ok := in.Capabilities[k]; ok {
				caps[k] = map[string]any{}
			}
		}
		if s := strings.TrimSpace(in.Instructions); s != "" {
			name := m.GetInstructionsName()
			if name == "" {
				name = m.GetServer()
			}
			instructions = append(instructions, "## "+name+"\n"+s)
		}
	}
	return caps, strings.Join(instructions, "\n\n")
}

// serverInfo is the aggregate's own implementation info.
func (ac *aggCall) serverInfo() map[string]string {
	name := ac.res.GetAggregate().GetName()
	if name == "" {
		name = "mcpgate"
	}
	return map[string]string{"name": name, "version": "1"}
}

// listKind describes one list method.
type listKind struct {
	items string // the result member holding the items
	// rewrite translates one item of member m; false drops it.
	rewrite func(m *authorizev1.AggregateMember, item map[string]jsontext.Value) bool
}

var listKinds = map[string]listKind{
	"tools/list":               {items: "tools", rewrite: rewriteTool},
	"prompts/list":             {items: "prompts", rewrite: rewritePrompt},
	"resources/list":           {items: "resources", rewrite: rewriteURIField("uri")},
	"resources/templates/list": {items: "resourceTemplates", rewrite: rewriteURIField("uriTemplate")},
}

func stringField(item map[string]jsontext.Value, k string) (string, bool) {
	v, ok := item[k]
	if !ok || v.Kind() != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func setString(item map[string]jsontext.Value, k, s string) {
	b, _ := json.Marshal(s)
	item[k] = b
}

// toolListed is the member's visibility rule for its tool n: the
// member's include/exclude lists and its decision's allowed/disallowed
// tools.
func toolListed(m *authorizev1.AggregateMember, n string) bool {
	return wire.ToolVisible(m.GetIncludeTools(), m.GetExcludeTools(), n) &&
		memberVisible(m, authorizev1.PolicyKind_POLICY_KIND_TOOL, n)
}

// memberVisible is the member decision's visibility (the server's tool
// lists and the principal's policy rules), the function its calls are
// decided with.
func memberVisible(m *authorizev1.AggregateMember, kind authorizev1.PolicyKind, n string) bool {
	a := m.GetDecision().GetAllow()
	ok, _ := wire.Visible(a.GetAllowedTools(), a.GetDisallowedTools(), a.GetVisibility(), kind, n)
	return ok
}

func rewriteTool(m *authorizev1.AggregateMember, item map[string]jsontext.Value) bool {
	n, ok := stringField(item, "name")
	if !ok || n == "" || !toolListed(m, n) {
		return false
	}
	exposed := wire.ExposedName(m.GetToolPrefix(), m.GetRenames(), n)
	if !wire.ValidToolName(exposed) {
		return false
	}
	setString(item, "name", exposed)
	return true
}

func rewritePrompt(m *authorizev1.AggregateMember, item map[string]jsontext.Value) bool {
	n, ok := stringField(item, "name")
	if !ok || n == "" || !memberVisible(m, authorizev1.PolicyKind_POLICY_KIND_PROMPT, n) { // an empty name could not be resolved back
		return false
	}
	setString(item, "name", wire.ExposedName(m.GetToolPrefix(), m.GetRenames(), n))
	return true
}

func rewriteURIField(k string) func(*authorizev1.AggregateMember, map[string]jsontext.Value) bool {
	return func(m *authorizev1.AggregateMember, item map[string]jsontext.Value) bool {
		u, ok := stringField(item, k)
		if !ok || !memberVisible(m, authorizev1.PolicyKind_POLICY_KIND_RESOURCE, u) {
			return false
		}
		setString(item, k, wire.ExposedURI(m.GetServer(), u))
		return true
	}
}

// aggList merges a list across members. The cursor the client gets back
// is sealed: which members still have pages, and each one's own cursor.
func (p *Proxy) aggList(w http.ResponseWriter, r *http.Request, ac *aggCall) {
	ctx := r.Context()
	kind := listKinds[ac.msg.Method]
	var params struct {
		Cursor *string `json:"cursor"`
	}
	if ac.msg.Params != nil && json.Unmarshal(ac.msg.Params, &params) != nil {
		writeRPCError(w, ac.msg.ID, -32602, "Invalid params")
		return
	}
	members := usable(ac.res)
	var cursors map[string]string
	if params.Cursor != nil {
		b, err := p.openTagged(ctx, aggTagCursor, ac.route+"\x00"+ac.msg.Method, ac.principal, *params.Cursor)
		if err == nil {
			err = json.Unmarshal(b, &cursors)
		}
		if err != nil {
			writeRPCError(w, ac.msg.ID, -32602, "Invalid cursor")
			return
		}
		members = slices.DeleteFunc(members, func(m *authorizev1.AggregateMember) bool {
			_, ok := cursors[m.GetServer()]
			return !ok
		})
	}
	pages := make([]listPage, len(members))
	var hint listHint
	var g errgroup.Group
	g.SetLimit(aggParallel)
	for i, m := range members {
		g.Go(func() error {
			var pr jsontext.Value
			if c, ok := cursors[m.GetServer()]; ok {
				pr, _ = json.Marshal(map[string]string{"cursor": c})
			}
			reply, err := p.send(ctx, ac, m, rpcRequest(ac.msg.ID, ac.msg.Method, pr), ac.msg.ID, func(jsontext.Value) {})
			if err != nil {
				ac.log.WarnContext(ctx, "member list failed", slog.String("member", m.GetServer()), slog.String("method", ac.msg.Method), slog.String("error", err.Error()))
				return nil
			}
			pg, ok := memberPage(kind, m, reply, &hint)
			if !ok {
				ac.log.WarnContext(ctx, "member list reply unreadable", slog.String("member", m.GetServer()))
				return nil
			}
			pages[i] = pg
			return nil
		})
	}
	_ = g.Wait()
	all := []jsontext.Value{}
	next := map[string]string{}
	for i, m := range members {
		all = append(all, pages[i].items...)
		if pages[i].next != "" {
			next[m.GetServer()] = pages[i].next
		}
	}
	result := map[string]any{kind.items: all}
	if len(next) > 0 {
		b, _ := json.Marshal(next, json.Deterministic(true))
		c, err := p.sealTagged(ctx, aggTagCursor, ac.route+"\x00"+ac.msg.Method, ac.principal, b)
		if err != nil {
			writeResponse(w, unavailable().withID(string(compactID(ac.msg.ID))))
			return
		}
		result["nextCursor"] = c
	}
	if ac.modern {
		hint.apply(result)
	}
	b, _ := json.Marshal(result, json.Deterministic(true))
	writeResult(w, ac.msg.ID, b)
}

// listPage is one member's page of a list, translated.
type listPage struct {
	items []jsontext.Value
	next  string
}

// memberPage reads member m's reply to a list request and translates its
// items; false when the reply is not a JSON-RPC result of that list.
func memberPage(kind listKind, m *authorizev1.AggregateMember, reply jsontext.Value, hint *listHint) (listPage, bool) {
	var rm aggMsg
	var result map[string]jsontext.Value
	if json.Unmarshal(reply, &rm) != nil || rm.Result == nil || json.Unmarshal(rm.Result, &result) != nil {
		return listPage{}, false
	}
	if hint != nil {
		hint.add(result)
	}
	var items []map[string]jsontext.Value
	if v, ok := result[kind.items]; ok && json.Unmarshal(v, &items) != nil {
		return listPage{}, false
	}
	var pg listPage
	for _, it := range items {
		if it == nil || !kind.rewrite(m, it) {
			continue
		}
		b, err := json.Marshal(it, json.Deterministic(true))
		if err == nil {
			pg.items = append(pg.items, b)
		}
	}
	pg.next, _ = stringField(result, "nextCursor")
	return pg, true
}

// aggNamed routes tools/call and prompts/get: the control plane resolved
// the exposed name to its one owning member and that member's name.
func (p *Proxy) aggNamed(w http.ResponseWriter, r *http.Request, ac *aggCall) {
	members := ac.res.GetAggregate().GetMembers()
	unknown := "Unknown tool"
	if ac.msg.Method == "prompts/get" {
		unknown = "Unknown prompt"
	}
	if len(members) != 1 || members[0].GetUpstreamName() == "" {
		writeRPCError(w, ac.msg.ID, -32602, unknown)
		return
	}
	m := members[0]
	if ac.msg.Method == "tools/call" && m.GetDecision().GetDecision() == authorizev1.Decision_DECISION_ALLOW && !toolListed(m, m.GetUpstreamName()) {
		writeRPCError(w, ac.msg.ID, -32602, unknown)
		return
	}
	params, ok := setParam(ac.msg.Params, "name", m.GetUpstreamName())
	if !ok {
		writeRPCError(w, ac.msg.ID, -32602, "Invalid params")
		return
	}
	var rewrite func(jsontext.Value) jsontext.Value
	if ac.msg.Method == "tools/call" {
		rewrite = func(result jsontext.Value) jsontext.Value { return rewriteToolResult(m.GetServer(), result) }
	}
	p.routed(w, r, ac, m, params, rewrite)
}

// rewriteToolResult exposes the URIs of resource links and embedded
// resources in a tools/call result, so the client can read them through
// the aggregate.
func rewriteToolResult(server string, result jsontext.Value) jsontext.Value {
	if !bytes.Contains(result, []byte(`"resource`)) {
		return result // nothing to rewrite: no decoding on the common path
	}
	var res map[string]jsontext.Value
	var content []map[string]jsontext.Value
	if json.Unmarshal(result, &res) != nil || json.Unmarshal(res["content"], &content) != nil {
		return result
	}
	for _, c := range content {
		switch typ, _ := stringField(c, "type"); typ {
		case "resource_link":
			if u, ok := stringField(c, "uri"); ok {
				setString(c, "uri", wire.ExposedURI(server, u))
			}
		case "resource":
			var inner map[string]jsontext.Value
			if json.Unmarshal(c["resource"], &inner) == nil {
				if u, ok := stringField(inner, "uri"); ok {
					setString(inner, "uri", wire.ExposedURI(server, u))
					c["resource"], _ = json.Marshal(inner, json.Deterministic(true))
				}
			}
		}
	}
	var err error
	if res["content"], err = json.Marshal(content, json.Deterministic(true)); err != nil {
		return result
	}
	b, err := json.Marshal(res, json.Deterministic(true))
	if err != nil {
		return result
	}
	return b
}

// aggResource routes resources/read, subscribe and unsubscribe by the
// exposed URI, authorizing the request again for the owning member alone
// with the member's own URI.
func (p *Proxy) aggResource(w http.ResponseWriter, r *http.Request, ac *aggCall) {
	var params map[string]jsontext.Value
	if ac.msg.Params == nil || json.Unmarshal(ac.msg.Params, &params) != nil {
		writeRPCError(w, ac.msg.ID, -32602, "Invalid params")
		return
	}
	exposed, _ := stringField(params, "uri")
	server, uri, ok := wire.ParseExposedURI(exposed)
	if !ok {
		writeRPCError(w, ac.msg.ID, -32002, "Resource not found")
		return
	}
	m, ok := p.authorizeMember(w, r, ac, server, func(req *authorizev1.AuthorizeRequest) { req.ResourceUri = uri })
	if !ok {
		return
	}
	setString(params, "uri", uri)
	b, _ := json.Marshal(params, json.Deterministic(true))
	p.routed(w, r, ac, m, b, func(result jsontext.Value) jsontext.Value {
		return rewriteContents(m.GetServer(), result)
	})
}

// authorizeMember authorizes the request again for member server only; on
// refusal it has answered.
func (p *Proxy) authorizeMember(w http.ResponseWriter, r *http.Request, ac *aggCall, server string, mod func(*authorizev1.AuthorizeRequest)) (*authorizev1.AggregateMember, bool) {
	ctx := r.Context()
	req := proto.CloneOf(ac.base)
	req.JsonrpcMethod = ac.msg.Method
	req.Member = server
	if mod != nil {
		mod(req)
	}
	actx, cancel := context.WithTimeout(ctx, p.timeout)
	res, err := p.authorize(actx, req)
	cancel()
	if err != nil || res.GetDecision() != authorizev1.Decision_DECISION_ALLOW || res.GetAggregate() == nil {
		out := mapDecision(res, err, p.prmURL(ac.route))
		if out.Forward { // ALLOW, but not of an aggregate
			out = outcome{Response: unavailable()}
		}
		writeResponse(w, out.Response.withID(string(compactID(ac.msg.ID))))
		return nil, false
	}
	m := findMember(res, server)
	if m == nil {
		writeRPCError(w, ac.msg.ID, -32002, "Resource not found")
		return nil, false
	}
	return m, true
}

// rewriteContents exposes the URIs of a resources/read result.
func rewriteContents(server string, result jsontext.Value) jsontext.Value {
	var res map[string]jsontext.Value
	if json.Unmarshal(result, &res) != nil {
		return result
	}
	var contents []map[string]jsontext.Value
	if json.Unmarshal(res["contents"], &contents) != nil {
		return result
	}
	for _, c := range contents {
		if u, ok := stringField(c, "uri"); ok {
			setString(c, "uri", wire.ExposedURI(server, u))
		}
	}
	res["contents"], _ = json.Marshal(contents, json.Deterministic(true))
	b, err := json.Marshal(res, json.Deterministic(true))
	if err != nil {
		return result
	}
	return b
}

// aggComplete routes completion/complete by its ref: a prompt's exposed
// name (resolved with the members' prefixes and renames) or a resource
// template's exposed URI.
func (p *Proxy) aggComplete(w http.ResponseWriter, r *http.Request, ac *aggCall) {
	var params map[string]jsontext.Value
	var ref map[string]jsontext.Value
	if ac.msg.Params == nil || json.Unmarshal(ac.msg.Params, &params) != nil || json.Unmarshal(params["ref"], &ref) != nil {
		writeRPCError(w, ac.msg.ID, -32602, "Invalid params")
		return
	}
	typ, _ := stringField(ref, "type")
	var m *authorizev1.AggregateMember
	switch typ {
	case "ref/prompt":
		name, _ := stringField(ref, "name")
		for _, c := range usable(ac.res) {
			if up, ok := wire.UpstreamName(c.GetToolPrefix(), c.GetRenames(), name); ok {
				m = c
				setString(ref, "name", up)
				break
			}
		}
	case "ref/resource":
		exposed, _ := stringField(ref, "uri")
		if server, uri, ok := wire.ParseExposedURI(exposed); ok {
			m = findMember(ac.res, server)
			setString(ref, "uri", uri)
		}
	}
	if m == nil {
		writeRPCError(w, ac.msg.ID, -32602, "Unknown reference")
		return
	}
	params["ref"], _ = json.Marshal(ref, json.Deterministic(true))
	b, _ := json.Marshal(params, json.Deterministic(true))
	p.routed(w, r, ac, m, b, nil)
}

// routed sends the client's request, with params replaced, to member m
// and relays the member's messages and its answer on an event stream.
func (p *Proxy) routed(w http.ResponseWriter, r *http.Request, ac *aggCall, m *authorizev1.AggregateMember, params jsontext.Value, rewrite func(jsontext.Value) jsontext.Value) {
	ctx := r.Context()
	id := ac.msg.ID
	state, retried := "", hasRequestState(ac.parsed)
	if retried {
		// A retry: the member gets its own state back, if the client's
		// is one the gateway sealed for this member, call and principal.
		var ok bool
		if state, ok = p.aggRetryState(w, r, ac, m); !ok {
			return
		}
	}
	switch m.GetDecision().GetDecision() {
	case authorizev1.Decision_DECISION_ALLOW:
	case authorizev1.Decision_DECISION_CHALLENGE:
		p.connectRequired(w, r, ac, m, retried && state == connectState)
		return
	case authorizev1.Decision_DECISION_DENY:
		infoFrom(ctx).memberRefused(m.GetDecision())
		// One member's policy refuses this call: a JSON-RPC error, not a
		// 403 that would look like the whole aggregate refused. Not the
		// gateway's -32003 either: the Go SDK reads that code as its own
		// "client is closing". -32602, as for a name the principal
		// cannot see.
		writeRPCError(w, id, -32602, "Not allowed")
		return
	case authorizev1.Decision_DECISION_RATE_LIMITED:
		infoFrom(ctx).memberRefused(m.GetDecision())
		// Inside an aggregate session the answer is the member's: a tool
		// error result the model can act on ("retry in N s"), not a 429
		// that would look like the whole aggregate refused.
		rl := m.GetDecision().GetRateLimited()
		if ac.msg.Method == "tools/call" {
			writeJSON(w, []byte(rateLimitedToolResult(string(id), rl)))
			return
		}
		lid, _, retry := rateLimitedParts(rl)
		writeRPCError(w, id, codeRateLimited, rateLimitedMessage(lid, retry))
		return
	default:
		writeRPCError(w, id, -32602, "Unknown tool")
		return
	}
	if retried {
		var ok bool
		if state == connectState {
			// The input was the gateway's (the person connected): the
			// member gets the call as first asked.
			params, ok = withoutParams(params, "requestState", "inputResponses")
		} else {
			params, ok = setParam(params, "requestState", state)
		}
		if !ok {
			writeRPCError(w, id, -32602, "Invalid params")
			return
		}
	}
	sse := newSSEOut(w)
	reply, err := p.send(ctx, ac, m, rpcRequest(id, ac.msg.Method, params), id, func(v jsontext.Value) {
		if out, ok := p.fromMember(ctx, ac, m.GetServer(), v); ok {
			sse.event(out)
		}
	})
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, errMemberAuth) && m.GetDecision().GetAllow().GetVaultGrant() {
		// As on the member's own route: the grant is reported unusable, so
		// the next call gets the member's CHALLENGE (URL elicitation).
		p.reportUnauthorized(ctx, m.GetServer(), ac.principal, ac.log)
	}
	if err != nil {
		ac.log.WarnContext(ctx, "member call failed", slog.String("member", m.GetServer()), slog.String("error", err.Error()))
		sse.final(rpcErrorMsg(id, -32002, "member server "+m.GetServer()+" unavailable"))
		return
	}
	if rewrite != nil {
		var rm aggMsg
		if json.Unmarshal(reply, &rm) == nil && rm.Result != nil {
			rm.Result = rewrite(rm.Result)
			if b, err := json.Marshal(rm); err == nil {
				reply = b
			}
		}
	}
	{
		// A 2026-07-28 member's input_required: its state sealed.
		sealed, err := p.sealMemberState(ctx, ac, m, reply)
		if err != nil {
			ac.log.WarnContext(ctx, "member reply's requestState not sealed", slog.String("member", m.GetServer()), slog.String("error", err.Error()))
			sse.final(rpcErrorMsg(id, -32002, "member server "+m.GetServer()+" unavailable"))
			return
		}
		reply = sealed
	}
	if ac.modern && !p.memberModern(ac, m) {
		reply = completeResult(reply) // a 2025-11-25 member's result
	}
	sse.final(reply)
}

// fromMember translates a message a member sent the client: notifications
// pass (a resources/updated URI exposed), requests get an id naming the
// member (sealed), anything else is dropped.
func (p *Proxy) fromMember(ctx context.Context, ac *aggCall, server string, v jsontext.Value) (jsontext.Value, bool) {
	var m aggMsg
	if json.Unmarshal(v, &m) != nil || m.Method == "" {
		return nil, false
	}
	if m.ID == nil {
		if m.Method == "notifications/resources/updated" {
			var params map[string]jsontext.Value
			if json.Unmarshal(m.Params, &params) == nil {
				if u, ok := stringField(params, "uri"); ok {
					setString(params, "uri", wire.ExposedURI(server, u))
					m.Params, _ = json.Marshal(params, json.Deterministic(true))
					if b, err := json.Marshal(m); err == nil {
						return b, true
					}
				}
			}
		}
		return v, true
	}
	payload := append([]byte(server+"\x00"), compactID(m.ID)...)
	sealed, err := p.sealTagged(ctx, aggTagRequest, ac.route, ac.principal, payload)
	if err != nil {
		return nil, false
	}
	m.ID, _ = json.Marshal(aggRequestIDPrefix + sealed)
	b, err := json.Marshal(m)
	if err != nil {
		return nil, false
	}
	return b, true
}

// requestMember is the member a client's answer (its JSON-RPC id, compact)
// is for, when the id is one the aggregator gave a member's request: the
// Authorize call for it then asks about that member only. Who may answer
// is still checked with the binding (aggClientResponse).
func (p *Proxy) requestMember(id string) string {
	var s string
	if !strings.HasPrefix(id, `"`+aggRequestIDPrefix) || json.Unmarshal([]byte(id), &s) != nil {
		return ""
	}
	// Only with the keys at hand: this runs before the request is
	// authorized, so it never makes the ring refresh.
	ks := p.keys.cur.Load()
	if ks == nil {
		return ""
	}
	b, err := ks.open(strings.TrimPrefix(s, aggRequestIDPrefix))
	if err != nil || !strings.HasPrefix(b.route, aggTagRequest) {
		return ""
	}
	server, _, _ := strings.Cut(b.upstream, "\x00")
	return server
}

// aggClientResponse delivers the client's answer to a member's request to
// that member's session.
func (p *Proxy) aggClientResponse(w http.ResponseWriter, r *http.Request, ac *aggCall) {
	ctx := r.Context()
	var id string
	if json.Unmarshal(ac.msg.ID, &id) != nil || !strings.HasPrefix(id, aggRequestIDPrefix) {
		writeFixed(w, http.StatusBadRequest, rpcInvalidRequest)
		return
	}
	payload, err := p.openTagged(ctx, aggTagRequest, ac.route, ac.principal, strings.TrimPrefix(id, aggRequestIDPrefix))
	server, orig, ok := strings.Cut(string(payload), "\x00")
	if err != nil || !ok {
		writeFixed(w, http.StatusBadRequest, rpcInvalidRequest)
		return
	}
	m := findMember(ac.res, server)
	if m == nil || m.GetDecision().GetDecision() != authorizev1.Decision_DECISION_ALLOW {
		writeFixed(w, http.StatusBadRequest, rpcInvalidRequest)
		return
	}
	out := ac.msg
	out.ID = jsontext.Value(orig)
	b, err := json.Marshal(out)
	if err != nil {
		writeFixed(w, http.StatusBadRequest, rpcInvalidRequest)
		return
	}
	if _, err := p.send(ctx, ac, m, b, nil, nil); err != nil {
		ac.log.WarnContext(ctx, "member answer not delivered", slog.String("member", server), slog.String("error", err.Error()))
		writeFixed(w, http.StatusBadGateway, rpcUpstreamFailed)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// aggNotification handles a client notification: initialized is the
// gateway's own (members got theirs when opened); others (cancellation,
// roots changes) go to every member this session has opened: a member
// ignores a cancellation of an id it is not serving.
func (p *Proxy) aggNotification(ctx context.Context, ac *aggCall) {
	if ac.msg.Method == "notifications/initialized" {
		return
	}
	p.aggBroadcast(ctx, ac, false)
}

// aggBroadcast sends the client's message to every usable member with a
// session; asRequest waits for each member's answer. A member whose session
// is gone is not reopened for it: a new session has nothing to cancel and
// no level to set.
func (p *Proxy) aggBroadcast(ctx context.Context, ac *aggCall, asRequest bool) {
	b, err := json.Marshal(ac.msg)
	if err != nil {
		return
	}
	var id jsontext.Value
	if asRequest {
		id = ac.msg.ID
	}
	var g errgroup.Group
	g.SetLimit(aggParallel)
	for _, m := range usable(ac.res) {
		sid, version, ok := p.known(ac, m.GetServer())
		if !ok {
			continue
		}
		g.Go(func() error {
			if _, _, err := p.members.exchange(ctx, ac.target(m, version), sid, b, id, func(jsontext.Value) {}); err != nil {
				ac.log.InfoContext(ctx, "member did not take a broadcast message", slog.String("member", m.GetServer()), slog.String("error", err.Error()))
			}
			return nil
		})
	}
	_ = g.Wait()
}

// connectRequired answers a call to a member that needs the person's own
// upstream connection.
func (p *Proxy) connectRequired(w http.ResponseWriter, r *http.Request, ac *aggCall, m *authorizev1.AggregateMember, askedBefore bool) {
	url := m.GetDecision().GetChallenge().GetConnectUrl()
	if url == "" {
		writeRPCError(w, ac.msg.ID, -32002, "member server "+m.GetServer()+" unavailable")
		return
	}
	text := "Connect your " + m.GetServer() + " account to use this: " + url
	if ac.modern && ac.state.elicitURL() && !askedBefore {
		// 2026-07-28: the URL elicitation is an input request (-32042 is
		// 2025-11-25 only); the retry, once connected, reaches the member.
		p.connectInputRequired(w, r, ac, m, url, text)
		return
	}
	if !ac.modern && ac.state.elicitURL() {
		var nonce [16]byte
		_, _ = rand.Read(nonce[:])
		data, _ := json.Marshal(map[string]any{"elicitations": []map[string]string{{
			"mode":          "url",
			"elicitationId": base64.RawURLEncoding.EncodeToString(nonce[:]),
			"url":           url,
			"message":       text,
		}}}, json.Deterministic(true))
		writeJSON(w, rpcErrorData(ac.msg.ID, rpcCodeURLElicitation, "URL elicitation required", data))
		return
	}
	if ac.msg.Method == "tools/call" {
		res := map[string]any{
			"content": []map[string]string{{"type": "text", "text": text}},
			"isError": true,
		}
		if ac.modern {
			res["resultType"] = "complete"
		}
		b, _ := json.Marshal(res, json.Deterministic(true))
		writeResult(w, ac.msg.ID, b)
		return
	}
	writeRPCError(w, ac.msg.ID, -32002, text)
}

// aggStream merges the members' GET streams into the client's. A member
// joins with the session this process knows for it: one opened later
// (lazily, or reopened after its session expired) joins when this process
// opens it; a member stream that ends is followed to the member's next
// session, and one that meets an expired session reopens it.
func (p *Proxy) aggStream(w http.ResponseWriter, r *http.Request, ac *aggCall) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if ac.handle == "" {
		writeFixed(w, http.StatusBadRequest, rpcInvalidRequest)
		return
	}
	lifetime := time.AfterFunc(p.streamLifetime, cancel)
	defer lifetime.Stop()
	sse := newSSEOut(w)
	sse.start()
	var wg sync.WaitGroup
	for _, m := range usable(ac.res) {
		wg.Go(func() { p.followMember(ctx, ac, m, sse) })
	}
	<-ctx.Done()
	wg.Wait()
}

// memberStreamRetry is how often a client's GET stream looks for a new
// session of a member whose stream it does not have.
const memberStreamRetry = time.Second

// followMember relays member m's GET streams to sse until ctx ends.
func (p *Proxy) followMember(ctx context.Context, ac *aggCall, m *authorizev1.AggregateMember, sse *sseOut) {
	last := ""
	for {
		sid, version, ok := p.known(ac, m.GetServer())
		if ok && sid != "" && sid != last {
			last = sid
			err := p.members.stream(ctx, ac.target(m, version), sid, func(v jsontext.Value) {
				if out, ok := p.fromMember(ctx, ac, m.GetServer(), v); ok {
					sse.event(out)
				}
			})
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, errMemberNoStream):
				return
			case errors.Is(err, errMemberGone):
				if _, _, err := p.reopen(ctx, ac, m); err == nil {
					continue
				}
			case err != nil:
				// Wait for a new session (a call reopens the member).
				ac.log.InfoContext(ctx, "member stream ended", slog.String("member", m.GetServer()), slog.String("error", err.Error()))
			default:
				last = "" // ended cleanly: the same session again
			}
		}
		t := time.NewTimer(memberStreamRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// aggEnd ends the members' sessions.
func (p *Proxy) aggEnd(ctx context.Context, ac *aggCall) {
	var g errgroup.Group
	g.SetLimit(aggParallel)
	for _, m := range usable(ac.res) {
		sid, version, ok := p.known(ac, m.GetServer())
		if !ok || sid == "" {
			continue
		}
		g.Go(func() error {
			p.members.end(ctx, ac.target(m, version), sid)
			return nil
		})
	}
	_ = g.Wait()
	if ac.handle != "" {
		p.reopened.drop(ac.mapKey(""))
	}
}

// sseOut writes events to the client, starting the stream on the first.
type sseOut struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func newSSEOut(w http.ResponseWriter) *sseOut {
	return &sseOut{w: w, rc: http.NewResponseController(w)}
}

func (s *sseOut) startLocked() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	_ = s.rc.Flush()
}

func (s *sseOut) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startLocked()
}

// final writes the answer: as the stream's last event when it started,
// else as a plain JSON reply (one write, no stream).
func (s *sseOut) final(v jsontext.Value) {
	s.mu.Lock()
	started := s.started
	s.started = true // nothing may start a stream after the answer
	s.mu.Unlock()
	if !started {
		writeJSON(s.w, v)
		return
	}
	s.write(v)
}

func (s *sseOut) event(v jsontext.Value) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startLocked()
	s.writeLocked(v)
}

func (s *sseOut) write(v jsontext.Value) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeLocked(v)
}

func (s *sseOut) writeLocked(v jsontext.Value) {
	_, _ = s.w.Write([]byte("event: message\ndata: "))
	_, _ = s.w.Write(v)
	_, _ = s.w.Write([]byte("\n\n"))
	_ = s.rc.Flush()
}

// rpcRequest is a JSON-RPC request (a notification when id is nil).
func rpcRequest(id jsontext.Value, method string, params jsontext.Value) []byte {
	b := make([]byte, 0, len(id)+len(method)+len(params)+48)
	b = append(b, `{"jsonrpc":"2.0"`...)
	if id != nil {
		b = append(b, `,"id":`...)
		b = append(b, id...)
	}
	b = append(b, `,"method":`...)
	b, _ = jsontext.AppendQuote(b, method)
	if params != nil {
		b = append(b, `,"params":`...)
		b = append(b, params...)
	}
	return append(b, '}')
}

// setParam returns params with member k set to s.
func setParam(params jsontext.Value, k, s string) (jsontext.Value, bool) {
	var out bytes.Buffer
	out.Grow(len(params) + len(s) + 16)
	enc := jsontext.NewEncoder(&out)
	if params == nil {
		params = jsontext.Value(`{}`)
	}
	dec := jsontext.NewDecoder(bytes.NewReader(params))
	if t, err := dec.ReadToken(); err != nil || t.Kind() != '{' || enc.WriteToken(t) != nil {
		return nil, false
	}
	for dec.PeekKind() != '}' {
		nt, err := dec.ReadToken()
		if err != nil {
			return nil, false
		}
		name := nt.String()
		v, err := dec.ReadValue()
		if err != nil {
			return nil, false
		}
		if name == k {
			continue // replaced below
		}
		if enc.WriteToken(jsontext.String(name)) != nil || enc.WriteValue(v) != nil {
			return nil, false
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, false
	}
	if enc.WriteToken(jsontext.String(k)) != nil || enc.WriteToken(jsontext.String(s)) != nil || enc.WriteToken(jsontext.EndObject) != nil {
		return nil, false
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), true
}
