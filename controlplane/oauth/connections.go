package oauth

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	vaultv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/vault/v1"
	"github.com/mcpgate/mcpgate/api/wire"
	"github.com/mcpgate/mcpgate/controlplane/store"
)

type connectionRow struct {
	Server    string
	Scopes    string
	State     string
	Updated   string
	Refreshes bool
}

type connectionsPage struct {
	Principal   string
	Connections []connectionRow
	Available   []string
	CSRF        string
	Message     string
}

// connections shows the signed-in person's upstream connections.
func (s *Server) connections(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	sess, ok := s.session(r)
	if !ok {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, issuer(r)+"/signin?next=connections", http.StatusFound)
		return
	}
	principal := sess.rec.GetPrincipal()
	page := connectionsPage{Principal: principal, CSRF: sess.rec.GetCsrf()}
	connected := map[string]bool{}
	p, _ := s.st.Principal(principal)
	for _, g := range s.st.Grants() {
		c := g.Conn
		if c.GetPrincipal() != principal || c.GetPrincipalUid() != p.GetUid() {
			continue // another principal's, or an earlier one's of this name
		}
		connected[c.GetServer()] = true
		state := "connected"
		if c.GetState() != vaultv1.ConnectionState_CONNECTION_STATE_ACTIVE {
			state = "needs sign-in again"
		}
		row := connectionRow{Server: c.GetServer(), Scopes: strings.Join(c.GetScopes(), " "), State: state, Refreshes: c.GetHasRefreshToken()}
		if t := c.GetUpdateTime(); t != nil {
			row.Updated = t.AsTime().UTC().Format(time.DateTime + " UTC")
		}
		page.Connections = append(page.Connections, row)
	}
	for _, srv := range s.st.Servers() {
		name := srv.Def.GetName()
		if upstreamOAuth(srv.Def) && !connected[name] && s.mayConnect(principal, name) {
			page.Available = append(page.Available, name)
		}
	}
	switch r.URL.Query().Get("done") {
	case "disconnected":
		page.Message = "Disconnected."
	}
	// ?connect=<server> is the connect URL an aggregate route names for a
	// member that needs the person's connection (wire.ConnectURL): the
	// page points at that server; connecting is still the page's
	// CSRF-protected POST.
	if name := r.URL.Query().Get("connect"); name != "" && wire.ValidServerName(name) {
		switch {
		case slices.Contains(page.Available, name):
			page.Message = "Connect " + name + " to use its tools through the gateway."
			page.Available = append([]string{name}, slices.DeleteFunc(page.Available, func(s string) bool { return s == name })...)
		case connected[name]:
			page.Message = name + " is connected."
		}
	}
	s.render(w, r, http.StatusOK, "connections.html", page)
}

// connectionForm checks a POST from the connections page and returns the
// session and the server it names.
func (s *Server) connectionForm(w http.ResponseWriter, r *http.Request) (*session, string, bool) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return nil, "", false
	}
	if !s.parseForm(w, r) {
		return nil, "", false
	}
	sess, ok := s.session(r)
	if !ok || !s.csrfOK(sess, r.PostForm.Get("csrf")) {
		s.errorPage(w, r, http.StatusForbidden, "Forbidden", "This form is not valid for your session. Reload the connections page.")
		return nil, "", false
	}
	name := r.PostForm.Get("server")
	if _, ok := s.st.Server(name); !ok || !s.mayConnect(sess.rec.GetPrincipal(), name) {
		s.errorPage(w, r, http.StatusBadRequest, "Unknown server", "There is no such server for your account.")
		return nil, "", false
	}
	return sess, name, true
}

// connect starts the upstream sign-in for a server from the connections
// page; the callback returns to the page.
func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	sess, name, ok := s.connectionForm(w, r)
	if !ok {
		return
	}
	srv, _ := s.st.Server(name)
	if !upstreamOAuth(srv.Def) {
		s.errorPage(w, r, http.StatusBadRequest, "Nothing to connect", "This server does not use a personal sign-in.")
		return
	}
	s.startUpstream(w, r, sess, srv, nil)
}

// disconnect revokes the person's grant for a server.
func (s *Server) disconnect(w http.ResponseWriter, r *http.Request) {
	sess, name, ok := s.connectionForm(w, r)
	if !ok {
		return
	}
	upstream, err := s.grants.Revoke(r.Context(), sess.rec.GetPrincipal(), name)
	if errors.Is(err, store.ErrNotFound) {
		err = nil // already gone
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "revoke connection", "server", name, "err", err)
		s.errorPage(w, r, http.StatusServiceUnavailable, "Not disconnected", "The connection could not be removed. Try again in a moment.")
		return
	}
	s.log.InfoContext(r.Context(), "connection revoked", "server", name, "principal", sess.rec.GetPrincipal(), "upstream_revoked", upstream)
	// Disconnecting ends the MCP clients' gateway tokens for the route too.
	if _, err := s.RevokeTokens(r.Context(), sess.rec.GetPrincipal(), "", name); err != nil {
		s.log.WarnContext(r.Context(), "revoke tokens of a disconnected route", "server", name, "err", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, issuer(r)+"/connections?done=disconnected", http.StatusSeeOther)
}
