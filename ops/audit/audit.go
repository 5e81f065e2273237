// Package audit writes the gateway's audit trail: exactly one JSON line per
// MCP request served by a data plane, one per admin write on a control
// plane and one per identity-provider event (a sign-in, or the re-assertion
// of a person's groups at a gateway refresh). Events are typed records with no free-form fields, so no header,
// credential, token or argument can reach the log: credentials appear only
// as a key id prefix, sessions only as a hash of their handle.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Event kinds.
const (
	KindRequest = "mcp_request"
	KindAdmin   = "admin_write"
	KindIdP     = "idp"
	// KindToolChanged: an upstream tool's definition differs from the
	// one pinned (tool pinning), written once per change.
	KindToolChanged = "tool_changed"
)

// DigestPrefixLen is how much of a tool definition digest an event names.
const DigestPrefixLen = 12

// IdP events and outcomes.
const (
	IdPSignIn   = "signin"   // /oauth/idp/callback
	IdPReassert = "reassert" // groups asserted again at a gateway refresh

	IdPOK      = "ok"      // signed in, or groups re-asserted
	IdPRefused = "refused" // the person is not signed in / the refresh is refused
	IdPFailed  = "failed"  // the provider or the store could not be reached
)

// maxGroups bounds the group lists of an IdP event (the store keeps at
// most 256 asserted groups per principal).
const maxGroups = 256

// maxField bounds every string field: clients choose tool names and
// routes.
const maxField = 128

// Request is one MCP request as served by a data plane.
type Request struct {
	Time time.Time
	// Principal the credential resolved to ("" when none did).
	Principal string
	// KeyID is the API key's id; only its prefix is written.
	KeyID     string
	Route     string
	Method    string // JSON-RPC method ("" for GET and DELETE)
	Tool      string // params.name of tools/call
	Decision  string // allow, challenge, deny, not_found, error, rejected
	Reason    string // the control plane's reason code, or the data plane's
	Rule      string // the policy rule behind a deny (a policy id or server:<list>)
	Limit     string // the rate limit behind a rate_limited refusal (its id)
	Status    int    // HTTP status sent to the client
	Upstream  int    // upstream HTTP status (0: not forwarded)
	Latency   time.Duration
	SessionID string // the gateway session handle; only its hash is written
	DataPlane string // which data plane served it (its public URL)
	// Cached: the decision was a reused ALLOW (the data plane's decision
	// cache), not an Authorize call.
	Cached bool
}

// Admin is one admin write on a control plane.
type Admin struct {
	Time      time.Time
	Principal string
	KeyID     string
	Procedure string // the Connect procedure, e.g. /mcpgate.config.v1.KeyService/RevokeKey
	Object    string // the object's name or id, when the request names one
	Code      string // "ok" or the Connect code
	Revision  int64  // etcd revision of the write, when known
}

// IdP is one identity-provider event on a control plane. It names who
// (the principal and the claim the provider asserted), never a token.
type IdP struct {
	Time  time.Time
	Event string // IdPSignIn or IdPReassert
	IdP   string // the identity provider's configured name
	// Principal the person maps to ("" when the sign-in was refused before
	// a principal was known).
	Principal string
	// Subject is the principal claim's value the provider asserted (e.g.
	// the email), when it was read.
	Subject string
	Outcome string // IdPOK, IdPRefused or IdPFailed
	Reason  string // a fixed reason code when not IdPOK
	// Created is set when the sign-in created the principal (just in time).
	Created bool
	// GroupsAdded and GroupsRemoved are the provider's asserted groups
	// that this event added to or removed from the principal.
	GroupsAdded, GroupsRemoved []string
}

// ToolChanged is one change of an upstream tool's definition, seen by a
// data plane and recorded by a control plane.
type ToolChanged struct {
	Time   time.Time
	Server string
	Tool   string
	// OldDigest is the approved digest, NewDigest the one seen (hex
	// SHA-256); only their first DigestPrefixLen characters are written.
	OldDigest, NewDigest string
	// Blocked: the server blocks changed tools (on_tool_change block).
	Blocked bool
}

type toolChangedLine struct {
	Time      string `json:"time"`
	Kind      string `json:"kind"`
	Server    string `json:"server"`
	Tool      string `json:"tool"`
	OldDigest string `json:"old_digest"`
	NewDigest string `json:"new_digest"`
	Blocked   bool   `json:"blocked"`
}

