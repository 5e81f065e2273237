package dataplane

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/sync/errgroup"

	"github.com/mcpgate/mcpgate/dataplane/bridge"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// The aggregator for 2026-07-28 clients.
//
// A 2026-07-28 request on an aggregate route (classifyRequest found it
// modern: its _meta carries the protocol version, and MCP-Protocol-Version,
// Mcp-Method and Mcp-Name — the EXPOSED name — were checked against the
// body before the aggregator saw it) has no session: every request says
// who the client is in its _meta. server/discover is answered by the
// gateway with the members' capabilities and instructions merged; lists
// are merged with sealed cursors as for 2025-11-25 clients, with the
// members' cache hints merged (the smallest ttlMs, a member without one
// counting as 0; cacheScope always private: what an aggregate lists depends
// on the principal's grants and policy); calls are routed to the owning
// member.
//
// Each member is spoken to in the version it speaks: a member whose
// protocol_version is 2025-11-25 (or that refused a 2026-07-28 request as a
// 2025-only server, remembered in p.versions) gets the request on a
// 2025-11-25 session, opened with the client's capabilities minus
// elicitation, sampling and roots (a 2026-07-28 client takes no
// server-to-client requests) and kept in the bounded per-process map under
// (principal, aggregate route, client _meta digest, member) — never shared
// between principals; any other member gets a stateless 2026-07-28 request
// with the client's _meta and the member's own Mcp-Method / Mcp-Name.
//
// Multi-round-trip requests: a member's input_required result reaches the
// client with its requestState replaced by a value sealed with mrtr.go's
// sealer, bound to the principal, the aggregate route AND the member
// (aggStateRoute), the method and the exposed name. A retry's state is
// opened and checked before anything is sent, and the member gets its own
// state back; a forged state, or one of another principal, aggregate,
// member, method or name, is the fixed rpcBadRequestState.
//
// A member that needs the person's own connection: a 2026-07-28 client
// that declared URL elicitation gets input_required with one URL-mode
// elicitation of the member's connect page (in 2026-07-28 the URL
// elicitation is an input request; -32042 is 2025-11-25 only) and a sealed
// state marking the input as the gateway's (connectState); its retry, once
// the person connected, reaches the member as the call first asked, and
// while still unconnected gets the tool error with the link, as a client
// without URL elicitation does at once.

// aggStateTag separates an aggregate member's requestState binding from a
// server route's (a route name cannot hold a NUL).
const aggStateTag = "\x00agg-state:"

// aggStateRoute is the route a member's requestState is bound to.
func aggStateRoute(route, member string) string {
	return aggStateTag + route + "\x00" + member
}

// aggModern prepares a 2026-07-28 request: the client's _meta. On false
// the answer has been written.
func (p *Proxy) aggModern(w http.ResponseWriter, ac *aggCall) bool {
	meta, err := bridge.ClientMetaOf(ac.parsed.Canonical)
	if err != nil {
		writeFixed(w, http.StatusBadRequest, withID(rpcInvalidRequest, ac.parsed.ID))
		return false
	}
	ac.modern, ac.meta = true, meta
	// Caps: what connectRequired reads (URL-mode elicitation declared).
	ac.state = aggState{Version: aggVersion, Caps: meta.Capabilities}
	return true
}

// memberCaps are the capabilities a 2025-11-25 member session of a
// 2026-07-28 client is opened with.
func (ac *aggCall) memberCaps() jsontext.Value {
	m, err := bridge.WithoutInputCapabilities(ac.meta)
	if err != nil {
		return jsontext.Value(`{}`)
	}
	return m.Capabilities
}

// clientMeta is the _meta a member's 2026-07-28 request carries: the
// 2026-07-28 client's own, or for a 2025-11-25 client its capabilities from
// initialize minus elicitation, sampling and roots (it could not answer a
// member's input_required), without client info.
func (ac *aggCall) clientMeta() bridge.ClientMeta {
	if ac.modern {
		return ac.meta
	}
	caps := ac.state.Caps
	if caps.Kind() != '{' {
		caps = jsontext.Value(`{}`)
	}
	m, err := bridge.WithoutInputCapabilities(bridge.ClientMeta{Capabilities: caps})
	if err != nil {
		return bridge.ClientMeta{Capabilities: jsontext.Value(`{}`)}
	}
	return m
}

