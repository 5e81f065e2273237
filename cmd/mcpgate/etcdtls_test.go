package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/ops/tlsconfig"
)

// TestEtcdTLSReloadsClientCert: the etcd client's TLS configuration is
// tlsconfig.Client's, so a client certificate rotated on disk is presented
// without a restart (the hand-written copy loaded it once). The poll waits
// for tlsconfig's once-a-second check, bounded by a deadline.
func TestEtcdTLSReloadsClientCert(t *testing.T) {
	dir := t.TempDir()
	pki, err := tlsconfig.WritePKI(dir, []string{"127.0.0.1"}, "mcpgate-control")
	if err != nil {
		t.Fatal(err)
	}
	cfg := controlConfig{EtcdCA: pki.CA, EtcdCert: pki.ClientCerts[0], EtcdKey: pki.ClientKeys[0]}
	tc, err := etcdTLS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tc.RootCAs == nil || tc.GetClientCertificate == nil {
		t.Fatalf("etcd TLS config without CA pool or client certificate: %+v", tc)
	}
	first := presented(t, tc)

	ca, err := tlsconfig.NewCA("rotated CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("mcpgate-control-rotated", nil, tlsconfig.ClientCert, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.EtcdKey, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.EtcdCert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := presented(t, tc)
		if got.Subject.CommonName == "mcpgate-control-rotated" {
			break
		}
		if got.Subject.CommonName != first.Subject.CommonName || time.Now().After(deadline) {
			t.Fatalf("presented %q after rotation, want mcpgate-control-rotated", got.Subject.CommonName)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if _, err := etcdTLS(controlConfig{EtcdCert: pki.ClientCerts[0]}); err == nil {
		t.Errorf("--etcd-cert without --etcd-key accepted")
	}
	if tc, err := etcdTLS(controlConfig{}); tc != nil || err != nil {
		t.Errorf("no etcd TLS flags: %v, %v; want plaintext", tc, err)
	}
}

func presented(t *testing.T, tc *tls.Config) *x509.Certificate {
	t.Helper()
	c, err := tc.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}