// ToolChanged writes one tool_changed event.
func (l *Logger) ToolChanged(ev ToolChanged) error {
	if l == nil {
		return nil
	}
	return l.write(toolChangedLine{
		Time:      l.stamp(ev.Time),
		Kind:      KindToolChanged,
		Server:    clip(ev.Server),
		Tool:      clip(ev.Tool),
		OldDigest: clip(ev.OldDigest[:min(len(ev.OldDigest), DigestPrefixLen)]),
		NewDigest: clip(ev.NewDigest[:min(len(ev.NewDigest), DigestPrefixLen)]),
		Blocked:   ev.Blocked,
	})
}

type idpLine struct {
	Time          string   `json:"time"`
	Kind          string   `json:"kind"`
	Event         string   `json:"event"`
	IdP           string   `json:"idp"`
	Principal     string   `json:"principal,omitempty"`
	Subject       string   `json:"subject,omitempty"`
	Outcome       string   `json:"outcome"`
	Reason        string   `json:"reason,omitempty"`
	Created       bool     `json:"created,omitempty"`
	GroupsAdded   []string `json:"groups_added,omitempty"`
	GroupsRemoved []string `json:"groups_removed,omitempty"`
}

type requestLine struct {
	Time        string  `json:"time"`
	Kind        string  `json:"kind"`
	Principal   string  `json:"principal,omitempty"`
	KeyPrefix   string  `json:"key_id_prefix,omitempty"`
	Route       string  `json:"route"`
	Method      string  `json:"method,omitempty"`
	Tool        string  `json:"tool,omitempty"`
	Decision    string  `json:"decision"`
	Reason      string  `json:"reason,omitempty"`
	Rule        string  `json:"rule_id,omitempty"`
	Limit       string  `json:"limit_id,omitempty"`
	Status      int     `json:"status"`
	Upstream    int     `json:"upstream_status,omitempty"`
	LatencyMS   float64 `json:"latency_ms"`
	SessionHash string  `json:"session_hash,omitempty"`
	DataPlane   string  `json:"data_plane,omitempty"`
	Cached      bool    `json:"cached,omitempty"`
}

type adminLine struct {
	Time      string `json:"time"`
	Kind      string `json:"kind"`
	Principal string `json:"principal,omitempty"`
	KeyPrefix string `json:"key_id_prefix,omitempty"`
	Procedure string `json:"procedure"`
	Object    string `json:"object,omitempty"`
	Code      string `json:"code"`
	Revision  int64  `json:"revision,omitempty"`
}

// Logger writes events as JSON lines. A nil *Logger discards them.
//
// A Logger from New writes each event before returning (serialised, so
// concurrent events never interleave). A Logger from NewBuffered or Open
// never makes its caller wait for the writer: an event is encoded on the
// caller's goroutine and queued; one writer goroutine writes the queue in
// order, batching what has piled up into one write. When the queue is full
// (the writer is stuck or slower than the traffic) the event is dropped and
// counted (Dropped, exported as mcpgate_audit_dropped_events_total), and
// the caller gets ErrDropped: the request path is never held up by the
// audit sink, and nothing is lost silently. Close writes what is queued.
type Logger struct {
	mu     sync.RWMutex // New: serialises writes; buffered: guards closed (senders share it)
	w      io.Writer
	closer io.Closer
	now    func() time.Time

	// Buffered loggers only.
	queue   chan []byte
	closed  bool
	done    chan struct{}
	dropped atomic.Uint64
}

// DefaultBufferEvents is the queue length of Open's loggers: at 10,000
// requests a second, a writer may stall for most of a second before
// anything is dropped.
const DefaultBufferEvents = 8192

// maxBatch bounds one write of queued events.
const maxBatch = 256 << 10

// ErrDropped is returned when a buffered logger's queue is full or the
// logger is closed; the event is counted in Dropped.
var ErrDropped = errors.New("audit: event dropped (queue full or logger closed)")

// New writes events to w synchronously.
func New(w io.Writer) *Logger { return &Logger{w: w, now: time.Now} }

// NewBuffered writes events to w from one writer goroutine through a queue
// of size events (DefaultBufferEvents when size <= 0). Close it to write
// what is queued and stop the goroutine.
func NewBuffered(w io.Writer, size int) *Logger {
	if size <= 0 {
		size = DefaultBufferEvents
	}
	l := &Logger{w: w, now: time.Now, queue: make(chan []byte, size), done: make(chan struct{})}
	go l.writeLoop()
	return l
}

