package webtransport_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgemc/edgemc/webtransport"
)

func TestSelfSignedCreatedAndPersisted(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ci, err := webtransport.LoadOrCreateSelfSigned(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := ci.Certificate.Leaf
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if v := leaf.NotAfter.Sub(leaf.NotBefore); v > 14*24*time.Hour || v < 12*24*time.Hour {
		t.Fatalf("validity %s, want about 13 days and under 14", v)
	}
	if now.Before(leaf.NotBefore) || !ci.NotAfter.Equal(leaf.NotAfter) {
		t.Fatalf("not valid at creation: %s..%s", leaf.NotBefore, leaf.NotAfter)
	}
	for _, name := range []string{"cert.pem", "key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	// Reloaded, not regenerated, while more than 3 days are left.
	again, err := webtransport.LoadOrCreateSelfSigned(dir, now.Add(9*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if again.SHA256 != ci.SHA256 {
		t.Fatal("certificate regenerated although still valid for 4 days")
	}
	// Regenerated with fewer than 3 days left.
	renewed, err := webtransport.LoadOrCreateSelfSigned(dir, now.Add(11*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if renewed.SHA256 == ci.SHA256 {
		t.Fatal("certificate kept with 2 days left")
	}
	if got, _ := webtransport.LoadOrCreateSelfSigned(dir, now.Add(11*24*time.Hour)); got.SHA256 != renewed.SHA256 {
		t.Fatal("renewed certificate not persisted")
	}
}

func TestSelfSignedRegeneratedWhenUnusable(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ci, err := webtransport.LoadOrCreateSelfSigned(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh, err := webtransport.LoadOrCreateSelfSigned(dir, now)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.SHA256 == ci.SHA256 {
		t.Fatal("kept a certificate whose key is unreadable")
	}
}

func TestCertManagerRenewsSelfSigned(t *testing.T) {
	dir := t.TempDir()
	m, err := webtransport.NewSelfSignedManager(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := m.Current()
	getCert := m.TLSConfig().GetCertificate
	if c, _ := getCert(nil); c.Leaf == nil || c.Leaf.NotAfter != first.NotAfter {
		t.Fatal("GetCertificate does not serve the current certificate")
	}
	if renewed, err := m.RenewIfDue(time.Now().Add(24 * time.Hour)); err != nil || renewed {
		t.Fatalf("RenewIfDue a day later: %v %v, want no renewal", renewed, err)
	}
	if renewed, err := m.RenewIfDue(first.NotAfter.Add(-48 * time.Hour)); err != nil || !renewed {
		t.Fatalf("RenewIfDue 2 days before expiry: %v %v, want a renewal", renewed, err)
	}
	if m.Current().SHA256 == first.SHA256 {
		t.Fatal("Current still the old certificate")
	}
	if c, _ := getCert(nil); c.Leaf.NotAfter != m.Current().NotAfter {
		t.Fatal("GetCertificate still serves the old certificate")
	}
	// Run returns when its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFileCertManager(t *testing.T) {
	dir := t.TempDir()
	ci, err := webtransport.LoadOrCreateSelfSigned(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m, err := webtransport.NewFileCertManager(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Current().SHA256 != ci.SHA256 {
		t.Fatal("file manager serves another certificate")
	}
	if renewed, _ := m.RenewIfDue(time.Now().Add(365 * 24 * time.Hour)); renewed {
		t.Fatal("an operator certificate was replaced")
	}
	if _, err := webtransport.NewFileCertManager(filepath.Join(dir, "missing.pem"), filepath.Join(dir, "key.pem")); err == nil {
		t.Fatal("missing certificate file accepted")
	}
}

func TestDialVerifiesCertHash(t *testing.T) {
	ts := startServer(t, webtransport.ServerConfig{}, newEchoHandler())
	ctx := context.Background()

	c, err := webtransport.Dial(ctx, ts.url, ts.opts)
	if err != nil {
		t.Fatalf("Dial with the right hash: %v", err)
	}
	_ = c.Close()

	wrong := ts.opts
	wrong.CertHashes = [][32]byte{{1, 2, 3}}
	if _, err := webtransport.Dial(ctx, ts.url, wrong); err == nil {
		t.Fatal("Dial with a wrong hash succeeded")
	}

	insecure := webtransport.DialOptions{InsecureSkipVerify: true, Timeout: 5 * time.Second}
	c, err = webtransport.Dial(ctx, ts.url, insecure)
	if err != nil {
		t.Fatalf("Dial with InsecureSkipVerify: %v", err)
	}
	_ = c.Close()

	if _, err := webtransport.Dial(ctx, ts.url, webtransport.DialOptions{Timeout: 5 * time.Second}); err == nil {
		t.Fatal("Dial verified a self-signed certificate against the system roots")
	}
}

// A certificate valid for longer than 14 days cannot be pinned by hash, as
// in browsers, even when the hash matches.
func TestDialRefusesLongLivedHashedCert(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "long"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, webtransport.ServerConfig{TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}, newEchoHandler())
	_, err = webtransport.Dial(context.Background(), ts.url, ts.opts)
	if err == nil || !strings.Contains(err.Error(), webtransport.ErrCertHashMismatch.Error()) {
		t.Fatalf("Dial: %v, want a certificate hash mismatch", err)
	}
}
