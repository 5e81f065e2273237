// Package bridge lets a 2026-07-28 client use an upstream MCP server that
// speaks only 2025-11-25, one upstream (route or aggregate member) at a
// time. It is the data plane's and the aggregator's common piece:
//
//   - [Versions] remembers, per process, which upstream URLs answered a
//     2026-07-28 request with the Go SDK's stateful rejection (HTTP 400,
//     UnsupportedProtocolVersion -32022 listing no 2026 version): the
//     gateway probes by forwarding the first 2026 request as it is and
//     bridges from then on ([IsLegacyRejection]). Nothing is configured.
//   - [Sessions] opens and caches the upstream sessions a bridged client
//     needs: initialize with the capabilities and clientInfo the client sent
//     in _meta, then notifications/initialized; cached in a bounded LRU
//     keyed by [Key] (principal, route, upstream URL, digest of the client's
//     _meta), an optimisation only: a session the upstream forgot (404) is
//     dropped and opened again ([Sessions.Drop]).
//   - [Discover] answers server/discover from the upstream's initialize
//     result; [Downgrade] turns a 2026-07-28 request into the 2025-11-25
//     request sent on the upstream session.
//
// No credential is held here beyond the upstream headers the caller passes
// for each exchange; the cache holds session ids and initialize results.
package bridge

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/sync/singleflight"
)

// Protocol versions and _meta keys of 2026-07-28 (SEP-2575), as the Go SDK
// v1.8.0 names them.
const (
	Version20260728 = "2026-07-28"
	Version20251125 = "2025-11-25"

	MetaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	MetaClientInfo         = "io.modelcontextprotocol/clientInfo"
	MetaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	MetaLogLevel           = "io.modelcontextprotocol/logLevel"
	MetaServerInfo         = "io.modelcontextprotocol/serverInfo"
)

// Errors of the package.
var (
	// ErrMalformed: a message that is not the JSON-RPC the bridge expects.
	ErrMalformed = errors.New("bridge: malformed message")
	// ErrUpstream: the upstream did not open a session.
	ErrUpstream = errors.New("bridge: upstream refused the session")
	// ErrUnauthorized: the upstream answered 401 (its credentials, from
	// the decision, were refused).
	ErrUnauthorized = errors.New("bridge: upstream refused the credentials")
)

// maxReply bounds an initialize or discover reply held in memory (and so
// what one cached session holds).
const maxReply = 64 << 10

// Versions is a per-process record of what upstreams speak: those known
// to speak only 2025-11-25 (they refused a 2026-07-28 request as such) and
// those known to speak only 2026-07-28 (they refused a 2025-style request
// as such). Nothing is probed ahead: an upstream's own refusal of a request
// it did not process teaches the gateway. The zero value is ready;
// it holds at most Max upstreams (DefaultMaxVersions when zero),
// forgetting the oldest.
type Versions struct {
	Max int

	mu    sync.Mutex
	state map[string]uint8
	order []string
}

const (
	stLegacy     uint8 = 1 << iota // speaks only 2025-11-25
	stModernOnly                   // speaks only 2026-07-28 or later
)

// DefaultMaxVersions bounds Versions.
const DefaultMaxVersions = 4096

func (v *Versions) get(url string) uint8 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state[url]
}

func (v *Versions) set(url string, bits uint8) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == nil {
		v.state = map[string]uint8{}
	}
	if _, ok := v.state[url]; !ok {
		limit := v.Max
		if limit <= 0 {
			limit = DefaultMaxVersions
		}
		for len(v.order) >= limit {
			delete(v.state, v.order[0])
			v.order = v.order[1:]
		}
		v.order = append(v.order, url)
	}
	v.state[url] |= bits
}

// Legacy reports whether url is known to speak only 2025-11-25.
func (v *Versions) Legacy(url string) bool { return v.get(url)&stLegacy != 0 }

// SetLegacy records that url speaks only 2025-11-25.
func (v *Versions) SetLegacy(url string) { v.set(url, stLegacy) }

// ModernOnly reports whether url is known to speak only 2026-07-28 or
// later.
func (v *Versions) ModernOnly(url string) bool { return v.get(url)&stModernOnly != 0 }

// SetModernOnly records that url speaks only 2026-07-28 or later.
func (v *Versions) SetModernOnly(url string) { v.set(url, stModernOnly) }

