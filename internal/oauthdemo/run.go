package oauthdemo

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	configv1 "github.com/mcpgate/mcpgate/api/gen/mcpgate/config/v1"
)

// Demo is a running demo provider and its notes MCP server, each on its own
// loopback listener (the provider needs its own origin for RFC 8414
// discovery).
type Demo struct {
	Provider *Provider
	NotesURL string
	servers  []*http.Server
}

// Start runs the provider and the notes server on loopback. callbackURL is
// the gateway's /oauth/callback, the only redirect the provider accepts.
func Start(callbackURL string, log *slog.Logger) (*Demo, error) {
	p := New(Config{
		ClientID:     "mcpgate-demo",
		ClientSecret: rand.Text(),
		RedirectURIs: []string{callbackURL},
		Scopes:       []string{"notes.read", "notes.write"},
	}, log)
	d := &Demo{Provider: p}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p.SetIssuer("http://" + pl.Addr().String())
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = pl.Close()
		return nil, err
	}
	d.NotesURL = "http://" + nl.Addr().String() + "/mcp"
	for ln, h := range map[net.Listener]http.Handler{pl: p.Handler(), nl: NotesServer(p, d.NotesURL, log)} {
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		d.servers = append(d.servers, srv)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("demo oauth server stopped", slog.Any("err", err))
			}
		}()
	}
	return d, nil
}

// Server is the gateway's definition of the demo route, client secret
// included (write-only once stored).
func (d *Demo) Server(name string) *configv1.McpServer {
	def, sec := d.Provider.McpServer(name, d.NotesURL)
	def.ClientSecret = sec.GetClientSecret()
	return def
}

// Close stops both servers.
func (d *Demo) Close(ctx context.Context) error {
	var errs []error
	for _, s := range d.servers {
		errs = append(errs, s.Shutdown(ctx))
	}
	return errors.Join(errs...)
}
