package dataplane

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	segjson "github.com/segmentio/encoding/json"
	"google.golang.org/protobuf/proto"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
	"github.com/mcpgate/mcpgate/api/wire"
)

// fuzzBodies seed the JSON-RPC fuzz targets: ordinary requests and the
// known attacks.
func fuzzBodies() []string {
	out := []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":"x","result":{"content":[]}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a"}}]`,
		`{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///x"}}`,
		`{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"greet","arguments":{}}}`,
		`[{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"file:///a"}},{"jsonrpc":"2.0","id":6,"method":"prompts/get","params":{"name":"p"}}]`,
		`{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"file:///x","URI":"file:///y"}}`,
		`{"jsonrpc":"2.0","id":8,"method":"prompts/get","params":{"name":"a","Name":"b"}}`,
		`{"jsonrpc":"2.0","id":9,"method":"resources/read","params":{}}`,
	}
	for _, a := range sec01Attacks {
		out = append(out, a.body)
	}
	return out
}

// FuzzParseBody: parseBody never panics, returns only its sentinels, and
// what it accepts is stable: the canonical form is valid JSON, no longer
// than the input, a fixed point that parses to the same calls, and
// encoding/json (case-insensitive, last duplicate wins) reads the same
// method and tool from it and from the input.
func FuzzParseBody(f *testing.F) {
	for _, b := range fuzzBodies() {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseBody(b)
		if err != nil {
			if !errors.Is(err, errRPCParse) && !errors.Is(err, errRPCAmbiguous) && !errors.Is(err, errRPCInvalid) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if len(got.Calls) == 0 || len(got.Canonical) > len(b) || !json.Valid(got.Canonical) || !utf8.Valid(got.Canonical) {
			t.Fatalf("accepted %q: calls %v canonical %q", b, got.Calls, got.Canonical)
		}
		again, err := parseBody(got.Canonical)
		if err != nil || !bytes.Equal(again.Canonical, got.Canonical) || !slices.Equal(again.Calls, got.Calls) ||
			again.ID != got.ID || again.First != got.First || again.Batch != got.Batch {
			t.Fatalf("canonical form of %q is not a fixed point: %q %v", b, got.Canonical, err)
		}
		for _, in := range [][]byte{b, got.Canonical} {
			for _, c := range foldingDecoderCalls(t, in, got.Batch) {
				if !slices.Contains(got.Calls, c) {
					t.Fatalf("encoding/json reads %+v from %q; the gateway authorized %v", c, in, got.Calls)
				}
			}
		}
	})
}

// foldingDecoderCalls is what a server decoding with encoding/json
// (case-insensitive member names) would execute.
func foldingDecoderCalls(t *testing.T, b []byte, batch bool) []rpcCall {
	t.Helper()
	type msg struct {
		Method *string `json:"method"`
		Params *struct {
			Name *string `json:"name"`
			URI  *string `json:"uri"`
		} `json:"params"`
	}
	var msgs []msg
	if batch {
		if err := json.Unmarshal(b, &msgs); err != nil {
			t.Fatalf("encoding/json rejects accepted batch %q: %v", b, err)
		}
	} else {
		var m msg
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("encoding/json rejects accepted message %q: %v", b, err)
		}
		msgs = append(msgs, m)
	}
	var out []rpcCall
	for _, m := range msgs {
		var c rpcCall
		if m.Method != nil {
			c.Method = *m.Method
		}
		if m.Params != nil && m.Params.Name != nil {
			switch c.Method {
			case "tools/call":
				c.Tool = *m.Params.Name
			case "prompts/get":
				c.Prompt = *m.Params.Name
			}
		}
		if c.Method == "resources/read" && m.Params != nil && m.Params.URI != nil {
			c.Resource = *m.Params.URI
		}
		out = append(out, c)
	}
	return out
}

// sdkCalls is what the official Go SDK's server would execute from b: its
// readBatch (an array of raw messages, else one message) and
// jsonrpc.DecodeMessage, then params decoded like its handlers do, with
// segmentio/encoding/json matching member names case-sensitively.
// Messages it cannot decode execute nothing.
func sdkCalls(b []byte) []rpcCall {
	var raws []json.RawMessage
	if err := segjson.Unmarshal(b, &raws); err != nil {
		raws = []json.RawMessage{b}
	}
	var out []rpcCall
	for _, raw := range raws {
		msg, err := jsonrpc.DecodeMessage(raw)
		if err != nil {
			continue
		}
		req, ok := msg.(*jsonrpc.Request)
		if !ok {
			continue
		}
		c := rpcCall{Method: req.Method}
		switch c.Method {
		case "tools/call", "resources/read", "prompts/get":
			var p struct {
				Name string `json:"name"`
				URI  string `json:"uri"`
			}
			dec := segjson.NewDecoder(bytes.NewReader(req.Params))
			dec.DontMatchCaseInsensitiveStructFields()
			if err := dec.Decode(&p); err != nil {
				continue
			}
			switch c.Method {
			case "tools/call":
				c.Tool = p.Name
			case "resources/read":
				c.Resource = p.URI
			default:
				c.Prompt = p.Name
			}
		}
		out = append(out, c)
	}
	return out
}