// IsModernOnlyRejection reports whether an upstream's answer to a
// 2025-style request says it speaks only 2026-07-28 or later: HTTP 400
// with the Go SDK's plain-text "Unsupported protocol version (supported
// versions: …)", or JSON-RPC error -32022 with data.supported, listing no
// version older than 2026-07-28.
func IsModernOnlyRejection(status int, body []byte) bool {
	if status != http.StatusBadRequest {
		return false
	}
	var supported []string
	const sdkText = "Bad Request: Unsupported protocol version (supported versions: "
	if t, ok := strings.CutPrefix(strings.TrimSpace(string(body)), sdkText); ok {
		list, ok := strings.CutSuffix(t, ")")
		if !ok {
			return false
		}
		supported = strings.Split(list, ",")
	} else {
		var msg struct {
			Error *struct {
				Code int64 `json:"code"`
				Data *struct {
					Supported []string `json:"supported"`
				} `json:"data"`
			} `json:"error"`
		}
		if err := unmarshal(body, &msg); err != nil || msg.Error == nil || msg.Error.Code != -32022 || msg.Error.Data == nil {
			return false
		}
		supported = msg.Error.Data.Supported
	}
	for _, s := range supported {
		if strings.TrimSpace(s) < Version20260728 {
			return false
		}
	}
	return len(supported) > 0
}