// memberModern reports whether member m is to get stateless 2026-07-28
// requests: for a 2026-07-28 client any member not known to speak only
// 2025-11-25; for a 2025-11-25 client a member known to speak only
// 2026-07-28.
func (p *Proxy) memberModern(ac *aggCall, m *authorizev1.AggregateMember) bool {
	a := m.GetDecision().GetAllow()
	if ac.modern {
		return !p.upstreamLegacy(a)
	}
	return p.upstreamModernOnly(a)
}

// modernOnlyRetry follows a member's refusal of a 2025-11-25 request as a
// 2026-07-28-only server (err): remembered when its protocol_version is
// auto, and msg (when not nil) sent again as 2026-07-28. Any other err is
// returned as it is.
func (p *Proxy) modernOnlyRetry(ctx context.Context, ac *aggCall, m *authorizev1.AggregateMember, msg []byte, id jsontext.Value, sink func(jsontext.Value), err error) (jsontext.Value, error) {
	if !errors.Is(err, errMemberModernOnly) {
		return nil, err
	}
	a := m.GetDecision().GetAllow()
	if a.GetUpstreamProtocolVersion() != "" {
		return nil, errMemberFailed // configured otherwise: not second-guessed
	}
	ac.log.InfoContext(ctx, "member speaks only 2026-07-28; sending it 2026-07-28 requests", slog.String("member", m.GetServer()))
	p.versions.SetModernOnly(a.GetUpstreamUrl())
	if msg == nil {
		return nil, nil
	}
	reply, done, err := p.sendModern(ctx, ac, m, msg, id, sink)
	if !done {
		return nil, errMemberFailed
	}
	return reply, err
}

// sendModern sends msg to member m as a stateless 2026-07-28 request with
// the client's _meta. done is false, with nothing sent or processed, when
// the member speaks only 2025-11-25 (known, or learnt from its refusal):
// the caller then uses a session.
func (p *Proxy) sendModern(ctx context.Context, ac *aggCall, m *authorizev1.AggregateMember, msg []byte, id jsontext.Value, sink func(jsontext.Value)) (reply jsontext.Value, done bool, err error) {
	if !p.memberModern(ac, m) {
		return nil, false, nil
	}
	if id == nil {
		// Notifications and answers have no 2026-07-28 stateless form
		// here (cancellation ends the member's request with the client's).
		return nil, true, nil
	}
	var rm aggMsg
	if json.Unmarshal(msg, &rm) != nil {
		return nil, true, errMemberFailed
	}
	t := ac.target(m, protocol20260728)
	t.modern, t.mcpMethod = true, rm.Method
	var params struct {
		Name string `json:"name"`
		URI  string `json:"uri"`
		Meta struct {
			Version string `json:"io.modelcontextprotocol/protocolVersion"`
		} `json:"_meta"`
	}
	if rm.Params != nil && json.Unmarshal(rm.Params, &params, json.RejectUnknownMembers(false)) != nil {
		return nil, true, errMemberFailed
	}
	if needsName(rm.Method) {
		t.mcpName = params.Name
		if rm.Method == "resources/read" {
			t.mcpName = params.URI
		}
	}
	body := msg
	if !ac.modern || params.Meta.Version != protocol20260728 {
		// A request the aggregator built, or a 2025-11-25 client's: the
		// client's _meta added. (A 2026-07-28 client's own request, its
		// name translated, carries it already.)
		if body, err = bridge.Upgrade(msg, ac.clientMeta()); err != nil {
			return nil, true, errMemberFailed
		}
	}
	reply, _, err = p.members.exchange(ctx, t, "", body, id, sink)
	if errors.Is(err, errMemberLegacy) && m.GetDecision().GetAllow().GetUpstreamProtocolVersion() == "" {
		ac.log.InfoContext(ctx, "member speaks only 2025-11-25; using a session", slog.String("member", m.GetServer()))
		p.versions.SetLegacy(m.GetDecision().GetAllow().GetUpstreamUrl())
		return nil, false, nil
	}
	return reply, true, err
}

