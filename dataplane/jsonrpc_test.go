package dataplane

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestParseBody(t *testing.T) {
	cases := []struct {
		body  string
		err   error
		calls []rpcCall
		batch bool
		canon string // "" = the body itself
	}{
		{body: `{"jsonrpc":"2.0","id":1,"method":"initialize"}`, calls: []rpcCall{{Method: "initialize"}}},
		{body: `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"send"}}`, calls: []rpcCall{{Method: "tools/call", Tool: "send"}}},
		{body: `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, calls: []rpcCall{{Method: "tools/list"}}},
		{body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`, calls: []rpcCall{{Method: "notifications/initialized"}}},
		{body: `{"jsonrpc":"2.0","id":1,"result":{}}`, calls: []rpcCall{{}}},
		{
			body:  `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a"}}]`,
			batch: true, calls: []rpcCall{{Method: "tools/list"}, {Method: "tools/call", Tool: "a"}},
		},
		// Canonical re-encoding: whitespace and escapes normalised,
		// numbers kept as spelled.
		{
			body:  " {\"jsonrpc\" : \"2.0\",\n\"id\":1.50e0, \"\\u006dethod\":\"tools\\/call\",\"params\":{\"name\":\"\\u0065cho\",\"arguments\":{\"n\":123456789012345678901234567890}}} \r\n",
			calls: []rpcCall{{Method: "tools/call", Tool: "echo"}},
			canon: `{"jsonrpc":"2.0","id":1.50e0,"method":"tools/call","params":{"name":"echo","arguments":{"n":123456789012345678901234567890}}}`,
		},
		{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}`, err: errRPCInvalid},
		{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, err: errRPCInvalid},
		{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["x"]}`, err: errRPCInvalid},
		{body: `{"jsonrpc":"2.0","id":1,"method":"x","params":5}`, err: errRPCInvalid},
		{body: `{"jsonrpc":"2.0","id":{"a":1},"method":"x"}`, err: errRPCInvalid},
		{body: `{"jsonrpc":"1.0","id":1,"method":"x"}`, err: errRPCInvalid},
		{body: `{"id":1,"method":"x"}`, err: errRPCInvalid},
		{body: `{"jsonrpc":"2.0","method":7}`, err: errRPCInvalid},
		{body: ``, err: errRPCParse},
		{body: `[]`, err: errRPCInvalid},
		{body: `[1]`, err: errRPCInvalid},
		{body: `{"jsonrpc":`, err: errRPCParse},
		{body: `"string"`, err: errRPCInvalid},
		{body: `"string" x`, err: errRPCParse},
	}
	for _, tc := range cases {
		got, err := parseBody([]byte(tc.body))
		if !errors.Is(err, tc.err) || (err != nil) != (tc.err != nil) {
			t.Errorf("%s: err %v, want %v", tc.body, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if !slices.Equal(got.Calls, tc.calls) || got.Batch != tc.batch {
			t.Errorf("%s: got %+v", tc.body, got)
		}
		want := tc.canon
		if want == "" {
			want = tc.body
		}
		if string(got.Canonical) != want {
			t.Errorf("%s: canonical %s, want %s", tc.body, got.Canonical, want)
		}
	}
}

// sec01Attacks are bodies that decoders disagree on, or that hide what
// they ask for: each must be refused with the error given.
var sec01Attacks = []struct {
	name string
	body string
	err  error
}{
	{"NAME beside name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"countdown","NAME":"echo"}}`, errRPCAmbiguous},
	{"Name beside name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"echo","name":"countdown"}}`, errRPCAmbiguous},
	{"Name alone", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"echo"}}`, errRPCAmbiguous},
	{"duplicate name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"countdown"}}`, errRPCAmbiguous},
	{"escaped duplicate name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","\u006eame":"countdown"}}`, errRPCAmbiguous},
	{"long s variant of params", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"param\u017f\":{\"name\":\"countdown\"},\"params\":{\"name\":\"echo\"}}", errRPCAmbiguous},
	{"na_me", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","na_me":"countdown"}}`, errRPCAmbiguous},
	{"METHOD", `{"jsonrpc":"2.0","id":1,"method":"tools/call","METHOD":"ping","params":{"name":"countdown"}}`, errRPCAmbiguous},
	{"METHOD alone", `{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","params":{"name":"countdown"}}`, errRPCAmbiguous},
	{"duplicate method", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"countdown"}}`, errRPCAmbiguous},
	{"Params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"Params":{"name":"countdown"}}`, errRPCAmbiguous},
	{"ID", `{"jsonrpc":"2.0","id":1,"ID":2,"method":"ping"}`, errRPCAmbiguous},
	{"JSONRPC", `{"jsonrpc":"2.0","JSONRPC":"2.0","id":1,"method":"ping"}`, errRPCAmbiguous},
	{"duplicate deep in arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":{"b":1,"b":2}}}}`, errRPCAmbiguous},
	{"batch mixing", `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","NAME":"countdown"}}]`, errRPCAmbiguous},
	{"batch METHOD", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"Method":"tools/call","params":{"name":"countdown"}}]`, errRPCAmbiguous},
	{"lone surrogate name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo\ud800"}}`, errRPCParse},
	{"invalid UTF-8 name", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\xff\"}}", errRPCParse},
	{"invalid UTF-8 member", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\xc0\":\"x\",\"name\":\"echo\"}}", errRPCParse},
	{"BOM", "\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", errRPCParse},
	{"trailing garbage", `{"jsonrpc":"2.0","id":1,"method":"ping"}x`, errRPCParse},
	{"second message", `{"jsonrpc":"2.0","id":1,"method":"ping"}{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"countdown"}}`, errRPCParse},
	{"trailing comma", `{"jsonrpc":"2.0","id":1,"method":"ping",}`, errRPCParse},
	{"nested depth", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":` + strings.Repeat(`[`, 200) + strings.Repeat(`]`, 200) + `}}`, errRPCInvalid},
	{"single quotes", `{'jsonrpc':'2.0','id':1,'method':'ping'}`, errRPCParse},
	{"NaN", `{"jsonrpc":"2.0","id":NaN,"method":"ping"}`, errRPCParse},
}

