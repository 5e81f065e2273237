package bridge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"

	"github.com/go-json-experiment/json/jsontext"
)

// The reverse bridge: a 2025-11-25 client on an upstream that speaks only
// 2026-07-28. The client's initialize is answered from the upstream's
// server/discover ([ProbeDiscover], [InitializeFromDiscover]); the
// client's capabilities and info travel in its sealed session handle
// ([EncodeMeta], [DecodeMeta]) and each later request is sent as a
// 2026-07-28 request ([Upgrade]) with no upstream session.

// legacyVersions are the handshake versions the gateway answers a
// 2025-style initialize with, newest first.
var legacyVersions = []string{Version20251125, "2025-06-18", "2025-03-26"}

// ClientMetaOfInitialize reads what an initialize request says about its
// client: its capabilities, clientInfo and requested protocol version.
func ClientMetaOfInitialize(body []byte) (ClientMeta, string, error) {
	var msg struct {
		Params struct {
			ProtocolVersion string         `json:"protocolVersion"`
			Capabilities    jsontext.Value `json:"capabilities"`
			ClientInfo      jsontext.Value `json:"clientInfo"`
		} `json:"params"`
	}
	if err := unmarshal(body, &msg); err != nil {
		return ClientMeta{}, "", ErrMalformed
	}
	m := ClientMeta{Capabilities: msg.Params.Capabilities, ClientInfo: msg.Params.ClientInfo}
	if m.Capabilities.Kind() != '{' {
		m.Capabilities = jsontext.Value(`{}`)
	}
	if m.ClientInfo.Kind() != '{' {
		m.ClientInfo = nil
	}
	return m, msg.Params.ProtocolVersion, nil
}

// WithoutInputCapabilities is m without the client capabilities a 2025
// client cannot use through the bridge: elicitation, sampling and roots
// (a 2026-07-28 upstream asks for them with input_required results, which
// a 2025-11-25 client does not read), so the upstream does not ask.
func WithoutInputCapabilities(m ClientMeta) (ClientMeta, error) {
	ms, err := members(m.Capabilities)
	if err != nil {
		return ClientMeta{}, err
	}
	ms = slices.DeleteFunc(ms, func(x member) bool {
		return x.name == "elicitation" || x.name == "sampling" || x.name == "roots"
	})
	if m.Capabilities, err = encode(ms); err != nil {
		return ClientMeta{}, err
	}
	return m, nil
}

// EncodeMeta is the compact form of m kept in a session handle.
func EncodeMeta(m ClientMeta) (string, error) {
	ms := []member{{"caps", m.Capabilities}}
	if m.ClientInfo != nil {
		ms = append(ms, member{"info", m.ClientInfo})
	}
	b, err := encode(ms)
	return string(b), err
}

// DecodeMeta reverses EncodeMeta.
func DecodeMeta(s string) (ClientMeta, error) {
	var v struct {
		Caps jsontext.Value `json:"caps"`
		Info jsontext.Value `json:"info"`
	}
	if err := unmarshal([]byte(s), &v); err != nil || v.Caps.Kind() != '{' {
		return ClientMeta{}, ErrMalformed
	}
	m := ClientMeta{Capabilities: v.Caps}
	if v.Info.Kind() == '{' {
		m.ClientInfo = v.Info
	}
	return m, nil
}

// metaMembers are the 2026-07-28 _meta triple for m.
func metaMembers(m ClientMeta) []member {
	ms := []member{
		{MetaProtocolVersion, jsontext.Value(`"` + Version20260728 + `"`)},
		{MetaClientCapabilities, m.Capabilities},
	}
	if m.ClientInfo != nil {
		ms = append(ms, member{MetaClientInfo, m.ClientInfo})
	}
	return ms
}