// aggDiscover answers server/discover: the gateway's own capabilities as
// for initialize (without listChanged: the aggregate offers no
// subscriptions/listen), the members' instructions merged, the aggregate's
// serverInfo, and a private, immediately stale cache hint.
func (p *Proxy) aggDiscover(w http.ResponseWriter, r *http.Request, ac *aggCall) {
	ctx := r.Context()
	members := usable(ac.res)
	inits := make([]*memberInit, len(members))
	var g errgroup.Group
	g.SetLimit(aggParallel)
	for i, m := range members {
		g.Go(func() error {
			in, err := p.memberDiscover(ctx, ac, m)
			if err != nil {
				ac.log.WarnContext(ctx, "member unavailable at discover", slog.String("member", m.GetServer()), slog.String("error", err.Error()))
				return nil
			}
			inits[i] = in
			return nil
		})
	}
	_ = g.Wait()
	caps, instructions := mergeInits(members, inits, false)
	result := map[string]any{
		"supportedVersions": modernVersions,
		"capabilities":      caps,
		"_meta":             map[string]any{bridge.MetaServerInfo: ac.serverInfo()},
		"ttlMs":             0,
		"cacheScope":        "private",
		"resultType":        "complete",
	}
	if instructions != "" {
		result["instructions"] = instructions
	}
	b, _ := json.Marshal(result, json.Deterministic(true))
	writeResult(w, ac.msg.ID, b)
}

// memberDiscover is what member m says about itself: its server/discover
// result (2026-07-28), or the initialize result of a session opened for
// this client (2025-11-25, kept for the client's next requests).
func (p *Proxy) memberDiscover(ctx context.Context, ac *aggCall, m *authorizev1.AggregateMember) (*memberInit, error) {
	if in, done, err := p.discoverModern(ctx, ac, m); done {
		return in, err
	}
	old, _, hadOld := p.known(ac, m.GetServer())
	sid, version, in, err := p.open(ctx, ac, m)
	if err != nil {
		return nil, err
	}
	p.reopened.put(ac.mapKey(m.GetServer()), sid+"\x00"+version)
	if hadOld && old != "" && old != sid {
		p.members.end(ctx, ac.target(m, version), old)
	}
	return &in, nil
}

// discoverModern asks member m for server/discover as a 2026-07-28
// request; done is false when m is to be spoken to in 2025-11-25 (known,
// or learnt now from its refusal or its discover result).
func (p *Proxy) discoverModern(ctx context.Context, ac *aggCall, m *authorizev1.AggregateMember) (*memberInit, bool, error) {
	id := jsontext.Value(`"mcpgate-discover"`)
	reply, done, err := p.sendModern(ctx, ac, m, rpcRequest(id, "server/discover", nil), id, func(jsontext.Value) {})
	switch {
	case !done:
		return nil, false, nil
	case err != nil:
		return nil, true, err
	case bridge.IsLegacyDiscover("application/json", reply):
		if m.GetDecision().GetAllow().GetUpstreamProtocolVersion() == "" {
			p.versions.SetLegacy(m.GetDecision().GetAllow().GetUpstreamUrl())
		}
		return nil, false, nil
	}
	var rm aggMsg
	var in memberInit
	if json.Unmarshal(reply, &rm) != nil || rm.Result == nil || json.Unmarshal(rm.Result, &in) != nil {
		return nil, true, errMemberFailed
	}
	return &in, true, nil
}

// listHint is the merged cache hint of a 2026-07-28 list result.
type listHint struct {
	mu  sync.Mutex
	ttl int64
	set bool
}

