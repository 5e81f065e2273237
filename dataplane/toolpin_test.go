package dataplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// TestToolDigest: the digest is the SHA-256 of the RFC 8785 form of the
// five pinned members: spelling (member order, whitespace, escapes, number
// form) does not change it, a value change or another pinned member does,
// members outside the five do not, and ambiguous entries are unchecked.
func TestToolDigest(t *testing.T) {
	const base = `{"name":"lookup","description":"Looks up.","inputSchema":{"type":"object","properties":{"q":{"type":"string"}}},"annotations":{"readOnlyHint":true}}`
	name, d, err := toolDigest(jsontext.Value(base))
	if err != nil || name != "lookup" {
		t.Fatalf("toolDigest: %q %v", name, err)
	}
	canon := `{"annotations":{"readOnlyHint":true},"description":"Looks up.","inputSchema":{"properties":{"q":{"type":"string"}},"type":"object"},"name":"lookup"}`
	sum := sha256.Sum256([]byte(canon))
	if d != hex.EncodeToString(sum[:]) {
		t.Errorf("digest %s, want sha256 of %s", d, canon)
	}
	same := []string{
		` { "inputSchema" : {"properties":{"q":{"type":"string"}},"type":"object"}, "annotations":{"readOnlyHint":true}, "description":"Looks\u0020up.", "name":"lookup" } `,
		`{"name":"lookup","description":"Looks up.","inputSchema":{"type":"object","properties":{"q":{"type":"string"}}},"annotations":{"readOnlyHint":true},"title":"T","_meta":{"x":1}}`,
	}
	for _, s := range same {
		if _, got, err := toolDigest(jsontext.Value(strings.TrimSpace(s))); err != nil || got != d {
			t.Errorf("%s: digest %s %v, want %s", s, got, err, d)
		}
	}
	differ := []string{
		`{"name":"lookup","description":"Looks up!","inputSchema":{"type":"object","properties":{"q":{"type":"string"}}},"annotations":{"readOnlyHint":true}}`,
		`{"name":"lookup","description":"Looks up.","inputSchema":{"type":"object","properties":{"q":{"type":"number"}}},"annotations":{"readOnlyHint":true}}`,
		`{"name":"lookup","description":"Looks up.","inputSchema":{"type":"object","properties":{"q":{"type":"string"}}},"annotations":{"readOnlyHint":false}}`,
		`{"name":"lookup","description":"Looks up.","inputSchema":{"type":"object","properties":{"q":{"type":"string"}}},"annotations":{"readOnlyHint":true},"outputSchema":{"type":"object"}}`,
		`{"name":"lookup","description":"Looks up.","inputSchema":{"type":"object","properties":{"q":{"type":"string"}}}}`,
		`{"name":"lookup","description":null,"inputSchema":{"type":"object","properties":{"q":{"type":"string"}}},"annotations":{"readOnlyHint":true}}`,
	}
	for _, s := range differ {
		if _, got, err := toolDigest(jsontext.Value(s)); err != nil || got == d {
			t.Errorf("%s: digest %s %v, want another than %s", s, got, err, d)
		}
	}
	for _, s := range []string{
		`{"name":"lookup","description":"a","Description":"b"}`, // a lenient client may read either
		`{"name":"lookup","description":"a","description":"b"}`,
		`{"name":1}`, `{"description":"x"}`, `[]`, `"lookup"`,
	} {
		if _, _, err := toolDigest(jsontext.Value(s)); err == nil {
			t.Errorf("%s: digested, want unchecked", s)
		}
	}
}

