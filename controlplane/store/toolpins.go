package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
	storev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/store/v1"
)

// KindToolPins holds each server's pinned tool definitions (cached), one
// record per server.
const KindToolPins = "toolpins"

// MaxToolPins bounds the tools pinned per server: first-seen reports of
// more tools are dropped, so no upstream (nor any principal) can make the
// gateway store an unbounded number of records.
const MaxToolPins = 512

// toolPinAttempts bounds the compare-and-swap retries of a pin write.
const toolPinAttempts = 8

// ErrNoPendingChange: ApproveToolPin found no pending digest (or not the
// one named).
var ErrNoPendingChange = errors.New("no pending tool change")

// ToolPins is a server's decoded pins: the record and, computed once per
// change, the tool → digest maps every decision hands to the data plane.
// Nothing may modify them: decisions share them.
type ToolPins struct {
	Record *storev1.ToolPinsRecord
	// Approved maps every pinned tool to its approved digest, Pending the
	// tools with a pending change to that digest (nil when none).
	Approved, Pending map[string]string
}

// GetRecord returns the record (nil for a nil ToolPins).
func (t *ToolPins) GetRecord() *storev1.ToolPinsRecord {
	if t == nil {
		return nil
	}
	return t.Record
}

// NewToolPins returns rec's decoded form.
func NewToolPins(rec *storev1.ToolPinsRecord) *ToolPins {
	tp := &ToolPins{Record: rec, Approved: make(map[string]string, len(rec.GetPins()))}
	for name, p := range rec.GetPins() {
		tp.Approved[name] = p.GetApprovedDigest()
		if d := p.GetPendingDigest(); d != "" {
			if tp.Pending == nil {
				tp.Pending = map[string]string{}
			}
			tp.Pending[name] = d
		}
	}
	return tp
}

func decodeToolPins(_ string, value []byte, _ int64) (any, error) {
	var r storev1.ToolPinsRecord
	if err := proto.Unmarshal(value, &r); err != nil {
		return nil, fmt.Errorf("decode tool pins: %w", err)
	}
	return NewToolPins(&r), nil
}

// ToolPins returns the cached pins of server.
func (s *Store) ToolPins(server string) (*ToolPins, bool) {
	return cached[*ToolPins](s.cache, KindToolPins, server)
}

// ToolDigest is one tool's digest as a data plane saw it.
type ToolDigest struct {
	Tool, Digest string
}

// ToolChange is a change RecordToolDigests recorded: the tool's approved
// digest and the new pending one.
type ToolChange struct {
	Tool, Old, New string
}

// RecordToolDigests records what a data plane saw of server's tools: a tool
// without a pin gets one with its digest approved (first seen, while the
// server has fewer than MaxToolPins); a pinned tool seen with another
// digest than its approved and pending ones gets that digest as pending
// (returned in changes, once per change); a tool seen again with its
// approved digest clears a pending one. It never changes an approved
// digest. The write is one compare-and-swap on the record (create-only
// when there is none), retried a few times on a race, and skipped when
// nothing changes.
func (s *Store) RecordToolDigests(ctx context.Context, server string, seen []ToolDigest, now time.Time) (changes []ToolChange, err error) {
	for range toolPinAttempts {
		b, rev, gerr := s.Get(ctx, KindToolPins, server)
		rec := &storev1.ToolPinsRecord{Server: server}
		switch {
		case errors.Is(gerr, ErrNotFound):
			rev = 0
		case gerr != nil:
			return nil, gerr
		default:
			if err := proto.Unmarshal(b, rec); err != nil {
				return nil, fmt.Errorf("decode tool pins: %w: %w", ErrNotFound, ErrCorrupt)
			}
		}
		if rec.Pins == nil {
			rec.Pins = map[string]*configv1.ToolPin{}
		}
		changes = changes[:0]
		dirty := false
		ts := timestamppb.New(now)
		for _, t := range seen {
			p, ok := rec.Pins[t.Tool]
			switch {
			case !ok:
				if len(rec.Pins) >= MaxToolPins {
					continue
				}
				rec.Pins[t.Tool] = &configv1.ToolPin{Tool: t.Tool, ApprovedDigest: t.Digest, FirstSeenTime: ts}
				dirty = true
			case t.Digest == p.GetApprovedDigest():
				// The approved definition is back: nothing is pending.
				if p.GetPendingDigest() != "" {
					p.PendingDigest, p.ChangeTime = "", nil
					dirty = true
				}
			case t.Digest != p.GetPendingDigest():
				p.PendingDigest, p.ChangeTime = t.Digest, ts
				changes = append(changes, ToolChange{Tool: t.Tool, Old: p.GetApprovedDigest(), New: t.Digest})
				dirty = true
			}
		}
		if !dirty {
			return nil, nil
		}
		nb, err := proto.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("marshal tool pins: %w", err)
		}
		wrev, err := s.put(ctx, key(KindToolPins, server), nb, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return changes, s.WaitRevision(ctx, wrev)
	}
	return nil, fmt.Errorf("record tool digests: %w", ErrConflict)
}

// ApproveToolPin makes tool's pending digest on server its approved one,
// when the pending digest starts with prefix (any, when prefix is empty).
// It returns the pin as stored, ErrNotFound when the tool has no pin and
// ErrNoPendingChange when nothing (matching) is pending.
func (s *Store) ApproveToolPin(ctx context.Context, server, tool, prefix, by string, now time.Time) (*configv1.ToolPin, error) {
	for range toolPinAttempts {
		b, rev, err := s.Get(ctx, KindToolPins, server)
		if err != nil {
			return nil, err
		}
		rec := &storev1.ToolPinsRecord{}
		if err := proto.Unmarshal(b, rec); err != nil {
			return nil, fmt.Errorf("decode tool pins: %w: %w", ErrNotFound, ErrCorrupt)
		}
		p, ok := rec.GetPins()[tool]
		if !ok {
			return nil, fmt.Errorf("tool pin: %w", ErrNotFound)
		}
		if p.GetPendingDigest() == "" || !strings.HasPrefix(p.GetPendingDigest(), prefix) {
			return nil, ErrNoPendingChange
		}
		p.ApprovedDigest, p.PendingDigest, p.ChangeTime = p.GetPendingDigest(), "", nil
		p.ApproveTime, p.ApprovedBy = timestamppb.New(now), by
		nb, err := proto.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("marshal tool pins: %w", err)
		}
		wrev, err := s.put(ctx, key(KindToolPins, server), nb, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return proto.CloneOf(p), s.WaitRevision(ctx, wrev)
	}
	return nil, fmt.Errorf("approve tool pin: %w", ErrConflict)
}

// SortedToolPins returns rec's pins sorted by tool.
func SortedToolPins(rec *storev1.ToolPinsRecord) []*configv1.ToolPin {
	out := make([]*configv1.ToolPin, 0, len(rec.GetPins()))
	for _, p := range rec.GetPins() {
		out = append(out, proto.CloneOf(p))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetTool() < out[j].GetTool() })
	return out
}

// DeleteToolPins deletes server's pins (after the server was deleted: a
// server created again under the name starts unpinned) and returns the
// revision of the delete, 0 when there were none.
func (s *Store) DeleteToolPins(ctx context.Context, server string) (int64, error) {
	rev, err := s.del(ctx, key(KindToolPins, server), 0)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	return rev, err
}
