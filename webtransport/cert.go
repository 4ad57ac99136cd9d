package webtransport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/edgemc/edgemc/store/atomicfile"
)

// Self-signed certificate policy: browsers pin a certificate by hash only if
// it is valid for at most 14 days, so edgemc makes 13-day certificates and
// replaces them when fewer than 3 days are left.
const (
	selfSignedValidity = 13 * 24 * time.Hour
	selfSignedRenewAt  = 3 * 24 * time.Hour // time left at which to renew
	certFileName       = "cert.pem"
	keyFileName        = "key.pem"
)

// CertInfo is a serving certificate and what clients pin it by.
type CertInfo struct {
	Certificate tls.Certificate
	SHA256      [32]byte // of the leaf's DER: serverCertificateHashes' value
	NotAfter    time.Time
}

// HashHex is the certificate hash in hex, as `edgemc cert-hash` prints it.
func (c *CertInfo) HashHex() string { return hex.EncodeToString(c.SHA256[:]) }

// HashBase64 is the certificate hash in standard base64.
func (c *CertInfo) HashBase64() string { return base64.StdEncoding.EncodeToString(c.SHA256[:]) }

func newCertInfo(cert tls.Certificate) (*CertInfo, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("webtransport: empty certificate chain")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("webtransport: parse certificate: %w", err)
	}
	cert.Leaf = leaf
	return &CertInfo{Certificate: cert, SHA256: sha256.Sum256(leaf.Raw), NotAfter: leaf.NotAfter}, nil
}

// LoadOrCreateSelfSigned returns the self-signed certificate stored in dir
// (cert.pem, key.pem), creating a new ECDSA P-256 one valid for 13 days when
// the files are missing or unusable, not yet valid at now, or have fewer than
// 3 days left.
func LoadOrCreateSelfSigned(dir string, now time.Time) (*CertInfo, error) {
	certPath, keyPath := filepath.Join(dir, certFileName), filepath.Join(dir, keyFileName)
	if ci, err := loadCert(certPath, keyPath); err == nil && !selfSignedDue(ci, now) {
		return ci, nil
	}
	certPEM, keyPEM, err := newSelfSigned(now)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("webtransport: certificate dir: %w", err)
	}
	// The key goes first: a crash between the two writes leaves a pair that
	// does not match, which is regenerated on the next start.
	if err := atomicfile.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("webtransport: %w", err)
	}
	if err := atomicfile.WriteFile(certPath, certPEM, 0o600); err != nil {
		return nil, fmt.Errorf("webtransport: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("webtransport: new certificate: %w", err)
	}
	return newCertInfo(cert)
}

func selfSignedDue(ci *CertInfo, now time.Time) bool {
	return now.Before(ci.Certificate.Leaf.NotBefore) || ci.NotAfter.Sub(now) < selfSignedRenewAt
}

func loadCert(certPath, keyPath string) (*CertInfo, error) {
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("webtransport: load certificate: %w", err)
	}
	return newCertInfo(cert)
}

func newSelfSigned(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("webtransport: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("webtransport: serial: %w", err)
	}
	notBefore := now.Add(-time.Hour).Truncate(time.Second) // tolerate client clock skew
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "edgemc"},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("webtransport: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("webtransport: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// CertManager holds the current serving certificate. For a self-signed
// certificate, Run replaces it before it expires; new handshakes use the new
// one at once.
type CertManager struct {
	cur atomic.Pointer[CertInfo]
	dir string // "" for an operator-provided certificate
	log *slog.Logger
}

// NewSelfSignedManager loads or creates the self-signed certificate in dir
// and logs its hash to logger (nil discards it).
func NewSelfSignedManager(dir string, logger *slog.Logger) (*CertManager, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &CertManager{dir: dir, log: logger}
	ci, err := LoadOrCreateSelfSigned(dir, time.Now())
	if err != nil {
		return nil, err
	}
	m.set(ci)
	return m, nil
}

// NewFileCertManager serves an operator-provided certificate and key (PEM).
func NewFileCertManager(certFile, keyFile string) (*CertManager, error) {
	ci, err := loadCert(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	m := &CertManager{log: slog.New(slog.DiscardHandler)}
	m.cur.Store(ci)
	return m, nil
}

func (m *CertManager) set(ci *CertInfo) {
	if old := m.cur.Swap(ci); old == nil || old.SHA256 != ci.SHA256 {
		m.log.Info("webtransport certificate", "sha256", ci.HashHex(), "not_after", ci.NotAfter)
	}
}

// Current is the certificate being served.
func (m *CertManager) Current() *CertInfo { return m.cur.Load() }

// TLSConfig serves the current certificate, TLS 1.3 only.
func (m *CertManager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &m.Current().Certificate, nil
		},
	}
}

// RenewIfDue replaces a self-signed certificate that LoadOrCreateSelfSigned
// would replace at now. It reports whether the certificate changed.
func (m *CertManager) RenewIfDue(now time.Time) (bool, error) {
	if m.dir == "" || !selfSignedDue(m.Current(), now) {
		return false, nil
	}
	ci, err := LoadOrCreateSelfSigned(m.dir, now)
	if err != nil {
		return false, err
	}
	m.set(ci)
	return true, nil
}

// Run renews a self-signed certificate before it expires, until ctx is done.
// For an operator-provided certificate it only waits for ctx.
func (m *CertManager) Run(ctx context.Context) error {
	if m.dir == "" {
		<-ctx.Done()
		return nil
	}
	for {
		// Wake at the renewal time, and at least hourly in case the clock
		// jumped or the host slept.
		wait := min(time.Until(m.Current().NotAfter.Add(-selfSignedRenewAt)), time.Hour)
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if _, err := m.RenewIfDue(time.Now()); err != nil {
			m.log.Error("renewing the webtransport certificate failed", "err", err)
			// Retry on the next wake-up; the old certificate still serves.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Minute):
			}
		}
	}
}