// TestPinFilter: the tools/list filter with pins, for JSON, batch and SSE
// replies: a pinned tool with its digest passes; an unpinned one passes
// and is reported; a changed one is reported and hidden under block,
// passes under warn; one whose change is already pending is not reported
// again; an unpinnable entry is hidden under block only.
func TestPinFilter(t *testing.T) {
	tool := func(name, desc string) string { return `{"name":"` + name + `","description":"` + desc + `"}` }
	digest := func(s string) string {
		_, d, err := toolDigest(jsontext.Value(s))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	okTool, newTool, changed, pendingTool := tool("ok", "same"), tool("new", "first"), tool("chg", "v2"), tool("pend", "v2")
	long := tool(strings.Repeat("x", wire.MaxPinnedToolName+1), "d")
	pins := map[string]string{"ok": digest(okTool), "chg": digest(tool("chg", "v1")), "pend": digest(tool("pend", "v1"))}
	pending := map[string]string{"pend": digest(pendingTool)}
	list := `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + strings.Join([]string{okTool, newTool, changed, pendingTool, long}, ",") + `]}}`
	for _, block := range []bool{true, false} {
		for _, shape := range []string{"json", "batch", "sse"} {
			f := newToolFilter(nil, nil).withPins(&authorizev1.ToolPinning{Pins: pins, Pending: pending, Block: block})
			var out []byte
			var err error
			switch shape {
			case "json":
				out, err = f.rewrite([]byte(list))
			case "batch":
				out, err = f.rewrite([]byte("[" + list + "]"))
			case "sse":
				out, err = rewriteEvent([]byte("event: message\ndata: "+list+"\n\n"), f)
				out = bytes.TrimPrefix(bytes.TrimSpace(out), []byte("event: message\ndata: "))
			}
			if err != nil {
				t.Fatalf("%s block=%v: %v", shape, block, err)
			}
			out = bytes.TrimSuffix(bytes.TrimPrefix(out, []byte("[")), []byte("]"))
			var msg struct {
				Result struct {
					Tools []struct{ Name string } `json:"tools"`
				} `json:"result"`
			}
			if err := json.Unmarshal(out, &msg); err != nil {
				t.Fatalf("%s: %s: %v", shape, out, err)
			}
			var names []string
			for _, x := range msg.Result.Tools {
				names = append(names, x.Name)
			}
			want := []string{"ok", "new"}
			if !block {
				want = append(want, "chg", "pend", strings.Repeat("x", wire.MaxPinnedToolName+1))
			}
			if !slices.Equal(names, want) {
				t.Errorf("%s block=%v: tools %q, want %q", shape, block, names, want)
			}
			rep := f.pins.reports()
			if len(rep) != 2 || rep[0].GetTool() != "chg" || rep[0].GetDigest() != digest(changed) || rep[1].GetTool() != "new" || rep[1].GetDigest() != digest(newTool) {
				t.Errorf("%s block=%v: reports %v", shape, block, rep)
			}
		}
	}
}

// TestPinReporterBounds: reports are coalesced per route (the latest
// digest of a tool waits once), at most MaxToolDigestReport tools go in one
// call, and what waits is bounded per route: an upstream listing
// thousands of tools cannot make the data plane queue (nor the control
// plane receive) more than maxPendingPerRoute of them at a time.
func TestPinReporterBounds(t *testing.T) {
	sent := make(chan []*authorizev1.ToolDigestReport, 64)
	entered := make(chan struct{}, 64)
	release := make(chan struct{})
	r := &pinReporter{log: slog.New(slog.DiscardHandler), routes: map[string]*routeReports{}}
	r.send = func(_ context.Context, route string, tools []*authorizev1.ToolDigestReport) error {
		if route != "r" {
			t.Errorf("route %q", route)
		}
		entered <- struct{}{}
		<-release
		sent <- tools
		return nil
	}
	d := func(i int) string { return fmt.Sprintf("%064x", i) }
	r.add("r", []*authorizev1.ToolDigestReport{{Tool: "first", Digest: d(0)}})
	<-entered
	// The first call is in flight (blocked): everything else waits.
	for i := range 1000 {
		r.add("r", []*authorizev1.ToolDigestReport{{Tool: fmt.Sprintf("t%04d", i), Digest: d(1)}})
	}
	r.add("r", []*authorizev1.ToolDigestReport{{Tool: "t0000", Digest: d(2)}})
	close(release)
	seen := map[string]string{}
	calls := 0
	for len(seen) < 1+maxPendingPerRoute {
		select {
		case b := <-sent:
			calls++
			if len(b) == 0 || len(b) > wire.MaxToolDigestReport {
				t.Fatalf("a call with %d tools", len(b))
			}
			for _, x := range b {
				if _, dup := seen[x.GetTool()]; dup {
					t.Errorf("%s reported twice", x.GetTool())
				}
				seen[x.GetTool()] = x.GetDigest()
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d tools reported", len(seen))
		}
	}
	if seen["t0000"] != d(2) || seen["first"] != d(0) {
		t.Errorf("coalescing: t0000 %s first %s", seen["t0000"], seen["first"])
	}
	for i := maxPendingPerRoute; i < 1000; i++ {
		if _, ok := seen[fmt.Sprintf("t%04d", i)]; ok {
			t.Fatalf("t%04d was queued beyond the bound", i)
		}
	}
	if calls != 1+maxPendingPerRoute/wire.MaxToolDigestReport {
		t.Errorf("%d calls", calls)
	}
}

// FuzzToolDigest: toolDigest never panics; what it digests is a 64-hex
// digest of a valid pinnable entry, and re-spelling the entry (compacted,
// members reversed, re-indented) keeps the digest.
func FuzzToolDigest(f *testing.F) {
	for _, s := range []string{
		`{"name":"lookup","description":"Looks up.","inputSchema":{"type":"object"}}`,
		`{"name":"a","annotations":{"x":1e2,"y":"\u00e9"},"outputSchema":null}`,
		`{"name":"a","Description":"x"}`,
		`{"name":"a","name":"b"}`,
		`{"name":"\ud800"}`,
		`{"name":"x","description":"1","inputSchema":[1,2.50,-0,1E400]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v := jsontext.Value(b)
		if !v.IsValid() || v.Kind() != '{' {
			return
		}
		name, d, err := toolDigest(v)
		if err != nil {
			return
		}
		if !wire.ValidToolDigest(d) {
			t.Fatalf("digest %q", d)
		}
		ms, err := objectMembers(v, pinnedMembers)
		if err != nil {
			t.Fatalf("digested an entry objectMembers refuses: %v", err)
		}
		slices.Reverse(ms)
		rev, err := encodeObject(ms)
		if err != nil {
			t.Fatal(err)
		}
		indented := jsontext.Value(bytes.Clone(rev))
		if err := indented.Indent(); err != nil {
			t.Fatal(err)
		}
		for _, alt := range []jsontext.Value{rev, indented} {
			n2, d2, err := toolDigest(alt)
			if err != nil || n2 != name || d2 != d {
				t.Fatalf("re-spelled %s: %q %s %v, want %q %s", alt, n2, d2, err, name, d)
			}
		}
	})
}

