package dataplane

import (
	"bytes"
	"slices"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// policyAllow is an ALLOW with compiled rules: admin_* denied, merge_*
// restricted (this principal not named), merge_pr allowed to it,
// file:///secret/* restricted, release_* prompts denied.
func policyAllow() *authorizev1.Allow {
	v := func(k authorizev1.PolicyKind, g string, e authorizev1.VisibilityEffect, id string) *authorizev1.VisibilityRule {
		return &authorizev1.VisibilityRule{Kind: k, Glob: g, Effect: e, RuleId: id}
	}
	const (
		tool   = authorizev1.PolicyKind_POLICY_KIND_TOOL
		res    = authorizev1.PolicyKind_POLICY_KIND_RESOURCE
		prompt = authorizev1.PolicyKind_POLICY_KIND_PROMPT
		allow  = authorizev1.VisibilityEffect_VISIBILITY_EFFECT_ALLOW
		deny   = authorizev1.VisibilityEffect_VISIBILITY_EFFECT_DENY
		restr  = authorizev1.VisibilityEffect_VISIBILITY_EFFECT_RESTRICT
	)
	return &authorizev1.Allow{DisallowedTools: []string{"rm"}, Visibility: []*authorizev1.VisibilityRule{
		v(tool, "admin_*", deny, "no-admin"),
		v(tool, "merge_*", restr, "release-merge"),
		v(tool, "merge_pr", allow, "alice-merge"),
		v(res, "file:///secret/*", restr, "secrets"),
		v(prompt, "release_*", deny, "no-release"),
	}}
}

// TestListFilterPolicies: tools/list, resources/list,
// resources/templates/list and prompts/list replies keep exactly what
// api/wire.Visible shows, in JSON, batch and SSE form; other members and
// entries' other fields are kept.
func TestListFilterPolicies(t *testing.T) {
	f := newListFilter(policyAllow())
	if f == nil {
		t.Fatal("no filter for an ALLOW with rules")
	}
	for _, tc := range []struct{ in, want string }{
		{`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search"},{"name":"merge_main"},{"name":"merge_pr","description":"d"},{"name":"admin_x"},{"name":"rm"}],"nextCursor":"c"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search"},{"name":"merge_pr","description":"d"}],"nextCursor":"c"}}`},
		{`{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///public/a","name":"a"},{"uri":"file:///secret/b","name":"b"},{"name":"no uri"}]}}`,
			`{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///public/a","name":"a"}]}}`},
		{`{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[{"uriTemplate":"file:///secret/{x}","name":"s"},{"uriTemplate":"file:///public/{x}","name":"p"}]}}`,
			`{"jsonrpc":"2.0","id":3,"result":{"resourceTemplates":[{"uriTemplate":"file:///public/{x}","name":"p"}]}}`},
		{`{"jsonrpc":"2.0","id":4,"result":{"prompts":[{"name":"release_notes"},{"name":"draft","arguments":[]}]}}`,
			`{"jsonrpc":"2.0","id":4,"result":{"prompts":[{"name":"draft","arguments":[]}]}}`},
		// Names of one kind are not filtered by rules of another.
		{`{"jsonrpc":"2.0","id":5,"result":{"prompts":[{"name":"admin_x"}],"tools":[{"name":"release_1"}]}}`,
			`{"jsonrpc":"2.0","id":5,"result":{"prompts":[{"name":"admin_x"}],"tools":[{"name":"release_1"}]}}`},
		{`{"jsonrpc":"2.0","id":6,"result":{"content":[]}}`, `{"jsonrpc":"2.0","id":6,"result":{"content":[]}}`},
	} {
		out, err := f.rewrite([]byte(tc.in))
		if err != nil || string(out) != tc.want {
			t.Errorf("%s:\n got %s %v\nwant %s", tc.in, out, err, tc.want)
		}
		batch := `[` + tc.in + `,{"jsonrpc":"2.0","id":9,"result":{}}]`
		out, err = f.rewrite([]byte(batch))
		if err != nil || string(out) != `[`+tc.want+`,{"jsonrpc":"2.0","id":9,"result":{}}]` && string(out) != batch {
			t.Errorf("batch %s: %s %v", batch, out, err)
		}
		if tc.in != tc.want && string(out) == batch {
			t.Errorf("batch %s not filtered", batch)
		}
		ev, err := rewriteEvent([]byte("event: message\ndata: "+tc.in+"\n\n"), f)
		if want := "event: message\ndata: " + tc.want + "\n\n"; err != nil || string(ev) != want {
			t.Errorf("SSE %s: %q %v", tc.in, ev, err)
		}
	}
	// Fail closed: a list that is not an array, or a variant of a list
	// member, is unchecked (the data plane answers 502).
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"resources":{"uri":"file:///secret/b"}}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"Prompts":[{"name":"release_notes"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"resource_templates":[]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"prompts":[],"prompts":[]}}`,
	} {
		if out, err := f.rewrite([]byte(msg)); err != errUnchecked {
			t.Errorf("%s: %s %v, want errUnchecked", msg, out, err)
		}
	}
}

// FuzzListFilter: for any upstream message, rewrite never panics; what it
// passes is exactly decodable, and every entry of every filtered list in
// it is visible under the ALLOW (a principal never sees what it cannot
// call).
func FuzzListFilter(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search"},{"name":"merge_main"},{"name":"admin_x"}]}}`,
		`{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///secret/b"}],"resourceTemplates":[{"uriTemplate":"file:///secret/{x}"}]}}`,
		`[{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"release_notes"},{"name":"x"}]}},{"jsonrpc":"2.0","id":4,"result":{}}]`,
		`{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"a","name":"admin_x"}]}}`,
		`{"jsonrpc":"2.0","id":6,"result":{"tools":[{"Name":"admin_x"}]}}`,
	} {
		f.Add([]byte(s))
	}
	a := policyAllow()
	flt := newListFilter(a)
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, err := flt.rewrite(msg)
		if err != nil {
			if err != errUnchecked {
				t.Fatalf("error %v", err)
			}
			return
		}
		var values []jsontext.Value
		dec := jsontext.NewDecoder(bytes.NewReader(out))
		v, err := dec.ReadValue()
		if err != nil {
			t.Fatalf("passed undecodable %q: %v", out, err)
		}
		if v.Kind() == '[' {
			d := jsontext.NewDecoder(bytes.NewReader(v))
			_, _ = d.ReadToken()
			for d.PeekKind() != ']' {
				e, err := d.ReadValue()
				if err != nil {
					t.Fatalf("passed %q: %v", out, err)
				}
				values = append(values, e.Clone())
			}
		} else {
			values = append(values, v.Clone())
		}
		for _, m := range values {
			top, err := objectMembers(m, messageMembers)
			if err != nil {
				t.Fatalf("passed %q: %v", out, err)
			}
			ri := find(top, "result")
			if ri < 0 || top[ri].value.Kind() != '{' {
				continue
			}
			res, err := objectMembers(top[ri].value, resultMembers)
			if err != nil {
				t.Fatalf("passed %q: %v", out, err)
			}
			for _, lm := range listMembers {
				li := find(res, lm.list)
				if li < 0 {
					continue
				}
				d := jsontext.NewDecoder(bytes.NewReader(res[li].value))
				if tok, err := d.ReadToken(); err != nil || tok.Kind() != '[' {
					t.Fatalf("passed a non-array %s in %q", lm.list, out)
				}
				for d.PeekKind() != ']' {
					e, err := d.ReadValue()
					if err != nil {
						t.Fatalf("passed %q: %v", out, err)
					}
					ms, err := objectMembers(e, []string{lm.key})
					i := find(ms, lm.key)
					if err != nil || i < 0 {
						t.Fatalf("passed an entry without %s in %q", lm.key, out)
					}
					name, err := jsontext.AppendUnquote(nil, ms[i].value)
					if err != nil {
						t.Fatalf("passed %q: %v", out, err)
					}
					if ok, _ := visible(a, lm.kind, string(name)); !ok {
						t.Fatalf("passed hidden %s %q in %q", lm.list, name, out)
					}
				}
			}
		}
	})
}

