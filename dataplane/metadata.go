package dataplane

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
)

// prmPrefix is the RFC 9728 well-known prefix; a route's document lives at
// prmPrefix + "/<server>/mcp".
const prmPrefix = "/.well-known/oauth-protected-resource"

// protectedResource is the RFC 9728 document; field order is the wire order.
type protectedResource struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
}

// serveMetadata serves the per-route protected-resource metadata. The root
// document is 404 on purpose: a multi-route gateway has no origin-level
// resource, and a path resource at the root would fail client validation.
func (p *Proxy) serveMetadata(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	rest := strings.TrimPrefix(r.URL.Path, prmPrefix)
	route, ok := parseRoute(rest)
	if !ok || strings.HasSuffix(rest, "/") {
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
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	d, err := p.describe(ctx, route)
	switch {
	case err != nil:
		p.log.WarnContext(ctx, "describe route failed", slog.String("route", route), slog.String("code", codeOf(err)))
		h.Set("Retry-After", "1")
		writeFixed(w, http.StatusServiceUnavailable, bodyUnavailable)
		return
	case !d.GetFound():
		writeFixed(w, http.StatusNotFound, bodyNotFound)
		return
	}
	doc, err := json.Marshal(protectedResource{
		Resource:               p.publicBase + "/" + route + "/mcp",
		AuthorizationServers:   []string{p.publicBase},
		ScopesSupported:        d.GetScopes(),
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