// IsLegacyRejection reports whether an upstream's answer to a 2026-07-28
// request says it speaks only older versions: HTTP 400 with JSON-RPC error
// -32022 whose data.supported lists no version from 2026-07-28 on.
func IsLegacyRejection(status int, body []byte) bool {
	if status != http.StatusBadRequest {
		return false
	}
	var msg struct {
		Error *struct {
			Code int64 `json:"code"`
			Data *struct {
				Supported []string `json:"supported"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := unmarshal(body, &msg); err != nil || msg.Error == nil || msg.Error.Code != -32022 || msg.Error.Data == nil {
		return false
	}
	for _, s := range msg.Error.Data.Supported {
		if s >= Version20260728 {
			return false
		}
	}
	return len(msg.Error.Data.Supported) > 0
}

// IsLegacyDiscover reports whether an upstream's 200 answer to
// server/discover (a JSON body, or an event stream whose first data event
// is the answer) lists only versions older than 2026-07-28, as the Go SDK's
// stateful servers answer.
func IsLegacyDiscover(contentType string, body []byte) bool {
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "text/event-stream" {
		body = firstEventData(body)
	}
	var msg struct {
		Result *struct {
			SupportedVersions []string `json:"supportedVersions"`
		} `json:"result"`
	}
	if err := unmarshal(body, &msg); err != nil || msg.Result == nil || len(msg.Result.SupportedVersions) == 0 {
		return false
	}
	for _, s := range msg.Result.SupportedVersions {
		if s >= Version20260728 {
			return false
		}
	}
	return true
}

// firstEventData is the data of the first SSE event of body that has any.
func firstEventData(body []byte) []byte {
	br := bufio.NewReader(bytes.NewReader(body))
	var data []string
	for {
		line, err := br.ReadString('\n')
		t := strings.TrimRight(line, "\r\n")
		if v, ok := strings.CutPrefix(t, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		} else if t == "" && len(data) > 0 {
			break
		}
		if err != nil {
			break
		}
	}
	return []byte(strings.Join(data, "\n"))
}

// ClientMeta is what a 2026-07-28 request says about its client.
type ClientMeta struct {
	Capabilities jsontext.Value // the clientCapabilities object
	ClientInfo   jsontext.Value // the clientInfo object, or nil
}

// Digest identifies the client's capabilities and info for the session
// cache: two clients that declared the same get the same upstream session.
func (m ClientMeta) Digest() string {
	h := sha256.New()
	c, i := m.Capabilities.Clone(), m.ClientInfo.Clone()
	_ = c.Canonicalize()
	_ = i.Canonicalize()
	h.Write(c)
	h.Write([]byte{0})
	h.Write(i)
	return hex.EncodeToString(h.Sum(nil))
}

// ClientMetaOf reads params._meta of a 2026-07-28 request.
func ClientMetaOf(body []byte) (ClientMeta, error) {
	var msg struct {
		Params struct {
			Meta map[string]jsontext.Value `json:"_meta"`
		} `json:"params"`
	}
	if err := unmarshal(body, &msg); err != nil {
		return ClientMeta{}, ErrMalformed
	}
	caps := msg.Params.Meta[MetaClientCapabilities]
	if caps.Kind() != '{' {
		caps = jsontext.Value(`{}`)
	}
	info := msg.Params.Meta[MetaClientInfo]
	if info.Kind() != '{' {
		info = nil
	}
	return ClientMeta{Capabilities: caps, ClientInfo: info}, nil
}

// Downgrade returns a 2026-07-28 request as the 2025-11-25 request for the
// upstream session: params._meta without the 2026 keys (and without _meta
// at all when nothing else is left). Everything else is kept as sent.
func Downgrade(body []byte) ([]byte, error) {
	top, err := members(body)
	if err != nil {
		return nil, err
	}
	pi := find(top, "params")
	if pi < 0 || top[pi].value.Kind() != '{' {
		return body, nil
	}
	params, err := members(top[pi].value)
	if err != nil {
		return nil, err
	}
	mi := find(params, "_meta")
	if mi < 0 || params[mi].value.Kind() != '{' {
		return body, nil
	}
	meta, err := members(params[mi].value)
	if err != nil {
		return nil, err
	}
	kept := meta[:0]
	for _, m := range meta {
		switch m.name {
		case MetaProtocolVersion, MetaClientInfo, MetaClientCapabilities, MetaLogLevel:
			continue
		}
		kept = append(kept, m)
	}
	if len(kept) == 0 {
		params = append(params[:mi], params[mi+1:]...)
	} else if params[mi].value, err = encode(kept); err != nil {
		return nil, err
	}
	if top[pi].value, err = encode(params); err != nil {
		return nil, err
	}
	return encode(top)
}

// Discover is the server/discover result for request id (compact JSON),
// built from the upstream's initialize result: its capabilities,
// instructions and serverInfo, the versions the gateway speaks to the
// client, and a private, immediately stale cache hint (the result is per
// principal).
func Discover(id string, initResult jsontext.Value) ([]byte, error) {
	var init struct {
		Capabilities jsontext.Value `json:"capabilities"`
		ServerInfo   jsontext.Value `json:"serverInfo"`
		Instructions string         `json:"instructions"`
	}
	if err := unmarshal(initResult, &init); err != nil {
		return nil, ErrMalformed
	}
	caps, err := withoutNotifications(init.Capabilities)
	if err != nil {
		return nil, err
	}
	result := []member{
		{"supportedVersions", jsontext.Value(`["` + Version20260728 + `"]`)},
		{"capabilities", caps},
	}
	if init.Instructions != "" {
		q, err := jsontext.AppendQuote(nil, init.Instructions)
		if err != nil {
			return nil, ErrMalformed
		}
		result = append(result, member{"instructions", q})
	}
	if init.ServerInfo.Kind() == '{' {
		meta, err := encode([]member{{MetaServerInfo, init.ServerInfo}})
		if err != nil {
			return nil, err
		}
		result = append(result, member{"_meta", meta})
	}
	result = append(result,
		member{"ttlMs", jsontext.Value(`0`)},
		member{"cacheScope", jsontext.Value(`"private"`)},
		member{"resultType", jsontext.Value(`"complete"`)})
	rv, err := encode(result)
	if err != nil {
		return nil, err
	}
	return encode([]member{{"jsonrpc", jsontext.Value(`"2.0"`)}, {"id", jsontext.Value(id)}, {"result", rv}})
}

// withoutNotifications is an upstream's initialize capabilities minus what
// a bridged 2026-07-28 client cannot get: listChanged and subscribe
// (notifications travel on the upstream session's GET stream, which the
// bridge does not relay; the client then does not open
// subscriptions/listen).
func withoutNotifications(caps jsontext.Value) (jsontext.Value, error) {
	if caps.Kind() != '{' {
		return jsontext.Value(`{}`), nil
	}
	ms, err := members(caps)
	if err != nil {
		return nil, err
	}
	for i, m := range ms {
		switch m.name {
		case "tools", "prompts", "resources":
		default:
			continue
		}
		if m.value.Kind() != '{' {
			continue
		}
		inner, err := members(m.value)
		if err != nil {
			return nil, err
		}
		inner = slices.DeleteFunc(inner, func(x member) bool { return x.name == "listChanged" || x.name == "subscribe" })
		if ms[i].value, err = encode(inner); err != nil {
			return nil, err
		}
	}
	return encode(ms)
}

// Key identifies a cached upstream session.
type Key struct {
	Principal, Route, URL, Digest string
}

// Session is an open upstream session.
type Session struct {
	ID string
	// Init is the upstream's initialize result.
	Init jsontext.Value
}

// Sessions caches upstream sessions in a bounded LRU. Create with
// NewSessions.
type Sessions struct {
	client *http.Client
	max    int
	group  singleflight.Group

	mu    sync.Mutex
	ll    *list.List // of *entry, most recent first
	byKey map[Key]*list.Element
}

type entry struct {
	key Key
	s   *Session
}

// DefaultMaxSessions bounds Sessions when NewSessions gets zero.
const DefaultMaxSessions = 1024

// NewSessions returns a cache of at most max sessions (DefaultMaxSessions
// when zero) opened with client.
func NewSessions(client *http.Client, max int) *Sessions {
	if max <= 0 {
		max = DefaultMaxSessions
	}
	return &Sessions{client: client, max: max, ll: list.New(), byKey: map[Key]*list.Element{}}
}

// Len is the number of cached sessions.
func (c *Sessions) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

func (c *Sessions) get(k Key) *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*entry).s
	}
	return nil
}

func (c *Sessions) put(k Key, s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		e.Value.(*entry).s = s
		c.ll.MoveToFront(e)
		return
	}
	c.byKey[k] = c.ll.PushFront(&entry{key: k, s: s})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.byKey, last.Value.(*entry).key)
	}
}

// Drop forgets k's session if it is still s (the upstream answered 404 for
// it); a session another request already reopened stays.
func (c *Sessions) Drop(k Key, s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok && e.Value.(*entry).s == s {
		c.ll.Remove(e)
		delete(c.byKey, k)
	}
}

// Open returns the cached session for k, or opens one on url with header
// (the upstream credentials the decision carries, never the client's) for
// a client that declared meta. Concurrent opens of one key share one
// initialize.
func (c *Sessions) Open(ctx context.Context, k Key, url string, header http.Header, meta ClientMeta) (*Session, error) {
	if s := c.get(k); s != nil {
		return s, nil
	}
	v, err, _ := c.group.Do(fmt.Sprintf("%q|%q|%q|%q", k.Principal, k.Route, k.URL, k.Digest), func() (any, error) {
		if s := c.get(k); s != nil {
			return s, nil
		}
		s, err := c.initialize(ctx, url, header, meta)
		if err != nil {
			return nil, err
		}
		c.put(k, s)
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Session), nil
}

// initialize runs initialize and notifications/initialized.
func (c *Sessions) initialize(ctx context.Context, url string, header http.Header, meta ClientMeta) (*Session, error) {
	info := meta.ClientInfo
	if info == nil {
		info = jsontext.Value(`{"name":"mcpgate-bridge","version":"1"}`)
	}
	params, err := encode([]member{
		{"protocolVersion", jsontext.Value(`"` + Version20251125 + `"`)},
		{"capabilities", meta.Capabilities},
		{"clientInfo", info},
	})
	if err != nil {
		return nil, ErrMalformed
	}
	body, err := encode([]member{{"jsonrpc", jsontext.Value(`"2.0"`)}, {"id", jsontext.Value(`"mcpgate-bridge-init"`)}, {"method", jsontext.Value(`"initialize"`)}, {"params", params}})
	if err != nil {
		return nil, ErrMalformed
	}
	resp, err := c.post(ctx, url, header, "", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	id := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, ErrUnauthorized
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: initialize status %d", ErrUpstream, resp.StatusCode)
	}
	result, err := readResult(resp)
	if err != nil {
		return nil, err
	}
	n, err := c.post(ctx, url, header, id, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(n.Body, maxReply))
	n.Body.Close()
	if n.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%w: notifications/initialized status %d", ErrUpstream, n.StatusCode)
	}
	return &Session{ID: id, Init: result}, nil
}

func (c *Sessions) post(ctx context.Context, url string, header http.Header, session string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: bad URL", ErrUpstream)
	}
	for k, vs := range header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", Version20251125)
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	return resp, nil
}

// readResult reads the initialize response's result, from a JSON body or
// the first data event of an event stream.
func readResult(resp *http.Response) (jsontext.Value, error) {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var msg []byte
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	msg = b
	if mt == "text/event-stream" {
		msg = firstEventData(b)
	}
	var out struct {
		Result jsontext.Value `json:"result"`
	}
	if err := unmarshal(msg, &out); err != nil || out.Result.Kind() != '{' {
		return nil, fmt.Errorf("%w: initialize answered without a result", ErrUpstream)
	}
	return out.Result.Clone(), nil
}
