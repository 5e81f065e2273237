package dataplane

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mcpgate/mcpgate/api/wire"
)

// JSON-RPC bodies are decoded exactly: with jsontext (case-sensitive member
// names, duplicate names rejected at every depth, invalid UTF-8 and lone
// surrogates rejected, nothing after the value), and a message is refused
// when a member name the gateway reads has a variant that a case-folding
// decoder (encoding/json, whose folding also maps U+017F to s and U+212A to
// k) or a dash/underscore-ignoring one (json v2's nocase) could take for it.
// What is forwarded upstream is the body re-encoded from the tokens the
// gateway read (canonicalBody), so an upstream parser sees exactly the
// names and strings that were authorized, whatever escapes or whitespace
// the client used.

// Sentinel errors of parseBody.
var (
	// errRPCParse: not a single JSON value (HTTP 400, JSON-RPC -32700).
	errRPCParse = errors.New("body is not a JSON value")
	// errRPCAmbiguous: a duplicate member name anywhere, or a variant of a
	// member name the gateway reads (400, -32600).
	errRPCAmbiguous = errors.New("duplicate or case-variant member names")
	// errRPCInvalid: JSON, but not JSON-RPC 2.0 messages the gateway can
	// authorize (400, -32600).
	errRPCInvalid = errors.New("not a JSON-RPC 2.0 message")
)

// maxJSONDepth bounds the nesting of a request body. MCP messages nest a
// handful of levels; tool arguments rarely more than a dozen.
const maxJSONDepth = 128

// Member names the gateway reads, per object.
var (
	messageMembers = []string{"jsonrpc", "method", "id", "params", "result", "error"}
	paramsMembers  = []string{"name", "uri"}
	resultMembers  = []string{"tools"}
	toolMembers    = []string{"name"}
)

// rpcCall is what authorization needs from one JSON-RPC message.
type rpcCall struct {
	Method string
	Tool   string // params.name of tools/call
}

// rpcMsg is what the gateway read from one message.
type rpcMsg struct {
	Method    string
	HasMethod bool
	ID        string // compact JSON id when a string or a number
	Name      string // params.name, when a string
	HasName   bool
	URI       string // params.uri, when a string
	HasURI    bool
}

// rpcBody is a parsed POST body.
type rpcBody struct {
	Calls []rpcCall // distinct (method, tool) pairs, in order
	Batch bool
	// First is the first (for a single request, the only) message.
	First rpcMsg
	// ID is the compact id of a single request (not a batch, not a
	// notification): the gateway's own error answers echo it, so clients
	// match them to their request instead of dropping the session.
	ID string
	// Canonical is the body re-encoded from the decoded tokens: what the
	// gateway forwards.
	Canonical []byte
}

// parseBody parses a single JSON-RPC message or a non-empty batch of them
// exactly. Errors are errRPCParse, errRPCAmbiguous or errRPCInvalid.
func parseBody(b []byte) (rpcBody, error) {
	var out rpcBody
	var buf bytes.Buffer
	buf.Grow(len(b))
	w := getWalker(b, &buf)
	defer putWalker(w)
	var msgs []rpcMsg
	switch w.dec.PeekKind() {
	case '{':
		m, err := w.message()
		if err != nil {
			return rpcBody{}, err
		}
		msgs = append(msgs, m)
	case '[':
		if _, err := w.token(); err != nil {
			return rpcBody{}, err
		}
		out.Batch = true
		for {
			k := w.dec.PeekKind()
			if k == ']' {
				break
			}
			if k != '{' && k != 0 {
				return rpcBody{}, errRPCInvalid
			}
			m, err := w.message()
			if err != nil {
				return rpcBody{}, err
			}
			msgs = append(msgs, m)
		}
		if _, err := w.token(); err != nil {
			return rpcBody{}, err
		}
		if len(msgs) == 0 {
			return rpcBody{}, errRPCInvalid
		}
	case 0:
		_, err := w.dec.ReadToken()
		return rpcBody{}, classify(err)
	default:
		// A JSON value, but not an object or an array; still reject
		// trailing garbage as a parse error first.
		if err := w.skip(); err != nil {
			return rpcBody{}, err
		}
		if _, err := w.dec.ReadToken(); err != io.EOF {
			return rpcBody{}, errRPCParse
		}
		return rpcBody{}, errRPCInvalid
	}
	if _, err := w.dec.ReadToken(); err != io.EOF {
		return rpcBody{}, classify(err)
	}
	out.Canonical = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	out.First = msgs[0]
	seen := map[rpcCall]bool{}
	for _, m := range msgs {
		c := rpcCall{Method: m.Method}
		if m.Method == "tools/call" {
			if !m.HasName {
				return rpcBody{}, errRPCInvalid // nothing to authorize
			}
			c.Tool = m.Name
		}
		if !seen[c] {
			seen[c] = true
			out.Calls = append(out.Calls, c)
		}
	}
	if !out.Batch && out.First.Method != "" {
		out.ID = out.First.ID
	}
	return out, nil
}