// nodeParser runs `node`, which answers each base64 line on stdin with
// what JSON.parse makes of it: the method and params.name of each message.
type nodeParser struct {
	mu  sync.Mutex
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

const nodeScript = `
const rl = require('readline').createInterface({input: process.stdin});
rl.on('line', (l) => {
  let out;
  try {
    const v = JSON.parse(Buffer.from(l, 'base64').toString('utf8'));
    const msgs = Array.isArray(v) ? v : [v];
    out = {ok: true, calls: msgs.map((m) => {
      if (m === null || typeof m !== 'object' || Array.isArray(m)) return null;
      const p = m.params;
      return {
        method: typeof m.method === 'string' ? m.method : null,
        name: (p !== null && typeof p === 'object' && typeof p.name === 'string') ? p.name : null,
        uri: (p !== null && typeof p === 'object' && typeof p.uri === 'string') ? p.uri : null,
      };
    })};
  } catch (e) {
    out = {ok: false};
  }
  process.stdout.write(JSON.stringify(out) + '\n');
});
`

func startNode(tb testing.TB) *nodeParser {
	tb.Helper()
	cmd := exec.Command("node", "-e", nodeScript)
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("node is required for the differential test: %v", err)
	}
	tb.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	return &nodeParser{cmd: cmd, in: in, out: bufio.NewReader(out)}
}

type nodeCall struct {
	Method *string `json:"method"`
	Name   *string `json:"name"`
	URI    *string `json:"uri"`
}

// parse returns ok=false when JSON.parse throws, else the calls.
func (n *nodeParser) parse(t *testing.T, b []byte) (bool, []*nodeCall) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := io.WriteString(n.in, base64.StdEncoding.EncodeToString(b)+"\n"); err != nil {
		t.Fatalf("node: %v", err)
	}
	line, err := n.out.ReadBytes('\n')
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var res struct {
		OK    bool        `json:"ok"`
		Calls []*nodeCall `json:"calls"`
	}
	if err := json.Unmarshal(line, &res); err != nil {
		t.Fatalf("node answer %q: %v", line, err)
	}
	return res.OK, res.Calls
}

// FuzzParseBodyDifferential: for every body the gateway accepts, what the
// official Go SDK server and JSON.parse (Node) would execute, from the
// client's bytes and from the canonical bytes actually forwarded, is among
// the calls the gateway authorized. Where they would disagree, the gateway
// must refuse.
func FuzzParseBodyDifferential(f *testing.F) {
	for _, b := range fuzzBodies() {
		f.Add([]byte(b))
	}
	node := startNode(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseBody(b)
		if err != nil {
			return // refused: nothing to compare
		}
		for _, in := range [][]byte{b, got.Canonical} {
			for _, c := range sdkCalls(in) {
				if !slices.Contains(got.Calls, c) {
					t.Fatalf("Go SDK executes %+v from %q; the gateway authorized %v", c, in, got.Calls)
				}
			}
			ok, calls := node.parse(t, in)
			if !ok {
				t.Fatalf("JSON.parse rejects %q, which the gateway accepted", in)
			}
			for _, nc := range calls {
				if nc == nil || nc.Method == nil {
					continue
				}
				c := rpcCall{Method: *nc.Method}
				switch c.Method {
				case "tools/call", "prompts/get":
					if nc.Name == nil {
						t.Fatalf("JSON.parse finds no name in %q; the gateway authorized %v", in, got.Calls)
					}
					if c.Method == "tools/call" {
						c.Tool = *nc.Name
					} else {
						c.Prompt = *nc.Name
					}
				case "resources/read":
					if nc.URI == nil {
						t.Fatalf("JSON.parse finds no uri in %q; the gateway authorized %v", in, got.Calls)
					}
					c.Resource = *nc.URI
				}
				if !slices.Contains(got.Calls, c) {
					t.Fatalf("JSON.parse reads %+v from %q; the gateway authorized %v", c, in, got.Calls)
				}
			}
		}
	})
}

