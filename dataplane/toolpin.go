package dataplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/time/rate"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1/authorizev1connect"
	"github.com/mcpgate/mcpgate/api/wire"
)

// Tool pinning, the data plane's half: every tool of a tools/list reply
// relayed for a server that pins its tools (Allow.tool_pinning) is digested
// (toolDigest) and compared with the pin the Allow carries. A tool without
// a pin, or with another digest, is reported to the control plane
// (pinReporter), which records first-seen digests and pending changes; a
// changed tool is hidden at once when the server blocks changed tools.

// pinnedMembers are the members of a tool definition its digest covers.
var pinnedMembers = []string{"name", "description", "inputSchema", "outputSchema", "annotations"}

// toolDigest returns a tool entry's name and the digest of its definition:
// the hex SHA-256 of the RFC 8785 (JSON Canonicalization Scheme) form of
// an object holding exactly the tool's name, description, inputSchema,
// outputSchema and annotations members that are present (absent ones are
// left out, a null stays null). JCS sorts object members by their UTF-16
// code units and writes numbers and strings in one canonical form, so two
// spellings of the same JSON value digest alike, and any change of value
// does not. The entry must decode exactly: a duplicate member or a member
// whose name is a case variant of a digested one (which a lenient client
// might read instead) is errUnchecked, as is a name that is not a string.
func toolDigest(tv jsontext.Value) (name, digest string, err error) {
	if tv.Kind() != '{' {
		return "", "", errUnchecked
	}
	ms, err := objectMembers(tv, pinnedMembers)
	if err != nil {
		return "", "", err
	}
	i := find(ms, "name")
	if i < 0 || ms[i].value.Kind() != '"' {
		return "", "", errUnchecked
	}
	n, err := jsontext.AppendUnquote(nil, ms[i].value)
	if err != nil {
		return "", "", errUnchecked
	}
	var kept []member
	for _, m := range ms {
		for _, p := range pinnedMembers {
			if m.name == p {
				kept = append(kept, m)
			}
		}
	}
	obj, err := encodeObject(kept)
	if err != nil {
		return "", "", errUnchecked
	}
	canon := jsontext.Value(bytes.Clone(obj))
	if err := canon.Canonicalize(); err != nil {
		return "", "", errUnchecked
	}
	sum := sha256.Sum256(canon)
	return string(n), hex.EncodeToString(sum[:]), nil
}

// maxReportedPerReply bounds the tools one relayed reply reports.
const maxReportedPerReply = wire.MaxToolDigestReport

// pinCheck is the tool-pinning part of a toolFilter for one request: the
// Allow's pins, and what the reply showed that the control plane should
// learn.
type pinCheck struct {
	pins, pending map[string]string
	block         bool

	mu       sync.Mutex
	reported map[string]string // tool → digest seen without its pin
}

// check decides one tool entry of a reply: whether to keep it, and
// records a report when its digest is not its pin.
func (c *pinCheck) check(tv jsontext.Value) bool {
	name, digest, err := toolDigest(tv)
	if err != nil || !wire.ValidPinnedToolName(name) {
		// Nothing can be pinned for it: refused when changes block.
		return !c.block
	}
	pin, pinned := c.pins[name]
	if pinned && pin == digest {
		return true
	}
	if pinned && c.pending[name] == digest {
		// A change the control plane recorded already.
		return !c.block
	}
	c.mu.Lock()
	if c.reported == nil {
		c.reported = map[string]string{}
	}
	if len(c.reported) < maxReportedPerReply {
		c.reported[name] = digest
	}
	c.mu.Unlock()
	// First seen: trusted (it becomes the pin). Changed: hidden under
	// block.
	return !pinned || !c.block
}

// reports returns what check recorded, sorted by tool.
func (c *pinCheck) reports() []*authorizev1.ToolDigestReport {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*authorizev1.ToolDigestReport, 0, len(c.reported))
	for t, d := range c.reported {
		out = append(out, &authorizev1.ToolDigestReport{Tool: t, Digest: d})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetTool() < out[j].GetTool() })
	return out
}