func TestSec01ParseRejectsAmbiguity(t *testing.T) {
	for _, tc := range sec01Attacks {
		if _, err := parseBody([]byte(tc.body)); !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		}
	}
}

func TestHeadersMatchBody(t *testing.T) {
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`
	read := `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}`
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	batch := `[` + call + `]`
	cases := []struct {
		body   string
		header http.Header
		ok     bool
	}{
		{call, http.Header{}, true},
		{call, http.Header{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo"}}, true},
		{call, http.Header{"Mcp-Method": {"tools/call"}}, true},
		{call, http.Header{"Mcp-Method": {"tools/list"}}, false},
		{call, http.Header{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"countdown"}}, false},
		{call, http.Header{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"ECHO"}}, false},
		{call, http.Header{"Mcp-Method": {"tools/call", "tools/call"}}, false},
		{call, http.Header{"Mcp-Name": {"echo", "countdown"}}, false},
		{call, http.Header{"mcp-name": {"countdown"}}, false},
		{read, http.Header{"Mcp-Method": {"resources/read"}, "Mcp-Name": {"file:///a"}}, true},
		{read, http.Header{"Mcp-Name": {"file:///b"}}, false},
		{list, http.Header{"Mcp-Method": {"tools/list"}}, true},
		{list, http.Header{"Mcp-Name": {"echo"}}, false},
		{batch, http.Header{"Mcp-Method": {"tools/call"}}, false},
		{batch, http.Header{}, true},
	}
	for _, tc := range cases {
		b, err := parseBody([]byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if got := headersMatchBody(tc.header, b); got != tc.ok {
			t.Errorf("%s %v: %v, want %v", tc.body, tc.header, got, tc.ok)
		}
	}
}

func toolNamesOf(t *testing.T, msg []byte) []string {
	t.Helper()
	var parsed struct {
		Result struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
			NextCursor string `json:"nextCursor"`
		} `json:"result"`
	}
	if err := json.Unmarshal(msg, &parsed); err != nil {
		t.Fatalf("%s: %v", msg, err)
	}
	names := []string{}
	for _, tl := range parsed.Result.Tools {
		names = append(names, tl.Name)
	}
	return names
}

func TestToolFilter(t *testing.T) {
	msg := `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"a"},{"name":"b"},{"name":"c"},{"bad":true}],"nextCursor":"x"}}`
	cases := []struct {
		allowed, disallowed, want []string
	}{
		{allowed: []string{"a", "b"}, want: []string{"a", "b"}},
		{disallowed: []string{"b"}, want: []string{"a", "c"}},
		{allowed: []string{"a", "b"}, disallowed: []string{"a"}, want: []string{"b"}},
		{allowed: []string{"zzz"}, want: []string{}},
	}
	for _, tc := range cases {
		f := newToolFilter(tc.allowed, tc.disallowed)
		out, err := f.rewrite([]byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		if names := toolNamesOf(t, out); !slices.Equal(names, tc.want) || !strings.Contains(string(out), `"nextCursor":"x"`) {
			t.Errorf("allowed %v disallowed %v: %s", tc.allowed, tc.disallowed, out)
		}
	}
	if newToolFilter(nil, nil) != nil {
		t.Errorf("empty lists should not filter")
	}
	f := newToolFilter([]string{"a"}, nil)
	other := `{"jsonrpc":"2.0","id":8,"result":{"content":[]}}`
	if out, err := f.rewrite([]byte(other)); err != nil || string(out) != other {
		t.Errorf("a reply without tools changed: %s %v", out, err)
	}
	batch := `[` + msg + `,{"jsonrpc":"2.0","id":9,"result":{}}]`
	if out, err := f.rewrite([]byte(batch)); err != nil || string(out) == batch || strings.Contains(string(out), `"name":"b"`) {
		t.Errorf("batch not rewritten: %s %v", out, err)
	}
	ev := []byte("event: message\nid: 1\ndata: " + msg + "\n\n")
	out, err := rewriteEvent(ev, f)
	if err != nil || string(out) == string(ev) || out[len(out)-2] != '\n' || out[len(out)-1] != '\n' || strings.Contains(string(out), `"name":"b"`) {
		t.Errorf("SSE event: %q %v", out, err)
	}
	for _, ev := range []string{"event: message\n\n", ": comment\n\n", "id: 1\ndata: \n\n"} {
		if out, err := rewriteEvent([]byte(ev), f); err != nil || string(out) != ev {
			t.Errorf("event %q changed: %q %v", ev, out, err)
		}
	}
}

// TestSec02RewriteFailsClosed: every result.tools in an
// upstream reply is filtered, whatever its id and however it is spelled;
// what cannot be decoded exactly is refused, never relayed.
func TestSec02RewriteFailsClosed(t *testing.T) {
	f := newToolFilter(nil, []string{"secret"})
	tools := `{"tools":[{"name":"echo"},{"name":"secret"}]}`
	for _, id := range []string{`3`, `3.0`, `4e0`, `"\u0033"`, `"x"`, `null`} {
		msg := `{"jsonrpc":"2.0","id":` + id + `,"result":` + tools + `}`
		for _, form := range []string{msg, `[` + msg + `]`} {
			out, err := f.rewrite([]byte(form))
			if err != nil || strings.Contains(string(out), "secret") || !strings.Contains(string(out), `"echo"`) {
				t.Errorf("id %s: %s %v", id, out, err)
			}
			ev, err := rewriteEvent([]byte("event: message\ndata: "+form+"\n\n"), f)
			if err != nil || strings.Contains(string(ev), "secret") {
				t.Errorf("SSE id %s: %s %v", id, ev, err)
			}
		}
	}
	for name, msg := range map[string]string{
		"duplicate Id":       `{"jsonrpc":"2.0","id":3,"id":4,"result":` + tools + `}`,
		"Id variant":         `{"jsonrpc":"2.0","id":3,"Id":4,"result":` + tools + `}`,
		"Result variant":     `{"jsonrpc":"2.0","id":3,"Result":` + tools + `}`,
		"Tools variant":      `{"jsonrpc":"2.0","id":3,"result":{"Tools":[{"name":"secret"}]}}`,
		"duplicate tools":    `{"jsonrpc":"2.0","id":3,"result":{"tools":[],"tools":[{"name":"secret"}]}}`,
		"tools not an array": `{"jsonrpc":"2.0","id":3,"result":{"tools":{"name":"secret"}}}`,
		"invalid UTF-8":      "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"secret\xff\"}]}}",
		"trailing data":      `{"jsonrpc":"2.0","id":3,"result":{"tools":[]}} {"jsonrpc":"2.0","id":3,"result":` + tools + `}`,
		"not JSON":           `{"jsonrpc":"2.0","id":3,"result":` + tools,
		"batch of scalars":   `[1,` + `{"jsonrpc":"2.0","id":3,"result":` + tools + `}]`,
	} {
		if out, err := f.rewrite([]byte(msg)); !errors.Is(err, errUnchecked) {
			t.Errorf("%s: relayed %s", name, out)
		}
		if out, err := rewriteEvent([]byte("data: "+msg+"\n\n"), f); !errors.Is(err, errUnchecked) {
			t.Errorf("%s: SSE relayed %s", name, out)
		}
	}
	// Tool entries that cannot be checked are dropped.
	msg := `{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"echo"},{"name":"echo","NAME":"secret"},{"Name":"secret"},{"name":7},"secret"]}}`
	out, err := f.rewrite([]byte(msg))
	if err != nil || strings.Contains(string(out), "secret") || !slices.Equal(toolNamesOf(t, out), []string{"echo"}) {
		t.Errorf("unchecked tools kept: %s %v", out, err)
	}
	// A lone CR is a line end for SSE parsers: refused.
	if _, err := rewriteEvent([]byte("data: {}\rdata: "+`{"jsonrpc":"2.0","id":3,"result":`+tools+`}`+"\n\n"), f); !errors.Is(err, errUnchecked) {
		t.Errorf("lone CR event relayed")
	}
}

func TestRequestIDEchoed(t *testing.T) {
	for _, tc := range []struct {
		body, want string
	}{
		{`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x"}}`, `{"jsonrpc":"2.0","id":5,"error":{"code":-32003,"message":"forbidden"}}`},
		{`{"jsonrpc":"2.0","id":"a\"b","method":"tools/list"}`, `{"jsonrpc":"2.0","id":"a\"b","error":{"code":-32003,"message":"forbidden"}}`},
		{`{"jsonrpc":"2.0","id":"\u0061","method":"tools/list"}`, `{"jsonrpc":"2.0","id":"a","error":{"code":-32003,"message":"forbidden"}}`},
		{`{"jsonrpc":"2.0","id":1e2,"method":"tools/list"}`, `{"jsonrpc":"2.0","id":1e2,"error":{"code":-32003,"message":"forbidden"}}`},
		{`{"jsonrpc":"2.0","id":null,"method":"tools/list"}`, rpcForbidden},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, rpcForbidden},
		{`[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`, rpcForbidden},
	} {
		parsed, err := parseBody([]byte(tc.body))
		if err != nil {
			t.Fatalf("parseBody(%s): %v", tc.body, err)
		}
		if got := withID(rpcForbidden, parsed.ID); got != tc.want {
			t.Errorf("body %s: got %s, want %s", tc.body, got, tc.want)
		}
	}
}

// TestParseBodyPooledWalkers: parsers are pooled, so bodies parsed
// concurrently, interleaving valid, invalid and ambiguous ones, give
// exactly what each gives parsed alone (no state leaks between uses).
func TestParseBodyPooledWalkers(t *testing.T) {
	bodies := []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a"}}}`,
		`[{"jsonrpc":"2.0","id":"x","method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a","name":"b"}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"deep","arguments":{"a":[[[{"b":{"c":[1,2,{"d":null}]}}]]]}}}`,
		`{"jsonrpc":"2.0","id":4,"method":`,
		`[]`,
		`{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///x"}} trailing`,
	}
	type result struct {
		body rpcBody
		err  error
	}
	want := make([]result, len(bodies))
	for i, b := range bodies {
		body, err := parseBody([]byte(b))
		want[i] = result{body, err}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := range 300 {
				i := (g + n) % len(bodies)
				body, err := parseBody([]byte(bodies[i]))
				if !errors.Is(err, want[i].err) || !reflect.DeepEqual(body, want[i].body) {
					t.Errorf("body %d concurrently: %+v %v, alone: %+v %v", i, body, err, want[i].body, want[i].err)
					return
				}
			}
		})
	}
	wg.Wait()
}