// classify maps a jsontext error to a sentinel.
func classify(err error) error {
	switch {
	case err == nil:
		return errRPCParse // a token where EOF was required
	case errors.Is(err, jsontext.ErrDuplicateName):
		return errRPCAmbiguous
	}
	return errRPCParse
}

// variantOf reports whether name is not one of members but a decoder that
// folds case (Unicode simple folding) or ignores '-' and '_' could match it
// to one of them.
func variantOf(name string, members []string) bool {
	for _, m := range members {
		if name == m {
			return false
		}
	}
	loose := name
	if strings.ContainsAny(name, "-_") {
		loose = strings.Map(func(r rune) rune {
			if r == '-' || r == '_' {
				return -1
			}
			return r
		}, name)
	}
	for _, m := range members {
		// No member read has '-' or '_': folding loose covers name too.
		if strings.EqualFold(loose, m) {
			return true
		}
	}
	return false
}

// walker decodes tokens and re-encodes each one as it is read.
type walker struct {
	dec *jsontext.Decoder
	enc *jsontext.Encoder
	// in is the decoder's source; idle is what the decoder and encoder
	// point at while pooled, so a pooled walker holds no request's bytes.
	in, idle bytes.Buffer
}

// walkers are reused: a decoder and an encoder with their state stacks
// were a third of a request body's parsing cost in allocations (profiled:
// BenchmarkParseBody).
var walkers = sync.Pool{New: func() any {
	w := &walker{}
	w.dec = jsontext.NewDecoder(&w.idle)
	w.enc = jsontext.NewEncoder(&w.idle)
	return w
}}

// getWalker returns a walker reading b and writing to out.
func getWalker(b []byte, out *bytes.Buffer) *walker {
	w := walkers.Get().(*walker)
	w.in = *bytes.NewBuffer(b)
	w.dec.Reset(&w.in)
	w.enc.Reset(out)
	return w
}

func putWalker(w *walker) {
	w.dec.Reset(&w.idle)
	w.enc.Reset(&w.idle)
	w.in = bytes.Buffer{}
	walkers.Put(w)
}

func (w *walker) token() (jsontext.Token, error) {
	t, err := w.dec.ReadToken()
	if err != nil {
		return t, classify(err)
	}
	if w.dec.StackDepth() > maxJSONDepth {
		return t, errRPCInvalid
	}
	if err := w.enc.WriteToken(t); err != nil {
		return t, errRPCParse
	}
	return t, nil
}

// skip copies one value.
func (w *walker) skip() error {
	start := w.dec.StackDepth()
	for {
		if _, err := w.token(); err != nil {
			return err
		}
		if w.dec.StackDepth() == start {
			return nil
		}
	}
}

// str reads a string value; ok is false (and the value copied) for any
// other kind.
func (w *walker) str() (s string, ok bool, err error) {
	if w.dec.PeekKind() != '"' {
		return "", false, w.skip()
	}
	t, err := w.token()
	if err != nil {
		return "", false, err
	}
	return t.String(), true, nil
}

