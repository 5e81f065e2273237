package dataplane

import (
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
)

// loopbackAuthority is, independently of parseAuthority, what a loopback
// public URL on port 8080 admits: localhost, a dotted-quad 127.0.0.0/8
// address or [::1], with port 8080.
var loopbackAuthority = regexp.MustCompile(`^(localhost|127\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){2}|\[::1\]):8080$`)

func newAuthorityProxy(t testing.TB, public string) *Proxy {
	t.Helper()
	p, err := New(Config{
		PublicURL:        public,
		ControlPlaneURLs: []string{"http://127.0.0.1:1"},
		AllowedOrigins:   []string{"http://localhost:6274"},
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzHostOrigin checks, for a loopback public URL, that the Host check
// admits only loopback names with the public port, that the Origin check
// admits an http origin exactly when the Host check admits its authority
// (or it is configured), and that neither panics.
func FuzzHostOrigin(f *testing.F) {
	for _, s := range []string{
		"localhost:8080", "127.0.0.1:8080", "127.0.0.2:8080", "[::1]:8080", "LOCALHOST:8080",
		"localhost", "localhost:8081", "evil.example:8080", "localhost.evil.example:8080", "127.1:8080",
		"[::ffff:127.0.0.1]:8080", "0.0.0.0:8080", "[0:0:0:0:0:0:0:1]:8080", "localhost.:8080",
		"user@localhost:8080", "localhost:08080", "[::1", "::1", "localhost:6274", "127.0.0.1:80:8080",
		"localhost:8080/", "localhost:8080#x", "localhost:8080?", "%6cocalhost:8080", "127.000.0.1:8080",
	} {
		f.Add(s)
	}
	p := newAuthorityProxy(f, "http://localhost:8080")
	f.Fuzz(func(t *testing.T, host string) {
		hostOK := p.hostAllowed(host)
		if hostOK && !loopbackAuthority.MatchString(strings.ToLower(host)) {
			t.Fatalf("Host %q admitted", host)
		}
		origin := "http://" + host
		n, originOK := p.originAllowed(origin)
		if originOK && n != "http://localhost:6274" {
			rest, ok := strings.CutPrefix(n, "http://")
			if !ok || !p.hostAllowed(rest) {
				t.Fatalf("Origin %q admitted as %q, whose authority the Host check refuses", origin, n)
			}
		}
		// Where the origin is the authority verbatim (browsers send
		// serialized origins), the two checks agree exactly.
		if n == strings.ToLower(origin) && n != "http://localhost:6274" && originOK != hostOK {
			t.Fatalf("Host %q admitted %v, Origin %q admitted %v", host, hostOK, origin, originOK)
		}
	})
}

func TestAuthorityNonLoopbackPublic(t *testing.T) {
	p := newAuthorityProxy(t, "https://GW.example.com:443")
	for h, want := range map[string]bool{
		"gw.example.com": true, "gw.example.com:443": true, "GW.EXAMPLE.COM": true,
		"gw.example.com:80": false, "localhost:443": false, "127.0.0.1": false, "gw.example.com.": false,
	} {
		if got := p.hostAllowed(h); got != want {
			t.Errorf("Host %q: %v, want %v", h, got, want)
		}
	}
	for o, want := range map[string]bool{
		"https://gw.example.com": true, "https://gw.example.com:443": true, "http://localhost:6274": true,
		"http://gw.example.com": false, "https://localhost": false, "null": false, "https://gw.example.com:444": false,
	} {
		if _, got := p.originAllowed(o); got != want {
			t.Errorf("Origin %q: %v, want %v", o, got, want)
		}
	}
}