// add merges one member's result: its ttlMs (0 when it gave none).
func (h *listHint) add(result map[string]jsontext.Value) {
	var ttl int64
	if v, ok := result["ttlMs"]; ok && v.Kind() == '0' {
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil && n > 0 {
			ttl = n
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.set || ttl < h.ttl {
		h.ttl, h.set = ttl, true
	}
}

// apply sets the merged hint on a 2026-07-28 list result.
func (h *listHint) apply(result map[string]any) {
	result["ttlMs"] = h.ttl
	result["cacheScope"] = "private"
	result["resultType"] = "complete"
}

// aggRetryState opens the requestState of a retried request for member m
// and returns the member's own state; on false the fixed refusal has been
// written.
func (p *Proxy) aggRetryState(w http.ResponseWriter, r *http.Request, ac *aggCall, m *authorizev1.AggregateMember) (string, bool) {
	ctx := r.Context()
	first := ac.parsed.First
	bad := func(why string) (string, bool) {
		ac.log.InfoContext(ctx, "requestState refused", slog.String("why", why), slog.String("member", m.GetServer()))
		writeFixed(w, http.StatusBadRequest, withID(rpcBadRequestState, ac.parsed.ID))
		return "", false
	}
	if !first.IsCall || first.State == "" {
		return bad("malformed")
	}
	sctx, cancel := context.WithTimeout(ctx, p.timeout)
	s, err := p.keys.openRequestState(sctx, first.State)
	cancel()
	switch {
	case errors.Is(err, errBadState):
		return bad("not sealed by the gateway")
	case err != nil:
		ac.log.WarnContext(ctx, "session keys unavailable", slog.String("code", codeOf(err)))
		writeResponse(w, unavailable().withID(ac.parsed.ID))
		return "", false
	case !s.matches(ac.principal, aggStateRoute(ac.route, m.GetServer()), first.Method, msgName(first), time.Now()):
		return bad("binding or expiry")
	}
	return s.upstream, true
}

// sealMemberState replaces the requestState of member m's reply with the
// gateway's sealed value.
func (p *Proxy) sealMemberState(ctx context.Context, ac *aggCall, m *authorizev1.AggregateMember, reply jsontext.Value) (jsontext.Value, error) {
	if !bytes.Contains(reply, []byte(`"requestState"`)) {
		return reply, nil // nothing to seal: no key work on the common path
	}
	sctx, cancel := context.WithTimeout(ctx, p.timeout)
	ks, err := p.keys.current(sctx)
	cancel()
	if err != nil {
		return nil, err
	}
	s := &stateSealer{ks: ks, bind: stateBinding{
		principal: ac.principal, route: aggStateRoute(ac.route, m.GetServer()),
		method: ac.msg.Method, name: msgName(ac.parsed.First),
		expires: time.Now().Add(p.stateLifetime),
	}}
	out, _, err := s.sealOne(reply)
	return out, err
}

// completeResult is a member's reply for a 2026-07-28 client: a result
// without resultType (a 2025-11-25 member's) gets resultType "complete", as
// 2026-07-28 results carry it; anything else is returned as it is.
func completeResult(reply jsontext.Value) jsontext.Value {
	var rm aggMsg
	if json.Unmarshal(reply, &rm) != nil || rm.Result.Kind() != '{' {
		return reply
	}
	var res map[string]jsontext.Value
	if json.Unmarshal(rm.Result, &res) != nil {
		return reply
	}
	if _, ok := res["resultType"]; ok {
		return reply
	}
	res["resultType"] = jsontext.Value(`"complete"`)
	var err error
	if rm.Result, err = json.Marshal(res, json.Deterministic(true)); err != nil {
		return reply
	}
	b, err := json.Marshal(rm)
	if err != nil {
		return reply
	}
	return b
}

// connectState is the member state sealed in the requestState of the
// gateway's own input request (connect your account): not a member's.
const connectState = "\x00mcpgate-connect"

// connectInputRequired answers a 2026-07-28 client's call to a member that
// needs the person's connection: input_required with one URL-mode
// elicitation (the member's connect page) and a requestState sealed for
// this principal, aggregate, member, method and name. Its retry goes to
// the member once connected; still unconnected, it gets the tool error.
func (p *Proxy) connectInputRequired(w http.ResponseWriter, r *http.Request, ac *aggCall, m *authorizev1.AggregateMember, url, text string) {
	ctx := r.Context()
	sctx, cancel := context.WithTimeout(ctx, p.timeout)
	ks, err := p.keys.current(sctx)
	cancel()
	var sealed string
	if err == nil {
		sealed, err = ks.sealState(stateBinding{
			principal: ac.principal, route: aggStateRoute(ac.route, m.GetServer()),
			method: ac.msg.Method, name: msgName(ac.parsed.First), upstream: connectState,
			expires: time.Now().Add(p.stateLifetime),
		})
	}
	if err != nil {
		ac.log.WarnContext(ctx, "session keys unavailable", slog.String("code", codeOf(err)))
		writeResponse(w, unavailable().withID(string(compactID(ac.msg.ID))))
		return
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	b, _ := json.Marshal(map[string]any{
		"resultType": "input_required",
		"inputRequests": map[string]any{"mcpgate-connect": map[string]any{
			"method": "elicitation/create",
			"params": map[string]string{
				"mode":          "url",
				"elicitationId": base64.RawURLEncoding.EncodeToString(nonce[:]),
				"url":           url,
				"message":       text,
			},
		}},
		"requestState": sealed,
	}, json.Deterministic(true))
	writeResult(w, ac.msg.ID, b)
}

// withoutParams returns params without members ks.
func withoutParams(params jsontext.Value, ks ...string) (jsontext.Value, bool) {
	var m map[string]jsontext.Value
	if json.Unmarshal(params, &m) != nil || m == nil {
		return nil, false
	}
	for _, k := range ks {
		delete(m, k)
	}
	b, err := json.Marshal(m, json.Deterministic(true))
	return b, err == nil
}
