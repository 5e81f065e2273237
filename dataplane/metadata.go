package dataplane

import (
	"encoding/json"
	"net/http"

	"github.com/mcpgate/mcpgate/api/wire"
)

// protectedResource is the RFC 9728 document; field order is the wire order.
type protectedResource struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
}

// serveMetadata serves the per-route protected-resource metadata. The root
// document is 404 on purpose: a multi-route gateway has no origin-level
// resource, and a path resource at the root would fail client validation.
//
// The document is the same for every well-formed route path, configured or
// not, and names no scopes: like the 401 challenge it answers anonymous
// callers, so it must not tell which routes exist (or which scopes one has).
// Clients then request no scope, which the gateway's authorization server
// grants as all of the route's scopes. It is built here, without asking the
// control plane.
func (p *Proxy) serveMetadata(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	route, ok := wire.ParseMetadataPath(r.URL.Path)
	if !ok {
		writeFixed(w, http.StatusNotFound, bodyNotFound)
		return
	}
	switch r.Method {
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		h.Set("Access-Control-Allow-Headers", allowHeaders)
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodGet, http.MethodHead:
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		writeFixed(w, http.StatusMethodNotAllowed, bodyMethodNotAllowed)
		return
	}
	doc, err := json.Marshal(protectedResource{
		Resource:               wire.ResourceURL(p.publicBase, route),
		AuthorizationServers:   []string{p.publicBase},
		BearerMethodsSupported: []string{"header"},
	})
	if err != nil { // cannot happen for these types; still never a 500
		writeFixed(w, http.StatusServiceUnavailable, bodyUnavailable)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "max-age=60")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(doc)
	}
}
