package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path string) (int, Status) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var s Status
	if path == "/readyz" {
		if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
			t.Fatalf("readyz body %q: %v", rec.Body.String(), err)
		}
	}
	return rec.Code, s
}

func TestControlPlaneReadiness(t *testing.T) {
	tests := []struct {
		name      string
		cache     Cache
		wantCode  int
		wantState State
	}{
		{"never_listed", Cache{}, 503, Unavailable},
		{"following_etcd", Cache{Synced: true}, 200, OK},
		{"quorum_lost", Cache{Synced: true, LastErr: errors.New("etcdserver: no leader"), ErrAt: time.Now()}, 200, Degraded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewChecker(ControlPlane(func() Cache { return tt.cache }))
			mux := http.NewServeMux()
			c.Mount(mux)
			if code, _ := get(t, mux, "/healthz"); code != 200 {
				t.Errorf("healthz = %d, want 200 whatever the dependencies", code)
			}
			code, s := get(t, mux, "/readyz")
			if code != tt.wantCode || s.State != tt.wantState {
				t.Errorf("readyz = %d %q, want %d %q", code, s.State, tt.wantCode, tt.wantState)
			}
			if tt.wantState == Degraded && (s.Since == nil || s.Detail == "") {
				t.Errorf("degraded without detail or since: %+v", s)
			}
			c.SetDraining()
			if code, s := get(t, mux, "/readyz"); code != 503 || s.State != Draining {
				t.Errorf("readyz while draining = %d %q", code, s.State)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	handler := func(code int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/readyz" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(code)
		})
	}
	ready := httptest.NewServer(handler(200))
	defer ready.Close()
	notReady := httptest.NewServer(handler(503))
	defer notReady.Close()
	down := httptest.NewServer(handler(200))
	down.Close()

	tests := []struct {
		name string
		urls []string
		want State
	}{
		{"all_up", []string{ready.URL, ready.URL + "/"}, OK},
		{"one_up", []string{down.URL, ready.URL}, OK},
		{"none_reachable", []string{down.URL, notReady.URL}, Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewProbe(tt.urls, http.DefaultClient, time.Second, slog.New(slog.DiscardHandler))
			if s := p.Check(t.Context()); s.State != Unavailable {
				t.Errorf("before the first probe: %q, want unavailable", s.State)
			}
			p.Once(t.Context())
			if s := p.Check(t.Context()); s.State != tt.want {
				t.Errorf("state %q (%s), want %q", s.State, s.Detail, tt.want)
			}
		})
	}
}

func TestServeDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "finished")
	})}
	ctx, cancel := context.WithCancel(t.Context())
	c := NewChecker(func(context.Context) Status { return Status{State: OK} })
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln, c, Drain{Grace: time.Minute}, slog.New(slog.DiscardHandler)) }()

	url := "http://" + ln.Addr().String()
	body := make(chan string, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			body <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body <- string(b)
	}()
	<-started
	cancel()
	// Once draining, new connections are refused while the request runs.
	deadline := time.Now().Add(30 * time.Second) // hang guard only
	for {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts connections 30s after draining began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := c.Status(t.Context()); s.State != Draining {
		t.Errorf("state %q while draining", s.State)
	}
	close(release)
	if got := <-body; got != "finished" {
		t.Errorf("in-flight request got %q, want it to finish", got)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

func TestServeClosesAfterGrace(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done() // an endless stream
	})}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, srv, ln, nil, Drain{Grace: 50 * time.Millisecond}, slog.New(slog.DiscardHandler))
	}()
	resp, err := http.Get("http://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-started
	cancel()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("stream ended cleanly, want it cut after the grace period")
	}
	<-done
}

func TestWrap(t *testing.T) {
	c := NewChecker(func(context.Context) Status { return Status{State: Unavailable} })
	h := Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	}), c)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/healthz", 200},
		{"GET", "/readyz", 503},
		{"POST", "/healthz", http.StatusTeapot},
		{"GET", "/echo/mcp", http.StatusTeapot},
		{"GET", "//healthz/../x", http.StatusTeapot}, // passed through untouched
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, rec.Code, tt.want)
		}
	}
}
