package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/dataplane/bridge"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// The aggregator's side of a member: one MCP server reached as a client,
// with the member decision's upstream URL and headers. The transport is an
// interface so that another protocol revision (2026-07-28 stateless
// requests) can plug in a bridge without touching the aggregator.

var (
	// errMemberGone: the member answered 404 to a request in a session: the
	// session expired (or the member restarted); reopen it.
	errMemberGone = errors.New("member session not found")
	// errMemberAuth: the member refused the gateway's credentials (401).
	errMemberAuth = errors.New("member refused the credentials")
	// errMemberFailed: unreachable, timed out, a redirect, an unreadable
	// reply.
	errMemberFailed = errors.New("member unreachable")
	// errMemberNoStream: the member offers no standalone GET stream (405).
	errMemberNoStream = errors.New("member has no GET stream")
	// errMemberLegacy: the member refused a 2026-07-28 request as a server
	// that speaks only 2025-11-25 (nothing was processed).
	errMemberLegacy = errors.New("member speaks only 2025-11-25")
	// errMemberModernOnly: the member refused a 2025-11-25 request as a
	// server that speaks only 2026-07-28 (nothing was processed).
	errMemberModernOnly = errors.New("member speaks only 2026-07-28")
)

// drainTimeout bounds reading what follows a member's response on its
// event stream.
const drainTimeout = 5 * time.Second

// memberTarget is where and how a member is reached.
type memberTarget struct {
	server  string
	url     string
	headers []*authorizev1.Header
	version string // MCP-Protocol-Version negotiated with the client
	// modern: a stateless 2026-07-28 request (no session), with these
	// Mcp-Method / Mcp-Name mirrors.
	modern             bool
	mcpMethod, mcpName string
}

// memberTransport talks to members.
type memberTransport interface {
	// exchange sends one JSON-RPC message in session sid ("" for none).
	// For a request (id != nil) it returns the member's response, after
	// passing every other message of the member's reply (notifications,
	// the member's own requests) to sink, in order. For a notification or
	// a response it returns a nil reply. sid is the session id the member
	// assigned, if it assigned one.
	exchange(ctx context.Context, t memberTarget, sid string, msg []byte, id jsontext.Value, sink func(jsontext.Value)) (reply jsontext.Value, newSID string, err error)
	// stream relays the member's standalone GET stream to sink until it or
	// ctx ends.
	stream(ctx context.Context, t memberTarget, sid string, sink func(jsontext.Value)) error
	// end deletes session sid.
	end(ctx context.Context, t memberTarget, sid string)
}

// httpMembers is the streamable-HTTP (2025-11-25) member transport.
type httpMembers struct {
	client        *http.Client
	headerTimeout time.Duration
	lifetime      time.Duration
	record        func(server string, status int, d time.Duration)
}

func (h *httpMembers) request(ctx context.Context, method string, t memberTarget, sid string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.url, rd)
	if err != nil {
		return nil, errMemberFailed
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch method {
	case http.MethodGet:
		req.Header.Set("Accept", "text/event-stream")
	default:
		req.Header.Set("Accept", "application/json, text/event-stream")
	}
	switch {
	case t.modern:
		req.Header.Set(headerProtocolVersion, protocol20260728)
		req.Header.Set(headerMcpMethod, t.mcpMethod)
		if t.mcpName != "" {
			req.Header.Set(headerMcpName, t.mcpName)
		}
	case t.version != "":
		req.Header.Set(headerProtocolVersion, t.version)
	}
	if sid != "" {
		req.Header.Set(headerSessionID, sid)
	}
	for _, hd := range t.headers {
		req.Header.Set(hd.GetName(), hd.GetValue())
	}
	return req, nil
}

// do runs req with the header timeout; the returned cancel ends the
// exchange.
func (h *httpMembers) do(ctx context.Context, t memberTarget, build func(context.Context) (*http.Request, error)) (*http.Response, context.CancelCauseFunc, error) {
	uctx, cancel := context.WithCancelCause(ctx)
	req, err := build(uctx)
	if err != nil {
		cancel(nil)
		return nil, nil, err
	}
	start := time.Now()
	timer := time.AfterFunc(h.headerTimeout, func() { cancel(errUpstreamHeaderTimeout) })
	resp, err := h.client.Do(req)
	timer.Stop()
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	if h.record != nil {
		h.record(t.server, status, time.Since(start))
	}
	if err != nil {
		cancel(nil)
		return nil, nil, errMemberFailed
	}
	return resp, cancel, nil
}

func (h *httpMembers) statusErr(resp *http.Response, sid string) error {
	switch {
	case resp.StatusCode == http.StatusNotFound && sid != "":
		return errMemberGone
	case resp.StatusCode == http.StatusUnauthorized:
		return errMemberAuth
	case resp.StatusCode >= 300, encodedBody(resp.Header):
		return errMemberFailed
	}
	return nil
}