// Open returns a buffered logger (NewBuffered) for dest: "" disables
// auditing (nil logger), "stdout" and "-" write to standard output,
// "stderr" to standard error, and anything else is a file path opened for
// appending (created 0600).
func Open(dest string) (*Logger, error) {
	switch dest {
	case "":
		return nil, nil
	case "stdout", "-":
		return NewBuffered(os.Stdout, 0), nil
	case "stderr":
		return NewBuffered(os.Stderr, 0), nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	l := NewBuffered(f, 0)
	l.closer = f
	return l, nil
}

// Dropped is the number of events a buffered logger did not write: queue
// full, logger closed, or the write failed. Zero for a nil logger.
func (l *Logger) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Close writes the queued events (buffered loggers), then closes the file
// Open opened. Events after Close are dropped (and counted).
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	if l.queue != nil {
		l.mu.Lock()
		if !l.closed {
			l.closed = true
			close(l.queue)
		}
		l.mu.Unlock()
		<-l.done
	}
	if l.closer == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.closer
	l.closer = nil
	if c == nil {
		return nil
	}
	return c.Close()
}

// writeLoop writes the queue in order, batching what is waiting.
func (l *Logger) writeLoop() {
	defer close(l.done)
	var buf []byte
	for line := range l.queue {
		buf = append(buf[:0], line...)
		n := 1
	batch:
		for len(buf) < maxBatch {
			select {
			case more, ok := <-l.queue:
				if !ok {
					break batch
				}
				buf = append(buf, more...)
				n++
			default:
				break batch
			}
		}
		if _, err := l.w.Write(buf); err != nil {
			l.dropped.Add(uint64(n))
		}
		if cap(buf) > 4*maxBatch {
			buf = nil
		}
	}
}

// Request writes one MCP request event.
func (l *Logger) Request(ev Request) error {
	if l == nil {
		return nil
	}
	return l.write(requestLine{
		Time:        l.stamp(ev.Time),
		Kind:        KindRequest,
		Principal:   clip(ev.Principal),
		KeyPrefix:   KeyIDPrefix(ev.KeyID),
		Route:       clip(ev.Route),
		Method:      clip(ev.Method),
		Tool:        clip(ev.Tool),
		Decision:    clip(ev.Decision),
		Reason:      clip(ev.Reason),
		Rule:        clip(ev.Rule),
		Limit:       clip(ev.Limit),
		Status:      ev.Status,
		Upstream:    ev.Upstream,
		LatencyMS:   float64(ev.Latency.Microseconds()) / 1000,
		SessionHash: SessionHash(ev.SessionID),
		DataPlane:   clip(ev.DataPlane),
		Cached:      ev.Cached,
	})
}

// Admin writes one admin write event.
func (l *Logger) Admin(ev Admin) error {
	if l == nil {
		return nil
	}
	return l.write(adminLine{
		Time:      l.stamp(ev.Time),
		Kind:      KindAdmin,
		Principal: clip(ev.Principal),
		KeyPrefix: KeyIDPrefix(ev.KeyID),
		Procedure: clip(ev.Procedure),
		Object:    clip(ev.Object),
		Code:      clip(ev.Code),
		Revision:  ev.Revision,
	})
}

// IdP writes one identity-provider event.
func (l *Logger) IdP(ev IdP) error {
	if l == nil {
		return nil
	}
	return l.write(idpLine{
		Time:          l.stamp(ev.Time),
		Kind:          KindIdP,
		Event:         clip(ev.Event),
		IdP:           clip(ev.IdP),
		Principal:     clip(ev.Principal),
		Subject:       clip(ev.Subject),
		Outcome:       clip(ev.Outcome),
		Reason:        clip(ev.Reason),
		Created:       ev.Created,
		GroupsAdded:   clipAll(ev.GroupsAdded),
		GroupsRemoved: clipAll(ev.GroupsRemoved),
	})
}

// clipAll bounds a list of client- or provider-chosen names.
func clipAll(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, 0, min(len(ss), maxGroups))
	for _, s := range ss[:min(len(ss), maxGroups)] {
		out = append(out, clip(s))
	}
	return out
}

func (l *Logger) stamp(t time.Time) string {
	if t.IsZero() {
		t = l.now()
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (l *Logger) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	b = append(b, '\n')
	if l.queue != nil {
		return l.enqueue(b)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(b); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// enqueue hands line to the writer goroutine without waiting for it.
func (l *Logger) enqueue(line []byte) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if !l.closed {
		select {
		case l.queue <- line:
			return nil
		default:
		}
	}
	l.dropped.Add(1)
	return ErrDropped
}

// KeyIDPrefix is the first 8 characters of a key id: enough to find the key
// with `mcpgate keys list`, never the key.
func KeyIDPrefix(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// SessionHash is a short SHA-256 of a session handle, so events of one
// session can be correlated without the handle (a bearer capability) being
// logged.
func SessionHash(handle string) string {
	if handle == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(handle))
	return hex.EncodeToString(sum[:8])
}

// clip bounds a client-chosen string and keeps it valid UTF-8.
func clip(s string) string {
	if len(s) <= maxField {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	s = s[:maxField]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
