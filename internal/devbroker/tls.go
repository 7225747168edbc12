package devbroker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// Certificate is a TLS certificate with its key, and the PEM encoding of the
// certificate for the clients that are to trust it.
type Certificate struct {
	tls.Certificate
	PEM []byte
}

// SelfSigned makes a self-signed certificate, valid for a year, for
// 127.0.0.1, ::1 and localhost: what `sluice dev broker --tls` serves.
func SelfSigned() (Certificate, error) {
	return newCert("sluice dev broker", nil, x509.ExtKeyUsageServerAuth)
}

// newCert makes a certificate for loopback signed by parent (nil: by
// itself, as a CA).
func newCert(name string, parent *Certificate, usage x509.ExtKeyUsage) (Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Certificate{}, fmt.Errorf("tls: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return Certificate{}, fmt.Errorf("tls: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
		IsCA:                  parent == nil,
	}
	signer, signerKey := tmpl, any(key)
	if parent != nil {
		signer, signerKey = parent.Leaf, parent.PrivateKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return Certificate{}, fmt.Errorf("tls: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return Certificate{}, fmt.Errorf("tls: %w", err)
	}
	return Certificate{
		Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		PEM:         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// internal is the certificate the broker's own clients (topic creation at
// start) present to a broker that requires client certificates; serverTLS
// trusts it. It is made once per process.
var internal struct {
	once sync.Once
	cert Certificate
	err  error
}

func internalCert() (Certificate, error) {
	internal.once.Do(func() {
		internal.cert, internal.err = newCert("sluice dev broker (internal client)", nil, x509.ExtKeyUsageClientAuth)
	})
	return internal.cert, internal.err
}

// serverTLS is tc with the internal client certificate trusted too, when
// tc verifies client certificates.
func serverTLS(tc *tls.Config) *tls.Config {
	if tc.ClientAuth < tls.VerifyClientCertIfGiven {
		return tc
	}
	c, err := internalCert()
	if err != nil {
		return tc // the broker's own clients will fail, and say so
	}
	tc = tc.Clone()
	if tc.ClientCAs == nil {
		tc.ClientCAs = x509.NewCertPool()
	} else {
		tc.ClientCAs = tc.ClientCAs.Clone()
	}
	tc.ClientCAs.AddCert(c.Leaf)
	return tc
}

func internalClientCert(*tls.Config) []tls.Certificate {
	c, err := internalCert()
	if err != nil {
		return nil
	}
	return []tls.Certificate{c.Certificate}
}
