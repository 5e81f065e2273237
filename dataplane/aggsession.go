package dataplane

import (
	"container/list"
	"context"
	"crypto/sha256"
	"strings"
	"sync"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Aggregate sessions.
//
// An aggregate's client session handle is a sealed sessionBinding (the
// same key ring and format as a server route's handle) whose route field is
// tagged (aggTag) so that no handle of a server route opens on an
// aggregate and vice versa, and whose upstream field holds aggState: the
// protocol version negotiated with the client, the client's capabilities
// (forwarded to members when they are opened, and consulted for URL-mode
// elicitation) and the members' own session ids as opened at initialize.
// Any data plane opens the handle; nothing is shared between replicas.
//
// The handle cannot change after initialize, so a member reopened later
// (its session expired, it restarted, or it could not be opened at
// initialize) has its new session id kept in reopened, a small bounded
// per-process map keyed by (handle, member); another replica that meets
// the same stale id reopens the member for itself.
//
// The same sealing, with other tags, protects the aggregate's pagination
// cursors (which members still have pages, and their cursors) and the ids
// of members' requests relayed to the client (which member, which id).

const (
	aggTagSession = "\x00agg-session:"
	aggTagCursor  = "\x00agg-cursor:"
	aggTagRequest = "\x00agg-request:"
	// aggRequestIDPrefix starts the id of a member's request relayed to the
	// client (elicitation, sampling, roots).
	aggRequestIDPrefix = "mcpgate-"
	// maxClientCaps bounds the client capabilities kept in the handle.
	maxClientCaps = 2048
	// maxReopened bounds the per-process map of reopened member sessions.
	maxReopened = 8192
)

// aggState is what an aggregate session handle seals.
type aggState struct {
	Version string            `json:"v,omitzero"`
	Caps    jsontext.Value    `json:"c,omitzero"`
	Members map[string]string `json:"m,omitzero"` // server -> member session id
	// Versions holds a member's negotiated protocol version when it differs
	// from Version.
	Versions map[string]string `json:"mv,omitzero"`
}

// sealTagged seals payload for (principal, tag+route).
func (p *Proxy) sealTagged(ctx context.Context, tag, route, principal string, payload []byte) (string, error) {
	return p.sealSession(ctx, sessionBinding{upstream: string(payload), principal: principal, route: tag + route})
}

// openTagged opens a sealed value and checks its binding.
func (p *Proxy) openTagged(ctx context.Context, tag, route, principal, sealed string) ([]byte, error) {
	sctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	s, err := p.keys.openHandle(sctx, sealed)
	if err != nil {
		return nil, err
	}
	if s.principal != principal || s.route != tag+route {
		return nil, errBadHandle
	}
	return []byte(s.upstream), nil
}

func (st *aggState) encode() []byte {
	b, _ := json.Marshal(st, json.Deterministic(true))
	return b
}

func decodeAggState(b []byte) (aggState, error) {
	var st aggState
	if err := json.Unmarshal(b, &st); err != nil {
		return aggState{}, errBadHandle
	}
	return st, nil
}

// elicitURL reports whether the client declared URL-mode elicitation.
func (st *aggState) elicitURL() bool {
	var caps struct {
		Elicitation *struct {
			URL jsontext.Value `json:"url"`
		} `json:"elicitation"`
	}
	if len(st.Caps) == 0 || json.Unmarshal(st.Caps, &caps) != nil {
		return false
	}
	return caps.Elicitation != nil && caps.Elicitation.URL != nil
}

// sessionMap is a bounded map of reopened member sessions, oldest out
// first.
type sessionMap struct {
	mu    sync.Mutex
	max   int
	m     map[string]*list.Element
	order *list.List
}

type sessionEntry struct{ key, sid string }

func newSessionMap(max int) *sessionMap {
	return &sessionMap{max: max, m: map[string]*list.Element{}, order: list.New()}
}

// sessionKey is the map key of member in the client session handle: a
// digest, so the map holds no handle.
func sessionMapKey(handle, member string) string {
	h := sha256.Sum256([]byte(handle))
	return string(h[:16]) + member
}

func (s *sessionMap) get(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return "", false
	}
	return e.Value.(*sessionEntry).sid, true
}

func (s *sessionMap) put(key, sid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok {
		e.Value.(*sessionEntry).sid = sid
		s.order.MoveToBack(e)
		return
	}
	s.m[key] = s.order.PushBack(&sessionEntry{key: key, sid: sid})
	for s.order.Len() > s.max {
		old := s.order.Front()
		s.order.Remove(old)
		delete(s.m, old.Value.(*sessionEntry).key)
	}
}

func (s *sessionMap) drop(prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, e := range s.m {
		if strings.HasPrefix(k, prefix) {
			s.order.Remove(e)
			delete(s.m, k)
		}
	}
}
