package dataplane

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	authorizev1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/authorize/v1"
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
	paramsMembers  = []string{"name", "uri", "_meta", "requestState"}
	metaMembers    = []string{metaKeyProtocolVersion}
	resultMembers  = []string{"tools", "resources", "resourceTemplates", "prompts"}
)

// rpcCall is what authorization needs from one JSON-RPC message.
type rpcCall struct {
	Method   string
	Tool     string // params.name of tools/call
	Resource string // params.uri of resources/read
	Prompt   string // params.name of prompts/get
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
	// IsCall: a request with an id (not a notification, not a response).
	IsCall bool
	// MetaVersion is params._meta["io.modelcontextprotocol/protocolVersion"]
	// when a string; MetaVersionSet when the member is there at all.
	MetaVersion    string
	MetaVersionSet bool
	// State is params.requestState (a multi-round-trip retry), when a
	// string; HasState when the member is there at all.
	State    string
	HasState bool
}

// rpcBody is a parsed POST body.
type rpcBody struct {
	Calls []rpcCall // distinct (method, tool) pairs, in order
	Batch bool
	// First is the first (for a single request, the only) message.
	First rpcMsg
	// Msgs are all messages, in order.
	Msgs []rpcMsg
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
	out.Msgs = msgs
	seen := map[rpcCall]bool{}
	for _, m := range msgs {
		c := rpcCall{Method: m.Method}
		// What a call acts on is what policy decides on: without it there
		// is nothing to authorize.
		switch m.Method {
		case "tools/call":
			if !m.HasName {
				return rpcBody{}, errRPCInvalid
			}
			c.Tool = m.Name
		case "resources/read":
			if !m.HasURI {
				return rpcBody{}, errRPCInvalid
			}
			c.Resource = m.URI
		case "prompts/get":
			if !m.HasName {
				return rpcBody{}, errRPCInvalid
			}
			c.Prompt = m.Name
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
	loose := looseName(name)
	for _, m := range members {
		if strings.EqualFold(loose, looseName(m)) {
			return true
		}
	}
	return false
}

// looseName is name without '-' and '_', as a dash/underscore-ignoring
// decoder compares it.
func looseName(name string) string {
	if !strings.ContainsAny(name, "-_") {
		return name
	}
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' {
			return -1
		}
		return r
	}, name)
}

// walker decodes tokens and re-encodes each one as it is read.
type walker struct {
	dec *jsontext.Decoder
	enc *jsontext.Encoder
	// state, when set, is written instead of a string params.requestState.
	state *string
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
	w.state = nil
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
			m.IsCall = true
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
				m.IsCall = false // a null id only answers an unparsable request
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
	m.IsCall = m.IsCall && m.HasMethod
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
		case "_meta":
			if w.dec.PeekKind() != '{' {
				if err := w.skip(); err != nil {
					return err
				}
				continue
			}
			if err := w.meta(m); err != nil {
				return err
			}
		case "requestState":
			m.HasState = true
			if w.state != nil && w.dec.PeekKind() == '"' {
				t, err := w.dec.ReadToken()
				if err != nil {
					return classify(err)
				}
				m.State = t.String()
				if err := w.enc.WriteToken(jsontext.String(*w.state)); err != nil {
					return errRPCParse
				}
				continue
			}
			v, ok, err := w.str()
			if err != nil {
				return err
			}
			m.State = v
			if !ok {
				m.State = ""
			}
		default:
			if err := w.skip(); err != nil {
				return err
			}
		}
	}
	_, err := w.token() // '}'
	return err
}

