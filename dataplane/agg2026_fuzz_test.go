package dataplane

import (
	"bytes"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// FuzzCompleteResult feeds arbitrary member replies to completeResult: it
// never panics; a reply whose result is an object without resultType comes
// back as valid JSON with resultType "complete" and every other result
// member unchanged; any other reply comes back byte for byte.
func FuzzCompleteResult(f *testing.F) {
	f.Add(`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}]}}`)
	f.Add(`{"jsonrpc":"2.0","id":1,"result":{"content":[],"resultType":"input_required","requestState":"s"}}`)
	f.Add(`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}`)
	f.Add(`{"jsonrpc":"2.0","id":1,"result":[]}`)
	f.Add(`{"jsonrpc":"2.0","id":1,"result":{"a":1,"a":2}}`)
	f.Fuzz(func(t *testing.T, in string) {
		out := completeResult(jsontext.Value(in))
		var rm aggMsg
		var res map[string]jsontext.Value
		if json.Unmarshal([]byte(in), &rm) != nil || rm.Result.Kind() != '{' || json.Unmarshal(rm.Result, &res) != nil {
			if !bytes.Equal(out, []byte(in)) {
				t.Fatalf("unreadable reply changed: %q -> %q", in, out)
			}
			return
		}
		if _, ok := res["resultType"]; ok {
			if !bytes.Equal(out, []byte(in)) {
				t.Fatalf("reply with resultType changed: %q -> %q", in, out)
			}
			return
		}
		var om aggMsg
		var ores map[string]jsontext.Value
		if json.Unmarshal(out, &om) != nil || json.Unmarshal(om.Result, &ores) != nil {
			if bytes.Equal(out, []byte(in)) {
				return // not re-encodable: left as it was
			}
			t.Fatalf("output unreadable: %q", out)
		}
		if string(ores["resultType"]) != `"complete"` || len(ores) != len(res)+1 {
			t.Fatalf("resultType not added: %q -> %q", in, out)
		}
		for k, v := range res {
			a, b := v.Clone(), ores[k].Clone()
			_ = a.Canonicalize()
			_ = b.Canonicalize()
			if !bytes.Equal(a, b) {
				t.Fatalf("member %q changed: %s -> %s", k, v, ores[k])
			}
		}
	})
}
