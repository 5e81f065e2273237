package dataplane

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestParseBody(t *testing.T) {
	cases := []struct {
		body  string
		ok    bool
		calls []rpcCall
		batch bool
		list  []string
	}{
		{body: `{"jsonrpc":"2.0","id":1,"method":"initialize"}`, ok: true, calls: []rpcCall{{Method: "initialize"}}},
		{body: `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"send"}}`, ok: true, calls: []rpcCall{{Method: "tools/call", Tool: "send"}}},
		{body: `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, ok: true, calls: []rpcCall{{Method: "tools/list"}}, list: []string{"7"}},
		{body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`, ok: true, calls: []rpcCall{{Method: "notifications/initialized"}}},
		{body: `{"jsonrpc":"2.0","id":1,"result":{}}`, ok: true, calls: []rpcCall{{}}},
		{
			body: `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a"}}]`,
			ok:   true, batch: true, calls: []rpcCall{{Method: "tools/list"}, {Method: "tools/call", Tool: "a"}}, list: []string{"1"},
		},
		{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}`, ok: true, calls: []rpcCall{{Method: "tools/call"}}},
		{body: ``},
		{body: `[]`},
		{body: `[1]`},
		{body: `{"jsonrpc":`},
		{body: `"string"`},
		{body: `{"method":7}`},
	}
	for _, tc := range cases {
		got, ok := parseBody([]byte(tc.body))
		if ok != tc.ok {
			t.Errorf("%s: ok %v", tc.body, ok)
			continue
		}
		if !ok {
			continue
		}
		var ids []string
		for id := range got.ToolsListIDs {
			ids = append(ids, id)
		}
		if !slices.Equal(got.Calls, tc.calls) || got.Batch != tc.batch || !slices.Equal(ids, tc.list) {
			t.Errorf("%s: got %+v", tc.body, got)
		}
	}
}

func TestToolFilter(t *testing.T) {
	msg := `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"a"},{"name":"b"},{"name":"c"},{"bad":true}],"nextCursor":"x"}}`
	ids := map[string]bool{"7": true}
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
		out := f.rewrite([]byte(msg), ids)
		var parsed struct {
			Result struct {
				Tools []struct {
					Name string `json:"name"`
				} `json:"tools"`
				NextCursor string `json:"nextCursor"`
			} `json:"result"`
		}
		if err := json.Unmarshal(out, &parsed); err != nil {
			t.Fatalf("%s: %v", out, err)
		}
		names := []string{}
		for _, tl := range parsed.Result.Tools {
			names = append(names, tl.Name)
		}
		if !slices.Equal(names, tc.want) || parsed.Result.NextCursor != "x" {
			t.Errorf("allowed %v disallowed %v: %s", tc.allowed, tc.disallowed, out)
		}
	}
	if newToolFilter(nil, nil) != nil {
		t.Errorf("empty lists should not filter")
	}
	f := newToolFilter([]string{"a"}, nil)
	if out := f.rewrite([]byte(msg), map[string]bool{"8": true}); string(out) != msg {
		t.Errorf("response to another id rewritten")
	}
	batch := `[` + msg + `,{"jsonrpc":"2.0","id":9,"result":{}}]`
	if out := string(f.rewrite([]byte(batch), ids)); out == batch {
		t.Errorf("batch not rewritten")
	}
	ev := []byte("event: message\nid: 1\ndata: " + msg + "\n\n")
	out := rewriteEvent(ev, fwd{filter: f, listIDs: ids})
	if string(out) == string(ev) || out[len(out)-2] != '\n' || out[len(out)-1] != '\n' {
		t.Errorf("SSE event: %q", out)
	}
}

func TestRequestIDEchoed(t *testing.T) {
	for _, tc := range []struct {
		body, want string
	}{
		{`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x"}}`, `{"jsonrpc":"2.0","id":5,"error":{"code":-32003,"message":"forbidden"}}`},
		{`{"jsonrpc":"2.0","id":"a\"b","method":"tools/list"}`, `{"jsonrpc":"2.0","id":"a\"b","error":{"code":-32003,"message":"forbidden"}}`},
		{`{"jsonrpc":"2.0","id":{"x":1},"method":"tools/list"}`, rpcForbidden},
		{`{"jsonrpc":"2.0","id":null,"method":"tools/list"}`, rpcForbidden},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, rpcForbidden},
		{`[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]`, rpcForbidden},
	} {
		parsed, ok := parseBody([]byte(tc.body))
		if !ok {
			t.Fatalf("parseBody(%s) failed", tc.body)
		}
		if got := withID(rpcForbidden, parsed.ID); got != tc.want {
			t.Errorf("body %s: got %s, want %s", tc.body, got, tc.want)
		}
	}
}