func (h *httpMembers) exchange(ctx context.Context, t memberTarget, sid string, msg []byte, id jsontext.Value, sink func(jsontext.Value)) (jsontext.Value, string, error) {
	resp, cancel, err := h.do(ctx, t, func(c context.Context) (*http.Request, error) {
		return h.request(c, http.MethodPost, t, sid, msg)
	})
	if err != nil {
		return nil, "", err
	}
	defer cancel(nil)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, smallBody))
		switch {
		case t.modern && bridge.IsLegacyRejection(resp.StatusCode, b):
			return nil, "", errMemberLegacy
		case !t.modern && bridge.IsModernOnlyRejection(resp.StatusCode, b):
			return nil, "", errMemberModernOnly
		}
		return nil, "", errMemberFailed
	}
	if err := h.statusErr(resp, sid); err != nil {
		return nil, "", err
	}
	newSID := resp.Header.Get(headerSessionID)
	if id == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxEventBytes))
		return nil, newSID, nil
	}
	lt := time.AfterFunc(h.lifetime, func() { cancel(errStreamLifetime) })
	defer lt.Stop()
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "text/event-stream" {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxEventBytes+1))
		if err != nil || len(b) > maxEventBytes || !jsontext.Value(b).IsValid() {
			return nil, "", errMemberFailed
		}
		return jsontext.Value(b), newSID, nil
	}
	var reply jsontext.Value
	_ = readSSE(resp.Body, func(data []byte) bool {
		v := jsontext.Value(data)
		if !v.IsValid() {
			return true // not JSON: skipped
		}
		var m struct {
			ID     jsontext.Value `json:"id"`
			Method string         `json:"method"`
		}
		if json.Unmarshal(v, &m) != nil {
			return true
		}
		if m.Method == "" && m.ID != nil && sameID(m.ID, id) {
			reply = v
			return false
		}
		sink(v)
		return true
	})
	if reply == nil {
		return nil, "", errMemberFailed
	}
	// The member ends its stream after the response (as the transport
	// says it should): read to its end so the connection is reused
	// (closing an unread body closes the connection). A member that keeps
	// it open is cut off after drainTimeout.
	drain := time.AfterFunc(drainTimeout, func() { cancel(nil) })
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxEventBytes))
	drain.Stop()
	return reply, newSID, nil
}

func (h *httpMembers) stream(ctx context.Context, t memberTarget, sid string, sink func(jsontext.Value)) error {
	resp, cancel, err := h.do(ctx, t, func(c context.Context) (*http.Request, error) {
		return h.request(c, http.MethodGet, t, sid, nil)
	})
	if err != nil {
		return err
	}
	defer cancel(nil)
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusMethodNotAllowed {
		return errMemberNoStream
	}
	if err := h.statusErr(resp, sid); err != nil {
		return err
	}
	lt := time.AfterFunc(h.lifetime, func() { cancel(errStreamLifetime) })
	defer lt.Stop()
	return readSSE(resp.Body, func(data []byte) bool {
		if v := jsontext.Value(data); v.IsValid() {
			sink(v)
		}
		return true
	})
}

func (h *httpMembers) end(ctx context.Context, t memberTarget, sid string) {
	resp, cancel, err := h.do(ctx, t, func(c context.Context) (*http.Request, error) {
		return h.request(c, http.MethodDelete, t, sid, nil)
	})
	if err != nil {
		return
	}
	defer cancel(nil)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// readSSE calls fn with the data of each event of an event stream until fn
// returns false or the stream ends; events larger than maxEventBytes end
// it.
func readSSE(body io.Reader, fn func(data []byte) bool) error {
	br := sseReaders.Get().(*bufio.Reader)
	br.Reset(body)
	defer func() {
		br.Reset(nil)
		sseReaders.Put(br)
	}()
	var data []byte
	has := false
	for {
		line, err := readLine(br)
		if len(line) > 0 {
			trim := bytes.TrimRight(line, "\r\n")
			switch {
			case len(trim) == 0:
				if has && len(bytes.TrimSpace(data)) > 0 && !fn(data) {
					return nil
				}
				data, has = data[:0], false
			case bytes.HasPrefix(trim, []byte("data:")):
				v := bytes.TrimPrefix(trim[len("data:"):], []byte(" "))
				if has {
					data = append(data, '\n')
				}
				data = append(data, v...)
				has = true
				if len(data) > maxEventBytes {
					return errMemberFailed
				}
			}
		}
		if err != nil {
			if has && len(bytes.TrimSpace(data)) > 0 {
				fn(data)
			}
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// sameID compares two JSON-RPC ids.
func sameID(a, b jsontext.Value) bool {
	return bytes.Equal(a, b) || bytes.Equal(compactID(a), compactID(b))
}

// compactID is id without insignificant whitespace, for comparing ids.
func compactID(id jsontext.Value) []byte {
	v := bytes.Clone(id)
	if err := (*jsontext.Value)(&v).Compact(); err != nil {
		return id
	}
	return v
}
