package bridge

import (
	"bytes"
	"io"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// unmarshal decodes exactly (json v2: case-sensitive names, duplicates and
// invalid UTF-8 rejected).
func unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// member is one name/value pair of an object, in order.
type member struct {
	name  string
	value jsontext.Value
}

// members splits an object into its members, in order.
func members(v []byte) ([]member, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(v))
	if t, err := dec.ReadToken(); err != nil || t.Kind() != '{' {
		return nil, ErrMalformed
	}
	var out []member
	for dec.PeekKind() != '}' {
		t, err := dec.ReadToken()
		if err != nil {
			return nil, ErrMalformed
		}
		name := t.String() // before the next read voids t
		val, err := dec.ReadValue()
		if err != nil {
			return nil, ErrMalformed
		}
		out = append(out, member{name: name, value: val.Clone()})
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, ErrMalformed
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, ErrMalformed // exactly one object
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

// encode writes ms as one compact object.
func encode(ms []member) ([]byte, error) {
	var buf bytes.Buffer
	enc := jsontext.NewEncoder(&buf)
	if err := enc.WriteToken(jsontext.BeginObject); err != nil {
		return nil, ErrMalformed
	}
	for _, m := range ms {
		if err := enc.WriteToken(jsontext.String(m.name)); err != nil {
			return nil, ErrMalformed
		}
		if err := enc.WriteValue(m.value); err != nil {
			return nil, ErrMalformed
		}
	}
	if err := enc.WriteToken(jsontext.EndObject); err != nil {
		return nil, ErrMalformed
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