// meta reads a params._meta object, noting the protocol version.
func (w *walker) meta(m *rpcMsg) error {
	if _, err := w.token(); err != nil { // '{'
		return err
	}
	for w.dec.PeekKind() != '}' {
		nt, err := w.token()
		if err != nil {
			return err
		}
		name := nt.String()
		if variantOf(name, metaMembers) {
			return errRPCAmbiguous
		}
		if name != metaKeyProtocolVersion {
			if err := w.skip(); err != nil {
				return err
			}
			continue
		}
		v, ok, err := w.str()
		if err != nil {
			return err
		}
		m.MetaVersion, m.MetaVersionSet = v, true
		if !ok {
			m.MetaVersion = ""
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

// toolFilter decides which tools, resources, resource templates and
// prompts a list result keeps: those api/wire.Visible shows for the ALLOW
// (the server's tool lists and the principal's compiled policy rules), the
// very function the control plane decides tools/call, resources/read and
// prompts/get with. A principal never sees what it cannot call.
type toolFilter struct {
	allow *authorizev1.Allow
	// pins, when set, checks every tool against its pin (tool pinning).
	pins *pinCheck
}

// newListFilter returns the filter of an ALLOW, nil when nothing is
// filtered.
func newListFilter(a *authorizev1.Allow) *toolFilter {
	if len(a.GetAllowedTools()) == 0 && len(a.GetDisallowedTools()) == 0 && len(a.GetVisibility()) == 0 {
		return nil
	}
	return &toolFilter{allow: a}
}

// newToolFilter is the filter of the server tool lists alone.
func newToolFilter(allowed, disallowed []string) *toolFilter {
	return newListFilter(&authorizev1.Allow{AllowedTools: allowed, DisallowedTools: disallowed})
}

func (f *toolFilter) keepKind(kind authorizev1.PolicyKind, name string) bool {
	ok, _ := wire.Visible(f.allow.GetAllowedTools(), f.allow.GetDisallowedTools(), f.allow.GetVisibility(), kind, name)
	return ok
}

// listMember is one list a result may carry: its member name, the member
// of each entry naming it, and the kind policy matches it as.
type listMember struct {
	list, key string
	kind      authorizev1.PolicyKind
}

// listMembers are the lists filtered in a result: tools/list,
// resources/list, resources/templates/list (a template is matched by its
// uriTemplate string) and prompts/list.
var listMembers = []listMember{
	{"tools", "name", authorizev1.PolicyKind_POLICY_KIND_TOOL},
	{"resources", "uri", authorizev1.PolicyKind_POLICY_KIND_RESOURCE},
	{"resourceTemplates", "uriTemplate", authorizev1.PolicyKind_POLICY_KIND_RESOURCE},
	{"prompts", "name", authorizev1.PolicyKind_POLICY_KIND_PROMPT},
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
	return rewriteMessages(msg, f.rewriteOne)
}

// messageRewriter rewrites an upstream message (an object or a batch array).
type messageRewriter interface {
	rewrite(msg []byte) ([]byte, error)
}

// rewriteMessages applies one to every message of msg (an object or a batch
// array); msg itself is returned when nothing changed. Anything that is not
// exactly decodable JSON is errUnchecked.
func rewriteMessages(msg []byte, one func(jsontext.Value) (jsontext.Value, bool, error)) ([]byte, error) {
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
		n, changed, err := one(v)
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
			n, changed, err := one(v.Clone())
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

// rewriteOne filters result.tools, result.resources,
// result.resourceTemplates and result.prompts of one message object.
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
	changed := false
	for _, lm := range listMembers {
		li := find(res, lm.list)
		if li < 0 {
			continue
		}
		n, err := f.filterList(res[li].value, lm)
		if err != nil {
			return nil, false, err
		}
		res[li].value = n
		changed = true
	}
	if !changed {
		return v, false, nil
	}
	if top[ri].value, err = encodeObject(res); err != nil {
		return nil, false, errUnchecked
	}
	out, err := encodeObject(top)
	if err != nil {
		return nil, false, errUnchecked
	}
	return out, true, nil
}

// filterList keeps the entries of one list that pass the filter.
func (f *toolFilter) filterList(list jsontext.Value, lm listMember) (jsontext.Value, error) {
	if list.Kind() != '[' {
		return nil, errUnchecked
	}
	dec := jsontext.NewDecoder(bytes.NewReader(list))
	if _, err := dec.ReadToken(); err != nil {
		return nil, errUnchecked
	}
	var buf bytes.Buffer
	enc := jsontext.NewEncoder(&buf)
	if err := enc.WriteToken(jsontext.BeginArray); err != nil {
		return nil, errUnchecked
	}
	for dec.PeekKind() != ']' {
		ev, err := dec.ReadValue()
		if err != nil {
			return nil, errUnchecked
		}
		if !f.keepEntry(ev, lm) {
			continue
		}
		if err := enc.WriteValue(ev); err != nil {
			return nil, errUnchecked
		}
	}
	if err := enc.WriteToken(jsontext.EndArray); err != nil {
		return nil, errUnchecked
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// keepEntry reports whether a list entry passes the filter: it must be
// an object with exactly one key member (name, uri or uriTemplate), a
// string, that the filter shows. What cannot be checked is dropped (fail
// closed).
func (f *toolFilter) keepEntry(tv jsontext.Value, lm listMember) bool {
	if tv.Kind() != '{' {
		return false
	}
	ms, err := objectMembers(tv, []string{lm.key})
	if err != nil {
		return false
	}
	i := find(ms, lm.key)
	if i < 0 || ms[i].value.Kind() != '"' {
		return false
	}
	name, err := jsontext.AppendUnquote(nil, ms[i].value)
	if err != nil {
		return false
	}
	if !f.keepKind(lm.kind, string(name)) {
		return false
	}
	return lm.kind != authorizev1.PolicyKind_POLICY_KIND_TOOL || f.pins == nil || f.pins.check(tv)
}