// visible is api/wire.Visible for an ALLOW.
func visible(a *authorizev1.Allow, kind authorizev1.PolicyKind, name string) (bool, string) {
	return wire.Visible(a.GetAllowedTools(), a.GetDisallowedTools(), a.GetVisibility(), kind, name)
}

// TestParseBodyResourcePrompt: resources/read's params.uri and
// prompts/get's params.name are what the call is authorized for, exactly
// like tools/call's params.name; without them (or with a non-string) the
// call is invalid, and case variants are ambiguous.
func TestParseBodyResourcePrompt(t *testing.T) {
	for _, tc := range []struct {
		body string
		want []rpcCall
		err  error
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a\u002fb"}}`, []rpcCall{{Method: "resources/read", Resource: "file:///a/b"}}, nil},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"greet","arguments":{"name":"x"}}}`, []rpcCall{{Method: "prompts/get", Prompt: "greet"}}, nil},
		{`[{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"u"}},{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"p"}},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"t","uri":"x"}}]`,
			[]rpcCall{{Method: "resources/read", Resource: "u"}, {Method: "prompts/get", Prompt: "p"}, {Method: "tools/call", Tool: "t"}}, nil},
		// The name of a prompts/get is not a tool, and a uri outside
		// resources/read is nothing.
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"a","uri":"b"}}`, []rpcCall{{Method: "tools/list"}}, nil},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{}}`, nil, errRPCInvalid},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":7}}`, nil, errRPCInvalid},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read"}`, nil, errRPCInvalid},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"arguments":{}}}`, nil, errRPCInvalid},
		{`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","URI":"b"}}`, nil, errRPCAmbiguous},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"a","nAme":"b"}}`, nil, errRPCAmbiguous},
	} {
		got, err := parseBody([]byte(tc.body))
		if err != tc.err || (err == nil && !slices.Equal(got.Calls, tc.want)) {
			t.Errorf("%s: %+v %v, want %+v %v", tc.body, got.Calls, err, tc.want, tc.err)
		}
	}
}
