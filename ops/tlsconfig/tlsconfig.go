// Package tlsconfig builds the TLS configurations between the planes and
// for the admin API: a server that (optionally) requires client
// certificates issued by a CA, and a client that verifies the server
// against a CA and presents its own certificate (one per data plane).
// Certificate and key files are re-read when they change on disk, so
// rotation needs no restart. It also mints test CAs and certificates.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ErrNoCertificate is returned when a PEM file holds no certificate.
var ErrNoCertificate = errors.New("no certificate found")

// Server returns a TLS server configuration with the certificate in
// certFile/keyFile. With clientCAFile set, every client must present a
// certificate that chains to a CA in that file (mTLS); without it, client
// certificates are not requested.
func Server(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	kp, err := newKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCAFile != "" {
		pool, err := loadPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ServerClientCertOptional is Server for a listener shared by data planes
// and admins (the control plane's): client certificates from clientCAFile
// are verified when presented — a verified one authenticates a data plane —
// and admins connect without one (they present an admin key).
func ServerClientCertOptional(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	cfg, err := Server(certFile, keyFile, clientCAFile)
	if err != nil {
		return nil, err
	}
	if cfg.ClientCAs != nil {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// Client returns a TLS client configuration that trusts the CAs in caFile
// (the system pool when empty) and, when certFile is set, presents that
// certificate.
func Client(caFile, certFile, keyFile string) (*tls.Config, error) {
	// No NextProtos: http.Transport advertises what it speaks itself.
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		kp, err := newKeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	return cfg, nil
}

// PeerName is the common name of the verified client certificate of a
// request's connection ("" without one), e.g. to name the data plane in
// logs.
func PeerName(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].Subject.CommonName
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: %w", file, ErrNoCertificate)
	}
	return pool, nil
}

// keyPair caches a certificate and reloads it when either file's
// modification time changes (checked at most once a second).
type keyPair struct {
	certFile, keyFile string

	minCheck time.Duration // between modification-time checks

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	checkedAt time.Time
}

func newKeyPair(certFile, keyFile string) (*keyPair, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("both a certificate and a key file are required")
	}
	kp := &keyPair{certFile: certFile, keyFile: keyFile, minCheck: time.Second}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	return kp, nil
}

func (kp *keyPair) get() (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	now := time.Now()
	if kp.cert != nil && now.Sub(kp.checkedAt) < kp.minCheck {
		return kp.cert, nil
	}
	kp.checkedAt = now
	cs, err1 := os.Stat(kp.certFile)
	ks, err2 := os.Stat(kp.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		if kp.cert != nil {
			return kp.cert, nil // keep serving the last good pair
		}
		return nil, fmt.Errorf("certificate files: %w", err)
	}
	if kp.cert != nil && cs.ModTime().Equal(kp.certMod) && ks.ModTime().Equal(kp.keyMod) {
		return kp.cert, nil
	}
	c, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		if kp.cert != nil {
			return kp.cert, nil // mid-rotation: one file written, not the other
		}
		return nil, fmt.Errorf("load certificate: %w", err)
	}
	kp.cert, kp.certMod, kp.keyMod = &c, cs.ModTime(), ks.ModTime()
	return kp.cert, nil
}
