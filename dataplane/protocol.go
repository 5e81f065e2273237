package dataplane

import (
	"net/http"
	"slices"
)

// The 2026-07-28 protocol next to 2025-11-25 on the same route.
//
// A request follows 2026-07-28 ("modern") when its params._meta carries
// io.modelcontextprotocol/protocolVersion at that version or later; the
// MCP-Protocol-Version header must then be present and equal to it, and
// the Mcp-Method (every request) and Mcp-Name (tools/call, prompts/get,
// resources/read) headers must be present and equal to the body. These are
// the rules the official Go SDK (v1.8.0, streamable.go and
// streamable_headers.go) applies as a server, with the same codes and
// statuses: HeaderMismatch -32020 and UnsupportedProtocolVersion -32022
// answered with HTTP 400, MethodNotFound -32601 with HTTP 404 for a modern
// request (SEP-2575). Everything else is the 2025-11-25 protocol, unchanged:
// Mcp-Method / Mcp-Name, when a 2025 client sends them, must still match.

const (
	protocol20260728       = "2026-07-28"
	metaKeyProtocolVersion = "io.modelcontextprotocol/protocolVersion"
)

// modernVersions are the 2026-style protocol versions the gateway speaks.
var modernVersions = []string{protocol20260728}

// Fixed answers of the classification.
const (
	rpcVersionHeaderMissing = `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"MCP-Protocol-Version header is required for requests carrying _meta io.modelcontextprotocol/protocolVersion"}}`
	rpcVersionMismatch      = `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"MCP-Protocol-Version header does not match _meta io.modelcontextprotocol/protocolVersion"}}`
	rpcMcpHeadersMissing    = `{"jsonrpc":"2.0","id":null,"error":{"code":-32020,"message":"Mcp-Method or Mcp-Name header missing"}}`
	rpcMetaVersionMissing   = `{"jsonrpc":"2.0","id":null,"error":{"code":-32602,"message":"missing or invalid _meta field io.modelcontextprotocol/protocolVersion"}}`
	rpcUnsupportedVersion   = `{"jsonrpc":"2.0","id":null,"error":{"code":-32022,"message":"unsupported protocol version","data":{"supported":["2026-07-28"]}}}`
	rpcModernOnly           = `{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"method requires protocol version 2026-07-28 or later"}}`
	rpcRemovedIn2026        = `{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"method not supported in protocol version 2026-07-28"}}`
)

// removedIn2026 are methods a modern request may not use (the Go SDK's
// ServerSession.handle list).
var removedIn2026 = map[string]bool{
	"initialize": true, "ping": true, "notifications/initialized": true,
	"notifications/roots/list_changed": true, "logging/setLevel": true,
	"resources/subscribe": true, "resources/unsubscribe": true,
}

// modernOnly are methods that exist only in 2026-07-28.
var modernOnly = map[string]bool{"server/discover": true, "subscriptions/listen": true}

// needsName are the methods whose params.name (or uri) Mcp-Name mirrors.
func needsName(method string) bool {
	return method == "tools/call" || method == "prompts/get" || method == "resources/read"
}

// classification is what classifyRequest found.
type classification struct {
	// Modern: the request follows 2026-07-28.
	Modern bool
	// Version is the modern request's protocol version.
	Version string
	// Refusal, when Status is not zero, is the fixed answer.
	Status  int
	Refusal string
}

// classifyRequest applies the version and header rules to a parsed POST
// body and its headers. It is pure; a zero Status means the request may go
// on.
func classifyRequest(h http.Header, b rpcBody) classification {
	hvs := valuesFold(h, headerProtocolVersion)
	if len(hvs) > 1 {
		return refused(http.StatusBadRequest, rpcVersionMismatch)
	}
	hv := first(hvs)
	headerModern := hv >= protocol20260728
	var c classification
	for _, m := range b.Msgs {
		// The SDK checks the header against _meta for calls under a modern
		// header, and for any message that carries a _meta version.
		if !(m.IsCall && headerModern) && !m.MetaVersionSet {
			continue
		}
		switch {
		case hv == "":
			return refused(http.StatusBadRequest, rpcVersionHeaderMissing)
		case m.MetaVersion == "":
			return refused(http.StatusBadRequest, rpcMetaVersionMissing)
		case m.MetaVersion != hv:
			return refused(http.StatusBadRequest, rpcVersionMismatch)
		case m.MetaVersion >= protocol20260728 && !slices.Contains(modernVersions, m.MetaVersion):
			return refused(http.StatusBadRequest, rpcUnsupportedVersion)
		}
		if m.IsCall && m.MetaVersion >= protocol20260728 {
			c.Modern, c.Version = true, m.MetaVersion
		}
	}
	if headerModern {
		// 2026-07-28 mirrors the method (and name) of every request in
		// headers; a batch cannot be mirrored.
		if b.Batch {
			return refused(http.StatusBadRequest, rpcHeaderMismatch)
		}
		m := b.First
		ms, ns := valuesFold(h, headerMcpMethod), valuesFold(h, headerMcpName)
		if m.HasMethod && (len(ms) == 0 || (needsName(m.Method) && len(ns) == 0)) {
			return refused(http.StatusBadRequest, rpcMcpHeadersMissing)
		}
	}
	if !headersMatchBody(h, b) {
		return refused(http.StatusBadRequest, rpcHeaderMismatch)
	}
	for _, m := range b.Msgs {
		switch {
		case c.Modern && removedIn2026[m.Method]:
			return refused(http.StatusNotFound, rpcRemovedIn2026)
		case !c.Modern && m.IsCall && modernOnly[m.Method]:
			return refused(http.StatusBadRequest, rpcModernOnly)
		}
	}
	return c
}

func refused(status int, body string) classification {
	return classification{Status: status, Refusal: body}
}
