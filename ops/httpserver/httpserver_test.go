package httpserver_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/ops/httpserver"
)

// TestShutdownEndsStreams: a request that would stream forever is cut when
// the shutdown deadline passes, and its handler sees its context end.
func TestShutdownEndsStreams(t *testing.T) {
	started, ended := make(chan struct{}), make(chan struct{})
	srv, err := httpserver.Listen("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done()
		close(ended)
	}))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	res, err := http.Get(srv.URL() + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	<-started
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("streaming handler still running after shutdown")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
}

func TestH2C(t *testing.T) {
	srv, err := httpserver.Listen("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &p}}
	res, err := c.Get(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if string(b) != "HTTP/2.0" {
		t.Errorf("proto %q, want HTTP/2.0 (h2c)", b)
	}
}
