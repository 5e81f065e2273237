package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	pki, err := WritePKI(filepath.Join(dir, "pki"), []string{"127.0.0.1", "localhost"}, "dp-eu", "dp-us")
	if err != nil {
		t.Fatal(err)
	}
	other, err := WritePKI(filepath.Join(dir, "other"), []string{"127.0.0.1"}, "intruder")
	if err != nil {
		t.Fatal(err)
	}
	srvCfg, err := Server(pki.ServerCert, pki.ServerKey, pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(PeerName(r.TLS) + " " + r.Proto))
		}),
		TLSConfig: srvCfg,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()
	url := "https://" + ln.Addr().String()

	tests := []struct {
		name          string
		ca, cert, key string
		wantOK        bool
		wantBody      string
	}{
		{"data_plane_cert", pki.CA, pki.ClientCerts[0], pki.ClientKeys[0], true, "dp-eu HTTP/2.0"},
		{"second_data_plane", pki.CA, pki.ClientCerts[1], pki.ClientKeys[1], true, "dp-us HTTP/2.0"},
		{"no_client_cert", pki.CA, "", "", false, ""},
		{"cert_from_another_ca", pki.CA, other.ClientCerts[0], other.ClientKeys[0], false, ""},
		{"server_not_trusted", other.CA, pki.ClientCerts[0], pki.ClientKeys[0], false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Client(tt.ca, tt.cert, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			cli := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}, Timeout: 5 * time.Second}
			resp, err := cli.Get(url)
			if !tt.wantOK {
				if err == nil {
					resp.Body.Close()
					t.Fatal("request succeeded, want a TLS failure")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b := make([]byte, 64)
			n, _ := resp.Body.Read(b)
			if string(b[:n]) != tt.wantBody {
				t.Errorf("body %q, want %q", b[:n], tt.wantBody)
			}
		})
	}
}

func TestClientCertOptional(t *testing.T) {
	pki, err := WritePKI(t.TempDir(), []string{"127.0.0.1"}, "dp")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ServerClientCertOptional(pki.ServerCert, pki.ServerKey, pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.ClientCAs == nil {
		t.Errorf("ClientAuth = %v, want verify-if-given with the CA", cfg.ClientAuth)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("peer=" + PeerName(r.TLS))) }),
		TLSConfig: cfg,
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()
	for _, tt := range []struct {
		name, cert, key, want string
	}{
		{"admin_without_cert", "", "", "peer="},
		{"data_plane_with_cert", pki.ClientCerts[0], pki.ClientKeys[0], "peer=dp"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Client(pki.CA, tt.cert, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: c}}).Get("https://" + ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != tt.want {
				t.Errorf("got %q, want %q", b, tt.want)
			}
		})
	}
}

func TestServerWithoutClientCA(t *testing.T) {
	pki, err := WritePKI(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Server(pki.ServerCert, pki.ServerKey, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.NoClientCert {
		t.Errorf("ClientAuth = %v, want none", cfg.ClientAuth)
	}
}

func TestBadInputs(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	pki, err := WritePKI(filepath.Join(dir, "pki"), []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    func() error
	}{
		{"missing_cert", func() error { _, err := Server(filepath.Join(dir, "nope.pem"), pki.ServerKey, ""); return err }},
		{"key_without_cert", func() error { _, err := Server("", pki.ServerKey, ""); return err }},
		{"junk_ca", func() error { _, err := Server(pki.ServerCert, pki.ServerKey, junk); return err }},
		{"junk_client_ca", func() error { _, err := Client(junk, "", ""); return err }},
		{"mismatched_pair", func() error { _, err := Client("", pki.ServerCert, pki.CA); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.f() == nil {
				t.Error("succeeded, want an error")
			}
		})
	}
}

func TestReloadOnRotation(t *testing.T) {
	dir := t.TempDir()
	pki, err := WritePKI(dir, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := newKeyPair(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	kp.minCheck = 0
	first, _ := kp.get()

	ca, err := NewCA("rotated", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Issue("server", []string{"localhost"}, ServerCert, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	for _, f := range []struct {
		path string
		b    []byte
	}{{pki.ServerCert, c}, {pki.ServerKey, k}} {
		if err := os.WriteFile(f.path, f.b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f.path, later, later); err != nil {
			t.Fatal(err)
		}
	}
	second, err := kp.get()
	if err != nil {
		t.Fatal(err)
	}
	a, _ := x509.ParseCertificate(first.Certificate[0])
	b, _ := x509.ParseCertificate(second.Certificate[0])
	if a.SerialNumber.Cmp(b.SerialNumber) == 0 {
		t.Error("certificate not reloaded after rotation")
	}
	if err := os.Remove(pki.ServerKey); err != nil {
		t.Fatal(err)
	}
	if third, err := kp.get(); err != nil || third != second {
		t.Errorf("after a file vanished: %v, %v; want the last good pair", third, err)
	}
}
