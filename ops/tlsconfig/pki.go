package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority for tests, demos and small deployments.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     *ecdsa.PrivateKey
}

// NewCA creates a self-signed ECDSA P-256 CA valid for validity.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"mcpgate"}},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// Usage says what a leaf certificate is for.
type Usage int

const (
	// ServerCert is for a listener (control plane, admin API).
	ServerCert Usage = 1 << iota
	// ClientCert is for a client (a data plane calling the control plane).
	ClientCert
)

// Issue signs a leaf certificate for commonName. hosts become DNS or IP
// subject alternative names (servers are verified against them).
func (ca *CA) Issue(commonName string, hosts []string, usage Usage, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("leaf key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"mcpgate"}},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if usage&ServerCert != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if usage&ClientCert != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("leaf certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// Files are the paths WritePKI wrote.
type Files struct {
	CA                      string
	ServerCert, ServerKey   string
	ClientCerts, ClientKeys []string
}

// WritePKI writes into dir a CA (ca.pem), a server certificate for hosts
// (server.pem, server-key.pem) and one client certificate per name
// (<name>.pem, <name>-key.pem), keys 0600. It is what tests and the
// deployment guide's quick start use; production should use its own CA.
func WritePKI(dir string, hosts []string, clients ...string) (*Files, error) {
	ca, err := NewCA("mcpgate test CA", 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f := &Files{CA: filepath.Join(dir, "ca.pem")}
	if err := os.WriteFile(f.CA, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	write := func(name string, hosts []string, usage Usage) (string, string, error) {
		c, k, err := ca.Issue(name, hosts, usage, 365*24*time.Hour)
		if err != nil {
			return "", "", err
		}
		cp, kp := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		if err := os.WriteFile(cp, c, 0o644); err != nil {
			return "", "", err
		}
		return cp, kp, os.WriteFile(kp, k, 0o600)
	}
	if f.ServerCert, f.ServerKey, err = write("server", hosts, ServerCert); err != nil {
		return nil, err
	}
	for _, c := range clients {
		cp, kp, err := write(c, nil, ClientCert)
		if err != nil {
			return nil, err
		}
		f.ClientCerts, f.ClientKeys = append(f.ClientCerts, cp), append(f.ClientKeys, kp)
	}
	return f, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}