// message reads one JSON-RPC message object.
func (w *walker) message() (rpcMsg, error) {
	var m rpcMsg
	if t, err := w.token(); err != nil {
		return m, err
	} else if t.Kind() != '{' {
		return m, errRPCInvalid
	}
	version := false
	for w.dec.PeekKind() != '}' {
		nt, err := w.token()
		if err != nil {
			return m, err
		}
		name := nt.String()
		if variantOf(name, messageMembers) {
			return m, errRPCAmbiguous
		}
		switch name {
		case "jsonrpc":
			v, ok, err := w.str()
			if err != nil {
				return m, err
			}
			if !ok || v != "2.0" {
				return m, errRPCInvalid
			}
			version = true
		case "method":
			v, ok, err := w.str()
			if err != nil {
				return m, err
			}
			if !ok {
				return m, errRPCInvalid
			}
			m.Method, m.HasMethod = v, true
		case "id":
			switch w.dec.PeekKind() {
			case '"':
				t, err := w.token()
				if err != nil {
					return m, err
				}
				q, err := jsontext.AppendQuote(nil, t.String())
				if err != nil {
					return m, errRPCParse
				}
				m.ID = string(q)
			case '0':
				t, err := w.token()
				if err != nil {
					return m, err
				}
				m.ID = t.String() // the client's exact number spelling
			case 'n':
				if _, err := w.token(); err != nil {
					return m, err
				}
			default:
				if _, err := w.dec.ReadToken(); err != nil {
					return m, classify(err)
				}
				return m, errRPCInvalid // an id is a string, a number or null
			}
		case "params":
			switch w.dec.PeekKind() {
			case '{':
				if err := w.params(&m); err != nil {
					return m, err
				}
			case '[', 'n':
				if err := w.skip(); err != nil {
					return m, err
				}
			default:
				if _, err := w.dec.ReadToken(); err != nil {
					return m, classify(err)
				}
				return m, errRPCInvalid // params are structured
			}
		default:
			if err := w.skip(); err != nil {
				return m, err
			}
		}
	}
	if _, err := w.token(); err != nil { // '}'
		return m, err
	}
	if !version {
		return m, errRPCInvalid
	}
	return m, nil
}

// params reads a params object, noting name and uri.
func (w *walker) params(m *rpcMsg) error {
	if _, err := w.token(); err != nil { // '{'
		return err
	}
	for w.dec.PeekKind() != '}' {
		nt, err := w.token()
		if err != nil {
			return err
		}
		name := nt.String()
		if variantOf(name, paramsMembers) {
			return errRPCAmbiguous
		}
		switch name {
		case "name":
			v, ok, err := w.str()
			if err != nil {
				return err
			}
			m.Name, m.HasName = v, ok
		case "uri":
			v, ok, err := w.str()
			if err != nil {
				return err
			}
			m.URI, m.HasURI = v, ok
		default:
			if err := w.skip(); err != nil {
				return err
			}
		}
	}
	_, err := w.token() // '}'
	return err
}

// withID puts id into one of the fixed JSON-RPC error bodies (which all
// start with the null id); other bodies and an empty id leave it unchanged.
func withID(body, id string) string {
	const nullID = `{"jsonrpc":"2.0","id":null,`
	if id == "" || !strings.HasPrefix(body, nullID) {
		return body
	}
	return `{"jsonrpc":"2.0","id":` + id + `,` + body[len(nullID):]
}

// toolFilter decides which tools a tools/list result keeps: those
// wire.ToolVisible shows, the rule the control plane applies to tools/call.
type toolFilter struct {
	allowed, disallowed []string
}

func newToolFilter(allowed, disallowed []string) *toolFilter {
	if len(allowed) == 0 && len(disallowed) == 0 {
		return nil
	}
	return &toolFilter{allowed: allowed, disallowed: disallowed}
}

func (f *toolFilter) keep(name string) bool {
	return wire.ToolVisible(f.allowed, f.disallowed, name)
}

// errUnchecked: an upstream message that cannot be decoded exactly, so its
// tools cannot be filtered; it must not reach the client.
var errUnchecked = errors.New("upstream message cannot be checked")

// rewrite filters result.tools of every message in msg (an object or a
// batch array), whatever its id: a response cannot be trusted to name the
// request it answers the way the request spelled it. A message without
// result.tools is returned as is. Anything that is not exactly decodable
// JSON-RPC (duplicate names, case variants of the members read, invalid
// UTF-8, trailing data, result.tools not an array) is errUnchecked.
func (f *toolFilter) rewrite(msg []byte) ([]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(msg))
	switch dec.PeekKind() {
	case '{':
		v, err := dec.ReadValue()
		if err != nil {
			return nil, errUnchecked
		}
		v = v.Clone()
		if _, err := dec.ReadToken(); err != io.EOF {
			return nil, errUnchecked
		}
		n, changed, err := f.rewriteOne(v)
		if err != nil {
			return nil, err
		}
		if !changed {
			return msg, nil
		}
		return n, nil
	case '[':
		if _, err := dec.ReadToken(); err != nil {
			return nil, errUnchecked
		}
		var elems []jsontext.Value
		anyChanged := false
		for dec.PeekKind() != ']' {
			if dec.PeekKind() != '{' {
				return nil, errUnchecked
			}
			v, err := dec.ReadValue()
			if err != nil {
				return nil, errUnchecked
			}
			n, changed, err := f.rewriteOne(v.Clone())
			if err != nil {
				return nil, err
			}
			anyChanged = anyChanged || changed
			elems = append(elems, n)
		}
		if _, err := dec.ReadToken(); err != nil {
			return nil, errUnchecked
		}
		if _, err := dec.ReadToken(); err != io.EOF {
			return nil, errUnchecked
		}
		if !anyChanged {
			return msg, nil
		}
		var buf bytes.Buffer
		enc := jsontext.NewEncoder(&buf)
		if err := enc.WriteToken(jsontext.BeginArray); err != nil {
			return nil, errUnchecked
		}
		for _, e := range elems {
			if err := enc.WriteValue(e); err != nil {
				return nil, errUnchecked
			}
		}
		if err := enc.WriteToken(jsontext.EndArray); err != nil {
			return nil, errUnchecked
		}
		return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
	}
	return nil, errUnchecked
}