// withPins returns f extended with the Allow's tool pinning (a new filter
// when f is nil), or f unchanged when the server pins nothing.
func (f *toolFilter) withPins(tp *authorizev1.ToolPinning) *toolFilter {
	if tp == nil {
		return f
	}
	if f == nil {
		f = &toolFilter{allow: &authorizev1.Allow{}} // shows everything
	}
	f.pins = &pinCheck{pins: tp.GetPins(), pending: tp.GetPending(), block: tp.GetBlock()}
	return f
}

// Bounds of the reporter.
const (
	// pinReportEvery and pinReportBurst rate-limit reports per route.
	pinReportEvery = time.Second
	pinReportBurst = 4
	// maxPendingPerRoute bounds what waits to be reported per route.
	maxPendingPerRoute = 256
	pinReportTimeout   = 10 * time.Second
)

// pinReporter sends tool digest reports to the control plane: coalesced per
// route (one tool's latest digest waits once), at most maxReportedPerReply
// tools per call and rate-limited per route. What the control plane knows
// already (the Allow's pins and pending digests) is never reported, and a
// report that tells it nothing new costs it no etcd write. Routes come only
// from ALLOW decisions, so they are configured servers.
type pinReporter struct {
	log  *slog.Logger
	send func(ctx context.Context, route string, tools []*authorizev1.ToolDigestReport) error

	mu     sync.Mutex
	routes map[string]*routeReports
}

type routeReports struct {
	pending  map[string]string
	lim      *rate.Limiter
	inFlight bool
}

func newPinReporter(log *slog.Logger, cp *controlPlane) *pinReporter {
	return &pinReporter{log: log, routes: map[string]*routeReports{},
		send: func(ctx context.Context, route string, tools []*authorizev1.ToolDigestReport) error {
			_, err := call(ctx, cp, func(ctx context.Context, c authorizev1connect.AuthorizeServiceClient) (*authorizev1.ReportToolDigestsResponse, error) {
				return c.ReportToolDigests(ctx, &authorizev1.ReportToolDigestsRequest{Route: route, Tools: tools})
			})
			return err
		}}
}

// add queues reports for route and starts a sender unless one runs.
func (r *pinReporter) add(route string, reports []*authorizev1.ToolDigestReport) {
	if len(reports) == 0 {
		return
	}
	r.mu.Lock()
	rr := r.routes[route]
	if rr == nil {
		rr = &routeReports{pending: map[string]string{}, lim: rate.NewLimiter(rate.Every(pinReportEvery), pinReportBurst)}
		r.routes[route] = rr
	}
	for _, t := range reports {
		if _, ok := rr.pending[t.GetTool()]; ok || len(rr.pending) < maxPendingPerRoute {
			rr.pending[t.GetTool()] = t.GetDigest()
		}
	}
	start := len(rr.pending) > 0 && !rr.inFlight
	if start {
		rr.inFlight = true
	}
	r.mu.Unlock()
	if start {
		go r.flush(route, rr)
	}
}

// flush sends rr's pending reports, a batch at a time, as the route's
// limiter allows, until none is left.
func (r *pinReporter) flush(route string, rr *routeReports) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), pinReportTimeout)
		err := rr.lim.Wait(ctx)
		r.mu.Lock()
		if err != nil || len(rr.pending) == 0 {
			rr.inFlight = false
			r.mu.Unlock()
			cancel()
			return
		}
		batch := make([]*authorizev1.ToolDigestReport, 0, min(len(rr.pending), maxReportedPerReply))
		for t, d := range rr.pending {
			if len(batch) == maxReportedPerReply {
				break
			}
			batch = append(batch, &authorizev1.ToolDigestReport{Tool: t, Digest: d})
			delete(rr.pending, t)
		}
		r.mu.Unlock()
		sort.Slice(batch, func(i, j int) bool { return batch[i].GetTool() < batch[j].GetTool() })
		if err := r.send(ctx, route, batch); err != nil {
			// Dropped: a later reply showing them reports them again.
			r.log.WarnContext(ctx, "report tool digests failed", slog.String("route", route), slog.String("code", codeOf(err)))
		}
		cancel()
	}
}
