package dataplane

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"
	"unicode/utf8"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
)

// classifyRefusals are every fixed answer classifyRequest may give.
var classifyRefusals = map[string]int{
	rpcVersionHeaderMissing: http.StatusBadRequest,
	rpcVersionMismatch:      http.StatusBadRequest,
	rpcMcpHeadersMissing:    http.StatusBadRequest,
	rpcMetaVersionMissing:   http.StatusBadRequest,
	rpcUnsupportedVersion:   http.StatusBadRequest,
	rpcModernOnly:           http.StatusBadRequest,
	rpcHeaderMismatch:       http.StatusBadRequest,
	rpcRemovedIn2026:        http.StatusNotFound,
}

// FuzzClassify2026: classifyRequest never panics, answers only its fixed
// refusals, and a request it lets through as 2026-07-28 is one whose
// headers say exactly what a case-insensitive decoder (encoding/json, as
// upstream SDKs use) reads from the forwarded body: the protocol version in
// _meta, the method, and the name for tools/call, prompts/get and
// resources/read. A request let through under a 2026 header carries
// Mcp-Method equal to its method.
func FuzzClassify2026(f *testing.F) {
	const m26 = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",`+m26+`}}`), "2026-07-28", "tools/call", "echo")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",`+m26+`}}`), "2026-07-28", "tools/call", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo",`+m26+`}}`), "", "tools/call", "echo")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a",`+m26+`}}`), "2026-07-28", "resources/read", "file:///a")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{`+m26+`}}`), "2026-07-28", "server/discover", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"server/discover"}`), "", "", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{`+m26+`}}`), "2026-07-28", "initialize", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2027-01-01"}}}`), "2027-01-01", "tools/list", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolversion":"2026-07-28"}}}`), "2026-07-28", "tools/list", "")
	f.Add([]byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{`+m26+`}}]`), "2026-07-28", "tools/list", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`), "2025-11-25", "tools/call", "echo")
	f.Add([]byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`), "2026-07-28", "", "")
	f.Fuzz(func(t *testing.T, body []byte, version, method, name string) {
		b, err := parseBody(body)
		if err != nil {
			return
		}
		h := http.Header{}
		if version != "" {
			h.Set(headerProtocolVersion, version)
		}
		if method != "" {
			h.Set(headerMcpMethod, method)
		}
		if name != "" {
			h.Set(headerMcpName, name)
		}
		c := classifyRequest(h, b)
		if c.Status != 0 {
			if want, ok := classifyRefusals[c.Refusal]; !ok || want != c.Status {
				t.Fatalf("refusal %d %s", c.Status, c.Refusal)
			}
			return
		}
		if version >= protocol20260728 && b.First.HasMethod && method != b.First.Method {
			t.Fatalf("2026 header: Mcp-Method %q let through for method %q", method, b.First.Method)
		}
		if !c.Modern {
			return
		}
		if b.Batch {
			t.Fatal("modern batch let through")
		}
		var loose struct {
			Method string `json:"method"`
			Params struct {
				Name string         `json:"name"`
				URI  string         `json:"uri"`
				Meta map[string]any `json:"_meta"`
			} `json:"params"`
		}
		if err := json.Unmarshal(b.Canonical, &loose); err != nil {
			t.Fatalf("canonical body %s: %v", b.Canonical, err)
		}
		if v, _ := loose.Params.Meta[metaKeyProtocolVersion].(string); v != version || c.Version != version {
			t.Fatalf("version header %q, _meta read as %q, classified %q", version, v, c.Version)
		}
		if loose.Method != method {
			t.Fatalf("Mcp-Method %q, body read as %q", method, loose.Method)
		}
		want := loose.Params.Name
		if loose.Method == "resources/read" {
			want = loose.Params.URI
		}
		if needsName(loose.Method) && want != name {
			t.Fatalf("Mcp-Name %q, body read as %q", name, want)
		}
	})
}

// FuzzRequestState: a sealed requestState opens to exactly what was sealed;
// a tampered or made-up one never opens (errBadState, or errUnknownKey for
// a key id not in the ring); a session handle is never a requestState and a
// requestState never a session handle.
func FuzzRequestState(f *testing.F) {
	f.Add("alice", "Echo", "tools/call", "confirm", "up-1", "AAAA", uint16(0), byte(1))
	f.Add("", "", "", "", "", "", uint16(5), byte(0x80))
	f.Add("bob", "Other", "resources/read", "file:///x", "x\x00y", "Amsx", uint16(40), byte(0xff))
	ring, err := buildKeySet(&authorizev1.GetSessionKeysResponse{Keys: []*authorizev1.SessionKey{
		{Id: "k1", Key: bytes.Repeat([]byte{1}, 32)},
		{Id: "k2", Key: bytes.Repeat([]byte{2}, 16)},
	}})
	if err != nil {
		f.Fatal(err)
	}
	exp := time.Unix(2000000000, 0)
	f.Fuzz(func(t *testing.T, principal, route, method, name, upstream, forged string, pos uint16, flip byte) {
		want := stateBinding{principal: principal, route: route, method: method, name: name, upstream: upstream, expires: exp}
		s, err := ring.sealState(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ring.openState(s)
		if err != nil || got != want {
			t.Fatalf("round trip: %+v %v", got, err)
		}
		if _, err := ring.open(s); !errors.Is(err, errBadHandle) {
			t.Fatalf("requestState opened as a session handle: %v", err)
		}
		if h, err := ring.seal(sessionBinding{upstream: upstream, principal: principal, route: route}); err != nil {
			t.Fatal(err)
		} else if _, err := ring.openState(h); !errors.Is(err, errBadState) {
			t.Fatalf("session handle opened as a requestState: %v", err)
		}
		check := func(what, state string) {
			_, err := ring.openState(state)
			switch {
			case errors.Is(err, errBadState):
			case errors.Is(err, errUnknownKey):
				if id := handleKeyID(state); id == "" || ring.byID[id] != nil {
					t.Fatalf("%s: errUnknownKey for key id %q", what, id)
				}
			default:
				t.Fatalf("%s %q opened: %v", what, state, err)
			}
		}
		if flip != 0 {
			raw, _ := base64.RawURLEncoding.DecodeString(s)
			raw[int(pos)%len(raw)] ^= flip
			check("tampered state", base64.RawURLEncoding.EncodeToString(raw))
		}
		if forged != s {
			check("made-up state", forged)
		}
	})
}

// TestClassifyDuplicateVersionHeader: two MCP-Protocol-Version values are
// a mismatch, whatever they say.
func TestClassifyDuplicateVersionHeader(t *testing.T) {
	b, err := parseBody([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Mcp-Protocol-Version": {"2025-11-25", "2025-11-25"}}
	if c := classifyRequest(h, b); c.Status != http.StatusBadRequest || c.Refusal != rpcVersionMismatch {
		t.Fatalf("%+v", c)
	}
}

// FuzzReplaceRequestState: what the gateway forwards after opening a
// retry's requestState is the authorized body with exactly that member
// replaced: it parses to the same method, name, uri, id and protocol
// version, with the upstream's state.
func FuzzReplaceRequestState(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"confirm","requestState":"sealed","inputResponses":{"ok":{"action":"accept"}}}}`), "upstream-state-1")
	f.Add([]byte(`{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"file:///a","requestState":"s","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`), "\u2028\"quoted\"")
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"requestState":7,"name":"p"}}`), "")
	f.Fuzz(func(t *testing.T, body []byte, state string) {
		b, err := parseBody(body)
		if err != nil || b.Batch || !b.First.HasState {
			return
		}
		out, err := replaceRequestState(b.Canonical, state)
		if err != nil {
			// Only an invalid UTF-8 state (never an upstream's: it was a
			// JSON string) cannot be written.
			if b.First.State != "" && utf8.ValidString(state) {
				t.Fatalf("a string state could not be replaced: %v", err)
			}
			return
		}
		got, err := parseBody(out)
		if err != nil {
			t.Fatalf("replaced body %s: %v", out, err)
		}
		want := b.First
		if b.First.State != "" || b.First.HasState && got.First.State == state {
			want.State = state
		}
		if got.First != want || got.ID != b.ID {
			t.Fatalf("replaced %+v, want %+v", got.First, want)
		}
	})
}
