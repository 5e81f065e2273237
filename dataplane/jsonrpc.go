package dataplane

import (
	"bytes"
	"encoding/json"
	"strings"
)

// rpcCall is what authorization needs from one JSON-RPC message.
type rpcCall struct {
	Method string
	Tool   string // params.name of tools/call
}

// rpcBody is a parsed POST body.
type rpcBody struct {
	Calls []rpcCall // distinct (method, tool) pairs, in order
	Batch bool
	// ToolsListIDs are the compact JSON ids of tools/list requests, whose
	// responses get filtered.
	ToolsListIDs map[string]bool
	// ID is the compact id of a single request (not a batch, not a
	// notification): the gateway's own error answers echo it, so clients
	// match them to their request instead of dropping the session.
	ID string
}

type rpcMessage struct {
	Method string          `json:"method"`
	ID     json.RawMessage `json:"id"`
	Params struct {
		Name json.RawMessage `json:"name"`
	} `json:"params"`
}

// parseBody parses a single JSON-RPC message or a batch. ok is false for
// anything that is not an object or a non-empty array of objects.
func parseBody(b []byte) (rpcBody, bool) {
	t := bytes.TrimSpace(b)
	var msgs []json.RawMessage
	var out rpcBody
	switch {
	case len(t) > 0 && t[0] == '{':
		msgs = []json.RawMessage{t}
	case len(t) > 0 && t[0] == '[':
		if err := json.Unmarshal(t, &msgs); err != nil || len(msgs) == 0 {
			return rpcBody{}, false
		}
		out.Batch = true
	default:
		return rpcBody{}, false
	}
	seen := map[rpcCall]bool{}
	for _, raw := range msgs {
		var m rpcMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return rpcBody{}, false
		}
		c := rpcCall{Method: m.Method}
		if m.Method == "tools/call" {
			var name string
			_ = json.Unmarshal(m.Params.Name, &name)
			c.Tool = name
		}
		if m.Method == "tools/list" && len(m.ID) > 0 {
			if out.ToolsListIDs == nil {
				out.ToolsListIDs = map[string]bool{}
			}
			out.ToolsListIDs[compactJSON(m.ID)] = true
		}
		if !seen[c] {
			seen[c] = true
			out.Calls = append(out.Calls, c)
		}
		if !out.Batch && m.Method != "" {
			out.ID = requestID(m.ID)
		}
	}
	return out, true
}

// requestID returns raw re-encoded when it is a valid JSON-RPC id (a string
// or a number), else "".
func requestID(raw json.RawMessage) string {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return ""
	}
	switch v.(type) {
	case string, float64:
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		if _, isNum := v.(float64); isNum {
			return compactJSON(raw) // keep the client's exact number spelling
		}
		return string(b)
	}
	return ""
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

func compactJSON(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return string(b)
	}
	return buf.String()
}

// toolFilter decides which tools a tools/list result keeps.
type toolFilter struct {
	allowed    map[string]bool // nil: all
	disallowed map[string]bool
}

func newToolFilter(allowed, disallowed []string) *toolFilter {
	if len(allowed) == 0 && len(disallowed) == 0 {
		return nil
	}
	f := &toolFilter{disallowed: map[string]bool{}}
	if len(allowed) > 0 {
		f.allowed = map[string]bool{}
		for _, t := range allowed {
			f.allowed[t] = true
		}
	}
	for _, t := range disallowed {
		f.disallowed[t] = true
	}
	return f
}

func (f *toolFilter) keep(name string) bool {
	if f.allowed != nil && !f.allowed[name] {
		return false
	}
	return !f.disallowed[name]
}

// rewrite filters the tools of every response in msg (an object or a batch
// array) whose id is in ids. It returns msg unchanged when nothing matches or
// msg is not JSON-RPC it understands.
func (f *toolFilter) rewrite(msg []byte, ids map[string]bool) []byte {
	t := bytes.TrimSpace(msg)
	if len(t) == 0 {
		return msg
	}
	if t[0] == '[' {
		var arr []json.RawMessage
		if err := json.Unmarshal(t, &arr); err != nil {
			return msg
		}
		changed := false
		for i, m := range arr {
			if n, ok := f.rewriteOne(m, ids); ok {
				arr[i] = n
				changed = true
			}
		}
		if !changed {
			return msg
		}
		out, err := json.Marshal(arr)
		if err != nil {
			return msg
		}
		return out
	}
	if n, ok := f.rewriteOne(t, ids); ok {
		return n
	}
	return msg
}

func (f *toolFilter) rewriteOne(m json.RawMessage, ids map[string]bool) (json.RawMessage, bool) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(m, &obj); err != nil {
		return nil, false
	}
	id, hasID := obj["id"]
	res, hasRes := obj["result"]
	if !hasID || !hasRes || !ids[compactJSON(id)] {
		return nil, false
	}
	var result map[string]json.RawMessage
	if err := json.Unmarshal(res, &result); err != nil {
		return nil, false
	}
	var tools []json.RawMessage
	if err := json.Unmarshal(result["tools"], &tools); err != nil {
		return nil, false
	}
	kept := make([]json.RawMessage, 0, len(tools))
	for _, tool := range tools {
		var t struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(tool, &t); err != nil || t.Name == "" {
			continue // drop what cannot be checked: fail closed
		}
		if f.keep(t.Name) {
			kept = append(kept, tool)
		}
	}
	nt, err := json.Marshal(kept)
	if err != nil {
		return nil, false
	}
	result["tools"] = nt
	nr, err := json.Marshal(result)
	if err != nil {
		return nil, false
	}
	obj["result"] = nr
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, false
	}
	return out, true
}