// FuzzExtractCredentials: extraction never panics; a bearer token never
// holds an API key or whitespace; values are trimmed; the result does not
// depend on the case of header names; a malformed Authorization yields no
// bearer token; and the passthrough value is only ever the route's own.
func FuzzExtractCredentials(f *testing.F) {
	f.Add("mcpg_alice", "", "", "", "", "Gmail")
	f.Add("", "Bearer mcpg_bob", "", "", "", "Gmail")
	f.Add("", "", "Bearer tok_alice", "", "Bearer up", "Pass")
	f.Add("", "", "Bearer mcpg_alice", "Bearer other", "", "Echo")
	f.Add("", "", "bEaReR  tok ", "", "", "x")
	f.Add("", "", "Basic dXNlcjpwdw==", "", "", "x")
	f.Add(" mcpg_a ", "mcpg_b", "Bearer", "", "", "Gmail")
	f.Add("", "", "Bearer a b", "", "", "x")
	f.Fuzz(func(t *testing.T, apiKey, litellm, authz, authz2, pass, route string) {
		if !wire.ValidServerName(route) {
			return // the proxy extracts credentials only for routes it parsed
		}
		h := http.Header{}
		set := func(k, v string) {
			if v != "" {
				h[k] = append(h[k], v)
			}
		}
		set("X-Mcpgate-Api-Key", apiKey)
		set("X-Litellm-Api-Key", litellm)
		set("Authorization", authz)
		set("Authorization", authz2)
		set("X-Mcp-"+route+"-Authorization", pass)
		set("X-Mcp-Other"+route+"-Authorization", "Bearer other-route")
		c := extractCredentials(h, route)

		if c.GetApiKey() != strings.TrimSpace(c.GetApiKey()) || c.GetPassthroughAuthorization() != strings.TrimSpace(c.GetPassthroughAuthorization()) {
			t.Fatalf("untrimmed credential %v", c)
		}
		if tok := c.GetBearerToken(); tok != "" {
			if strings.HasPrefix(tok, apiKeyPrefix) || strings.ContainsAny(tok, " \t") || c.GetMalformedAuthorization() {
				t.Fatalf("bearer token %q (malformed %v)", tok, c.GetMalformedAuthorization())
			}
			if !strings.Contains(authz+authz2, tok) {
				t.Fatalf("bearer token %q not from Authorization", tok)
			}
		}
		if k := c.GetApiKey(); k != "" && !strings.Contains(apiKey+litellm+authz+authz2, k) {
			t.Fatalf("API key %q from nowhere", k)
		}
		if v := c.GetPassthroughAuthorization(); v != "" && v != strings.TrimSpace(pass) {
			t.Fatalf("passthrough %q, want the route's own %q", v, pass)
		}
		if (authz != "" && authz2 != "") && !c.GetMalformedAuthorization() {
			t.Fatalf("two Authorization headers not malformed")
		}
		// HTTP header names are compared with ASCII case folding only.
		lower := http.Header{}
		for k, vs := range h {
			lower[asciiLower(k)] = vs
		}
		if lc := extractCredentials(lower, asciiUpper(route)); !proto.Equal(lc, c) {
			t.Fatalf("header name case changes the result: %v vs %v", lc, c)
		}
	})
}

// FuzzOpenHandle: opening never panics; a handle sealed by the ring opens
// to exactly its binding; any change to it, and any handle the fuzzer
// makes up, fails with errBadHandle or errUnknownKey (the latter only
// when the key id it names is not in the ring).
func FuzzOpenHandle(f *testing.F) {
	f.Add("up-1", "alice", "Gmail", "AAAA", uint16(0), byte(1))
	f.Add("", "", "", "", uint16(5), byte(0x80))
	f.Add("x\x00y", "bob", "Echo", "Amsx", uint16(40), byte(0xff))
	f.Add(strings.Repeat("u", 300), "p", "r", "AmsyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", uint16(2), byte(4))
	ring, err := buildKeySet(&authorizev1.GetSessionKeysResponse{Keys: []*authorizev1.SessionKey{
		{Id: "k1", Key: bytes.Repeat([]byte{1}, 32)},
		{Id: "k2", Key: bytes.Repeat([]byte{2}, 16)},
	}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, upstream, principal, route, forged string, pos uint16, flip byte) {
		want := sessionBinding{upstream: upstream, principal: principal, route: route}
		h, err := ring.seal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ring.open(h)
		if err != nil || got != want {
			t.Fatalf("round trip: %+v %v", got, err)
		}
		if handleKeyID(h) != "k1" {
			t.Fatalf("handle names key %q", handleKeyID(h))
		}
		check := func(what, handle string) {
			_, err := ring.open(handle)
			switch {
			case errors.Is(err, errBadHandle):
			case errors.Is(err, errUnknownKey):
				if id := handleKeyID(handle); id == "" || ring.byID[id] != nil {
					t.Fatalf("%s: errUnknownKey for key id %q", what, id)
				}
			default:
				t.Fatalf("%s %q opened: %v", what, handle, err)
			}
		}
		if flip != 0 {
			raw, _ := base64.RawURLEncoding.DecodeString(h)
			raw[int(pos)%len(raw)] ^= flip
			check("tampered handle", base64.RawURLEncoding.EncodeToString(raw))
		}
		if forged != h {
			check("made-up handle", forged)
		}
	})
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' {
			return r - ('a' - 'A')
		}
		return r
	}, s)
}