// member is one name/value pair of an object, in order.
type member struct {
	name  string
	value jsontext.Value
}

// objectMembers splits an object (already validated) into its members;
// errUnchecked when a name is a variant of one in watch.
func objectMembers(v jsontext.Value, watch []string) ([]member, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(v))
	if t, err := dec.ReadToken(); err != nil || t.Kind() != '{' {
		return nil, errUnchecked
	}
	var out []member
	for dec.PeekKind() != '}' {
		t, err := dec.ReadToken()
		if err != nil {
			return nil, errUnchecked
		}
		name := t.String()
		if variantOf(name, watch) {
			return nil, errUnchecked
		}
		val, err := dec.ReadValue()
		if err != nil {
			return nil, errUnchecked
		}
		out = append(out, member{name: name, value: val.Clone()})
	}
	return out, nil
}

func find(ms []member, name string) int {
	for i, m := range ms {
		if m.name == name {
			return i
		}
	}
	return -1
}

func encodeObject(ms []member) (jsontext.Value, error) {
	var buf bytes.Buffer
	enc := jsontext.NewEncoder(&buf)
	if err := enc.WriteToken(jsontext.BeginObject); err != nil {
		return nil, err
	}
	for _, m := range ms {
		if err := enc.WriteToken(jsontext.String(m.name)); err != nil {
			return nil, err
		}
		if err := enc.WriteValue(m.value); err != nil {
			return nil, err
		}
	}
	if err := enc.WriteToken(jsontext.EndObject); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// rewriteOne filters result.tools of one message object.
func (f *toolFilter) rewriteOne(v jsontext.Value) (jsontext.Value, bool, error) {
	top, err := objectMembers(v, messageMembers)
	if err != nil {
		return nil, false, err
	}
	ri := find(top, "result")
	if ri < 0 || top[ri].value.Kind() != '{' {
		return v, false, nil
	}
	res, err := objectMembers(top[ri].value, resultMembers)
	if err != nil {
		return nil, false, err
	}
	ti := find(res, "tools")
	if ti < 0 {
		return v, false, nil
	}
	tools := res[ti].value
	if tools.Kind() != '[' {
		return nil, false, errUnchecked
	}
	dec := jsontext.NewDecoder(bytes.NewReader(tools))
	if _, err := dec.ReadToken(); err != nil {
		return nil, false, errUnchecked
	}
	var buf bytes.Buffer
	enc := jsontext.NewEncoder(&buf)
	if err := enc.WriteToken(jsontext.BeginArray); err != nil {
		return nil, false, errUnchecked
	}
	for dec.PeekKind() != ']' {
		tv, err := dec.ReadValue()
		if err != nil {
			return nil, false, errUnchecked
		}
		if !f.keepTool(tv) {
			continue
		}
		if err := enc.WriteValue(tv); err != nil {
			return nil, false, errUnchecked
		}
	}
	if err := enc.WriteToken(jsontext.EndArray); err != nil {
		return nil, false, errUnchecked
	}
	res[ti].value = bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if top[ri].value, err = encodeObject(res); err != nil {
		return nil, false, errUnchecked
	}
	out, err := encodeObject(top)
	if err != nil {
		return nil, false, errUnchecked
	}
	return out, true, nil
}

// keepTool reports whether a tool entry passes the filter: it must be an
// object with exactly one name member, a string, that the lists allow.
// What cannot be checked is dropped (fail closed).
func (f *toolFilter) keepTool(tv jsontext.Value) bool {
	if tv.Kind() != '{' {
		return false
	}
	ms, err := objectMembers(tv, toolMembers)
	if err != nil {
		return false
	}
	i := find(ms, "name")
	if i < 0 || ms[i].value.Kind() != '"' {
		return false
	}
	name, err := jsontext.AppendUnquote(nil, ms[i].value)
	if err != nil {
		return false
	}
	return f.keep(string(name))
}
