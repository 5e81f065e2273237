// Package httpserver runs the gateway's HTTP listeners with the same
// protocols, timeouts and graceful shutdown everywhere.
package httpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server is one HTTP listener.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc
}

// Listen binds addr for h. HTTP/1.1 and HTTP/2 without TLS (h2c) are both
// served, so Connect and gRPC clients work on plain loopback. There is no
// write timeout: MCP and Connect streams stay open as long as they need.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	base, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           h,
		Protocols:         &p,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	return &Server{srv: srv, ln: ln, cancel: cancel}, nil
}

// ListenTLS is Listen over TLS with cfg: HTTP/1.1 and HTTP/2 negotiated by
// ALPN (cfg.NextProtos must offer h2).
func ListenTLS(addr string, h http.Handler, cfg *tls.Config) (*Server, error) {
	s, err := Listen(addr, h)
	if err != nil {
		return nil, err
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	s.srv.Protocols = &p
	s.srv.TLSConfig = cfg
	s.ln = tls.NewListener(s.ln, cfg)
	return s, nil
}

// SetHandler sets the handler; call it before Serve (for a handler that
// needs the bound address first).
func (s *Server) SetHandler(h http.Handler) { s.srv.Handler = h }

// Close releases a listener that was never served.
func (s *Server) Close() error {
	s.cancel()
	return s.ln.Close()
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is http://<Addr>.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Serve serves until Shutdown; it returns nil after a shutdown.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", s.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting, lets running requests finish until ctx ends,
// then cancels the rest (open streams) and closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.cancel()
	if err != nil {
		_ = s.srv.Close()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil // streams cut at the deadline: expected
		}
		return fmt.Errorf("shutdown %s: %w", s.Addr(), err)
	}
	return nil
}
