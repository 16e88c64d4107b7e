package main

// Certificates and keys for the test control plane. Everything is generated
// once into DIR/pki and reused on restart, so clients holding the kubeconfig
// (and ServiceAccount tokens already issued) stay valid across restarts.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// certLifetime is long because a state dir may be reused for development for
// a long time; these certificates never leave the machine.
const certLifetime = 10 * 365 * 24 * time.Hour

type keyPair struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
}

// pkiPaths names the files the components are pointed at.
type pkiPaths struct {
	dir string
}

func (p pkiPaths) file(name string) string { return filepath.Join(p.dir, name) }
func (p pkiPaths) caCert() string          { return p.file("ca.crt") }
func (p pkiPaths) caKey() string           { return p.file("ca.key") }
func (p pkiPaths) servingCert() string     { return p.file("apiserver.crt") }
func (p pkiPaths) servingKey() string      { return p.file("apiserver.key") }
func (p pkiPaths) saKey() string           { return p.file("sa.key") }
func (p pkiPaths) saPub() string           { return p.file("sa.pub") }

// clientIdentity is a client certificate subject. The apiserver maps CN to the
// user name and O to groups; RBAC bootstrap policy grants the well-known
// component users exactly what they need.
type clientIdentity struct {
	fileBase string
	user     string
	groups   []string
}

var (
	adminIdentity     = clientIdentity{"admin", "kubernetes-admin", []string{"system:masters"}}
	kcmIdentity       = clientIdentity{"controller-manager", "system:kube-controller-manager", nil}
	schedulerIdentity = clientIdentity{"scheduler", "system:kube-scheduler", nil}
)

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func newECKey() (crypto.Signer, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// signCert creates a certificate for template signed by parent (self-signed
// when parent is nil).
func signCert(template *x509.Certificate, key crypto.Signer, parent *keyPair) (*keyPair, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	template.SerialNumber = serial
	template.NotBefore = time.Now().Add(-time.Hour) // tolerate small clock skew
	template.NotAfter = time.Now().Add(certLifetime)

	issuerCert, issuerKey := template, key
	if parent != nil {
		issuerCert, issuerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, issuerCert, key.Public(), issuerKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &keyPair{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  keyPEM,
	}, nil
}

func writePair(kp *keyPair, certPath, keyPath string) error {
	if err := os.WriteFile(keyPath, kp.keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, kp.certPEM, 0o644)
}

func loadPair(certPath, keyPath string) (*keyPair, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("bad PEM in %s or %s", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key is not a signer")
	}
	return &keyPair{cert: cert, key: signer, certPEM: certPEM, keyPEM: keyPEM}, nil
}

// ensurePKI creates any missing file under p.dir. Existing files are kept, so a
// restart reuses the same CA, serving cert and service-account keys.
func ensurePKI(p pkiPaths) error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}

	var ca *keyPair
	var err error
	if fileExists(p.caCert()) && fileExists(p.caKey()) {
		if ca, err = loadPair(p.caCert(), p.caKey()); err != nil {
			return fmt.Errorf("loading CA: %w", err)
		}
	} else {
		key, err := newECKey()
		if err != nil {
			return err
		}
		ca, err = signCert(&x509.Certificate{
			Subject:               pkix.Name{CommonName: "seccomp-sync-testcluster-ca"},
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		}, key, nil)
		if err != nil {
			return fmt.Errorf("creating CA: %w", err)
		}
		if err := writePair(ca, p.caCert(), p.caKey()); err != nil {
			return err
		}
	}

	if !fileExists(p.servingCert()) || !fileExists(p.servingKey()) {
		key, err := newECKey()
		if err != nil {
			return err
		}
		// SANs cover loopback plus the in-cluster names, so a client that
		// uses the "kubernetes" Service's DNS name or ClusterIP verifies too.
		serving, err := signCert(&x509.Certificate{
			Subject:     pkix.Name{CommonName: "kube-apiserver"},
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
				"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceClusterFirstIP)},
		}, key, ca)
		if err != nil {
			return fmt.Errorf("creating serving cert: %w", err)
		}
		if err := writePair(serving, p.servingCert(), p.servingKey()); err != nil {
			return err
		}
	}

	for _, id := range []clientIdentity{adminIdentity, kcmIdentity, schedulerIdentity} {
		certPath, keyPath := p.file(id.fileBase+".crt"), p.file(id.fileBase+".key")
		if fileExists(certPath) && fileExists(keyPath) {
			continue
		}
		key, err := newECKey()
		if err != nil {
			return err
		}
		client, err := signCert(&x509.Certificate{
			Subject:     pkix.Name{CommonName: id.user, Organization: id.groups},
			KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, key, ca)
		if err != nil {
			return fmt.Errorf("creating client cert %s: %w", id.user, err)
		}
		if err := writePair(client, certPath, keyPath); err != nil {
			return err
		}
	}

	// Service-account token signing key: RSA because every client library
	// and the token controller handle RS256.
	if !fileExists(p.saKey()) || !fileExists(p.saPub()) {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return err
		}
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
		pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			return err
		}
		pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
		if err := os.WriteFile(p.saKey(), keyPEM, 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(p.saPub(), pubPEM, 0o644); err != nil {
			return err
		}
	}
	return nil
}