// Upgrade returns a 2025-style request as the 2026-07-28 request for m's
// client: params._meta gains the protocol version, capabilities and client
// info (replacing any the client sent under those keys; its other _meta
// keys, progressToken above all, are kept).
func Upgrade(body []byte, m ClientMeta) ([]byte, error) {
	top, err := members(body)
	if err != nil {
		return nil, err
	}
	var params []member
	pi := find(top, "params")
	switch {
	case pi < 0:
		top = append(top, member{name: "params"})
		pi = len(top) - 1
	case top[pi].value.Kind() == '{':
		if params, err = members(top[pi].value); err != nil {
			return nil, err
		}
	default:
		return nil, ErrMalformed
	}
	var meta []member
	mi := find(params, "_meta")
	switch {
	case mi < 0:
		params = append(params, member{name: "_meta"})
		mi = len(params) - 1
	case params[mi].value.Kind() == '{':
		if meta, err = members(params[mi].value); err != nil {
			return nil, err
		}
	default:
		return nil, ErrMalformed
	}
	meta = slices.DeleteFunc(meta, func(x member) bool {
		return x.name == MetaProtocolVersion || x.name == MetaClientCapabilities || x.name == MetaClientInfo
	})
	meta = append(meta, metaMembers(m)...)
	if params[mi].value, err = encode(meta); err != nil {
		return nil, err
	}
	if top[pi].value, err = encode(params); err != nil {
		return nil, err
	}
	return encode(top)
}

// ProbeDiscover asks url for server/discover as m's client would under
// 2026-07-28, with header (the decision's upstream headers). It returns the
// discover result and whether the upstream speaks only 2026-07-28 or later
// (its supportedVersions lists nothing older). An upstream that does not
// answer discover with a result is not modern-only (err is nil, result
// nil).
func ProbeDiscover(ctx context.Context, client *http.Client, url string, header http.Header, m ClientMeta) (jsontext.Value, bool, error) {
	meta, err := encode(metaMembers(m))
	if err != nil {
		return nil, false, err
	}
	params, err := encode([]member{{"_meta", meta}})
	if err != nil {
		return nil, false, err
	}
	body, err := encode([]member{{"jsonrpc", jsontext.Value(`"2.0"`)}, {"id", jsontext.Value(`"mcpgate-bridge-discover"`)}, {"method", jsontext.Value(`"server/discover"`)}, {"params", params}})
	if err != nil {
		return nil, false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, false, fmt.Errorf("%w: bad URL", ErrUpstream)
	}
	for k, vs := range header {
		req.Header[k] = append([]string(nil), vs...)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", Version20260728)
	req.Header.Set("Mcp-Method", "server/discover")
	resp, err := client.Do(req)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, false, ErrUnauthorized
	}
	if resp.StatusCode != http.StatusOK {
		return nil, false, nil
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		b = firstEventData(b)
	}
	var msg struct {
		Result jsontext.Value `json:"result"`
	}
	if err := unmarshal(b, &msg); err != nil || msg.Result.Kind() != '{' {
		return nil, false, nil
	}
	var res struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := unmarshal(msg.Result, &res); err != nil || len(res.SupportedVersions) == 0 {
		return nil, false, nil
	}
	for _, v := range res.SupportedVersions {
		if v < Version20260728 {
			return msg.Result.Clone(), false, nil
		}
	}
	return msg.Result.Clone(), true, nil
}

// InitializeFromDiscover is the initialize response for request id
// (compact JSON) of a client that asked for requested, built from a
// 2026-07-28 upstream's discover result: its capabilities, instructions
// and serverInfo, and the client's version when the gateway speaks it
// (2025-11-25 otherwise).
func InitializeFromDiscover(id, requested string, discover jsontext.Value) ([]byte, error) {
	var d struct {
		Capabilities jsontext.Value            `json:"capabilities"`
		Instructions string                    `json:"instructions"`
		Meta         map[string]jsontext.Value `json:"_meta"`
	}
	if err := unmarshal(discover, &d); err != nil {
		return nil, ErrMalformed
	}
	version := Version20251125
	if slices.Contains(legacyVersions, requested) {
		version = requested
	}
	if d.Capabilities.Kind() != '{' {
		d.Capabilities = jsontext.Value(`{}`)
	}
	info := d.Meta[MetaServerInfo]
	if info.Kind() != '{' {
		info = jsontext.Value(`{"name":"mcpgate","version":"1"}`)
	}
	result := []member{
		{"protocolVersion", jsontext.Value(`"` + version + `"`)},
		{"capabilities", d.Capabilities},
		{"serverInfo", info},
	}
	if d.Instructions != "" {
		q, err := jsontext.AppendQuote(nil, d.Instructions)
		if err != nil {
			return nil, ErrMalformed
		}
		result = append(result, member{"instructions", q})
	}
	rv, err := encode(result)
	if err != nil {
		return nil, err
	}
	return encode([]member{{"jsonrpc", jsontext.Value(`"2.0"`)}, {"id", jsontext.Value(id)}, {"result", rv}})
}
