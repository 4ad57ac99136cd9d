package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ErrUnknownKey is returned by a KeySource that has no key for a kid.
var ErrUnknownKey = errors.New("auth: unknown key id")

// KeySource resolves the public key that verifies tokens signed under kid.
type KeySource interface {
	Key(ctx context.Context, kid string) (ed25519.PublicKey, error)
}

type staticKeys struct{ pub ed25519.PublicKey }

// NewStaticKeys returns a KeySource that pins one public key: it is used
// whatever kid a token names (the kid must still be present in the token).
func NewStaticKeys(pub ed25519.PublicKey) KeySource {
	return staticKeys{pub: pub}
}

func (s staticKeys) Key(context.Context, string) (ed25519.PublicKey, error) {
	if len(s.pub) != ed25519.PublicKeySize {
		return nil, errors.New("auth: pinned key is not an Ed25519 public key")
	}
	return s.pub, nil
}

// ParsePublicKeyPEM decodes a PKIX ("PUBLIC KEY") PEM block holding an
// Ed25519 public key.
func ParsePublicKeyPEM(pemBytes []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("auth: no PEM block found")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("auth: PEM block is %q, want \"PUBLIC KEY\"", block.Type)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: parsing public key: %w", err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("auth: public key is %T, want Ed25519", key)
	}
	return pub, nil
}
