package tlsfiles

import (
	"strings"
	"testing"
)

// FuzzParsePEM feeds arbitrary bytes as a CA bundle, a certificate and a
// key: nothing panics, and every error is one line naming the file at fault.
func FuzzParsePEM(f *testing.F) {
	f.Add([]byte(""), []byte(""))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("# comment\n-----BEGIN RSA PRIVATE KEY-----\n\n-----END RSA PRIVATE KEY-----\n"), []byte("-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIBkTCCATegAwIBAgIBATAKBggqhkjOPQQDAjAAMB4XDTI0MDEwMTAwMDAwMFoXDTI1MDEwMTAwMDAwMFowADBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABA==\n-----END CERTIFICATE-----\n"), []byte("x"))
	f.Fuzz(func(t *testing.T, cert, key []byte) {
		if _, err := ParsePool(cert); err != nil && strings.ContainsAny(err.Error(), "\r\n") {
			t.Fatalf("CA bundle error is not one line: %q", err)
		}
		c, err := parseKeyPairFiles(cert, key, "cert.pem", "key.pem")
		switch {
		case err == nil && (c == nil || c.Leaf == nil):
			t.Fatal("key pair accepted without a leaf")
		case err != nil && strings.ContainsAny(err.Error(), "\r\n"):
			t.Fatalf("key pair error is not one line: %q", err)
		case err != nil && !strings.HasPrefix(err.Error(), "cert.pem: ") && !strings.HasPrefix(err.Error(), "key.pem: "):
			t.Fatalf("key pair error does not name the file: %q", err)
		}
	})
}
