package dataplane

import (
	"bytes"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/api/wire"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// FuzzMemberPage feeds arbitrary member replies to the list translation:
// it never panics, and what it keeps is a JSON object whose name or URI is
// one the aggregate exposes for that member (prefix or rename, a valid
// tool name for tools; a URI that maps back to the member).
func FuzzMemberPage(f *testing.F) {
	f.Add("tools/list", `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","inputSchema":{}},{"name":"x y"},{"name":"hidden"},{"name":"old"}],"nextCursor":"c"}}`)
	f.Add("resources/list", `{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///a","name":"a"},{"uri":7}]}}`)
	f.Add("resources/templates/list", `{"jsonrpc":"2.0","id":1,"result":{"resourceTemplates":[{"uriTemplate":"note://{id}"}]}}`)
	f.Add("prompts/list", `{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"p","name":"q"}]}}`)
	f.Add("tools/list", `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}`)
	m := &authorizev1.AggregateMember{
		Server: "notes", ToolPrefix: "notes__", Renames: map[string]string{"old": "new_name"},
		ExcludeTools: []string{"hidden"},
		Decision:     &authorizev1.AuthorizeResponse{Allow: &authorizev1.Allow{DisallowedTools: []string{"secret"}}},
	}
	f.Fuzz(func(t *testing.T, method, reply string) {
		kind, ok := listKinds[method]
		if !ok {
			return
		}
		pg, ok := memberPage(kind, m, jsontext.Value(reply), &listHint{})
		if !ok {
			return
		}
		for _, it := range pg.items {
			var obj map[string]jsontext.Value
			if err := json.Unmarshal(it, &obj); err != nil {
				t.Fatalf("item %s: %v", it, err)
			}
			switch method {
			case "tools/list", "prompts/list":
				n, ok := stringField(obj, "name")
				up, known := wire.UpstreamName(m.GetToolPrefix(), m.GetRenames(), n)
				if !ok || !known || wire.ExposedName(m.GetToolPrefix(), m.GetRenames(), up) != n {
					t.Fatalf("exposed name %q is not the member's", n)
				}
				if method == "tools/list" && (!wire.ValidToolName(n) || up == "hidden" || up == "secret") {
					t.Fatalf("tool %q listed", n)
				}
			default:
				k := "uri"
				if method == "resources/templates/list" {
					k = "uriTemplate"
				}
				u, _ := stringField(obj, k)
				if s, _, ok := wire.ParseExposedURI(u); !ok || s != "notes" {
					t.Fatalf("exposed uri %q", u)
				}
			}
		}
	})
}

// FuzzSetParam: replacing one member of a params object keeps every other
// member, sets that one, and yields one JSON object.
func FuzzSetParam(f *testing.F) {
	f.Add(`{"name":"a__b","arguments":{"x":1},"_meta":{"progressToken":"t"}}`, "b")
	f.Add(`{}`, "x")
	f.Add(`{"name":1,"name":2}`, "y")
	f.Add(`[1]`, "z")
	f.Fuzz(func(t *testing.T, params, value string) {
		out, ok := setParam(jsontext.Value(params), "name", value)
		if !ok {
			return
		}
		var got map[string]jsontext.Value
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("setParam(%q) = %q: %v", params, out, err)
		}
		var name string
		if err := json.Unmarshal(got["name"], &name); err != nil || name != value {
			t.Fatalf("name %q, want %q", got["name"], value)
		}
		var in map[string]jsontext.Value
		if json.Unmarshal([]byte(params), &in) == nil {
			for k, v := range in {
				if k == "name" {
					continue
				}
				a, b := bytes.Clone(v), bytes.Clone(got[k])
				if (*jsontext.Value)(&a).Canonicalize() != nil || (*jsontext.Value)(&b).Canonicalize() != nil || !bytes.Equal(a, b) {
					t.Fatalf("member %q changed: %s -> %s", k, v, got[k])
				}
			}
			if len(got) != len(in)+1 && len(got) != len(in) {
				t.Fatalf("members %d -> %d", len(in), len(got))
			}
		}
	})
}

// FuzzReadSSE: arbitrary member streams never panic, and events written
// as data lines come back whole and in order.
func FuzzReadSSE(f *testing.F) {
	f.Add("data: {}\n\n", "a", "b")
	f.Add("event: message\r\ndata: 1\r\ndata: 2\r\n\r\n: comment\n\ndata", "x\ry", "")
	f.Fuzz(func(t *testing.T, raw, e1, e2 string) {
		_ = readSSE(strings.NewReader(raw), func([]byte) bool { return true })
		var want []string
		var stream strings.Builder
		for _, e := range []string{e1, e2} {
			if strings.ContainsAny(e, "\r\n") || strings.TrimSpace(e) == "" {
				continue
			}
			want = append(want, strings.TrimPrefix(e, " "))
			stream.WriteString("id: 1\ndata:" + e + "\n\n")
		}
		var got []string
		_ = readSSE(strings.NewReader(stream.String()), func(d []byte) bool {
			got = append(got, string(d))
			return true
		})
		if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("events %q, want %q", got, want)
		}
	})
}
