package apitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are PEM files of a fresh CA, a server certificate for 127.0.0.1
// and two client certificates: one from the CA, one self-signed (a CA the
// server does not trust).
type Certs struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey, RogueCert, RogueKey string
}

// NewCerts writes the certificates into dir.
func NewCerts(t testing.TB, dir string) Certs {
	t.Helper()
	caKey, caCert, caDER := mkCert(t, nil, nil, &x509.Certificate{
		Subject: pkix.Name{CommonName: "vipcast test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign,
	})
	c := Certs{
		CA:         writePEM(t, dir, "ca.crt", "CERTIFICATE", caDER),
		ServerCert: filepath.Join(dir, "server.crt"), ServerKey: filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.crt"), ClientKey: filepath.Join(dir, "client.key"),
		RogueCert: filepath.Join(dir, "rogue.crt"), RogueKey: filepath.Join(dir, "rogue.key"),
	}
	leaf := func(name string, usage x509.ExtKeyUsage, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, certPath, keyPath string) {
		key, _, der := mkCert(t, parent, parentKey, &x509.Certificate{
			Subject: pkix.Name{CommonName: name}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		})
		writePEM(t, dir, filepath.Base(certPath), "CERTIFICATE", der)
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, dir, filepath.Base(keyPath), "EC PRIVATE KEY", kb)
	}
	leaf("vipcast server", x509.ExtKeyUsageServerAuth, caCert, caKey, c.ServerCert, c.ServerKey)
	leaf("operator", x509.ExtKeyUsageClientAuth, caCert, caKey, c.ClientCert, c.ClientKey)
	leaf("rogue", x509.ExtKeyUsageClientAuth, nil, nil, c.RogueCert, c.RogueKey)
	return c
}

var serial int64

func mkCert(t testing.TB, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