// FuzzPinFilter: the tools/list filter with pins under block never panics
// and never lets through a tool whose digest differs from its pin: every
// tool entry of what it relays is unpinned or carries its pinned digest.
func FuzzPinFilter(f *testing.F) {
	pinned := `{"name":"ok","description":"same"}`
	_, okDigest, _ := toolDigest(jsontext.Value(pinned))
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[` + pinned + `,{"name":"ok","description":"evil"}]}}`,
		`[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"ok","Description":"x","description":"same"}]}}]`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"new"},{"name":"ok","description":"same","inputSchema":{}}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"o\u006b","description":"same"}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fl := newToolFilter(nil, nil).withPins(&authorizev1.ToolPinning{Pins: map[string]string{"ok": okDigest}, Block: true})
		out, err := fl.rewrite(msg)
		if err != nil {
			return
		}
		// Decode what a lenient client reads: every tools array anywhere.
		var v any
		if json.Unmarshal(out, &v) != nil {
			return // relayed unchanged and unparsable: no tool reaches a client
		}
		var walk func(any)
		walk = func(x any) {
			switch x := x.(type) {
			case []any:
				for _, e := range x {
					walk(e)
				}
			case map[string]any:
				if r, ok := x["result"].(map[string]any); ok {
					if tools, ok := r["tools"].([]any); ok {
						for _, tl := range tools {
							b, _ := json.Marshal(tl)
							if m, ok := tl.(map[string]any); ok && m["name"] == "ok" {
								_, d, err := toolDigest(jsontext.Value(b))
								if err != nil || d != okDigest {
									t.Fatalf("changed tool relayed under block: %s (in %s)", b, out)
								}
							}
						}
					}
				}
			}
		}
		walk(v)
	})
}

// BenchmarkPinFilter relays a tools/list reply of 50 realistic tools
// without any filter, with allowed/disallowed lists only, and with every
// tool pinned (digests computed and compared): the cost tool pinning adds
// to a tools/list reply.
func BenchmarkPinFilter(b *testing.B) {
	var tools []string
	pins := map[string]string{}
	for i := range 50 {
		tool := fmt.Sprintf(`{"name":"tool_%03d","description":"Does thing %d with the repository and returns a summary.",`+
			`"inputSchema":{"type":"object","properties":{"owner":{"type":"string"},"repo":{"type":"string"},"n":{"type":"integer"}},"required":["owner","repo"]},`+
			`"annotations":{"readOnlyHint":true}}`, i, i)
		tools = append(tools, tool)
		_, d, err := toolDigest(jsontext.Value(tool))
		if err != nil {
			b.Fatal(err)
		}
		pins[fmt.Sprintf("tool_%03d", i)] = d
	}
	body := []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[` + strings.Join(tools, ",") + `]}}`)
	for _, c := range []struct {
		name string
		f    func() *toolFilter
	}{
		{"lists", func() *toolFilter { return newToolFilter(nil, []string{"tool_999"}) }},
		{"pins", func() *toolFilter {
			return newToolFilter(nil, nil).withPins(&authorizev1.ToolPinning{Pins: pins, Block: true})
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				f := c.f()
				if _, err := f.rewrite(body); err != nil {
					b.Fatal(err)
				}
				if f.pins != nil && len(f.pins.reports()) != 0 {
					b.Fatal("reported a pinned tool")
				}
			}
		})
	}
}
