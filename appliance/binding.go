package appliance

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgemc/edgemc/store/atomicfile"
)

// Session-binding parameters from the wire contract.
const (
	bindingInfo       = "session-binding"
	minMasterSecret   = 32
	nonceBytes        = 16
	bindingSecretName = "binding.key"
)

// binder issues and checks session-binding tokens:
//
//	meeting_key   = HKDF-SHA256(ikm = master secret, salt = meeting_id, info = "session-binding")
//	binding_token = hex(HMAC-SHA256(meeting_key, correlation_id || participant_id || nonce))
type binder struct {
	secret []byte
}

func newBinder(secret []byte) (*binder, error) {
	if len(secret) < minMasterSecret {
		return nil, fmt.Errorf("binding secret is %d bytes, want at least %d", len(secret), minMasterSecret)
	}
	return &binder{secret: secret}, nil
}

func (b *binder) meetingKey(meetingID string) []byte {
	key, err := hkdf.Key(sha256.New, b.secret, []byte(meetingID), bindingInfo, sha256.Size)
	if err != nil {
		// Only possible for an output longer than 255 hash lengths.
		panic(err)
	}
	return key
}

// statelessResetKey is the key of the QUIC stateless resets of the
// WebTransport endpoint. It comes from the binding secret, which outlives a
// process: a restarted edgemc resets its predecessor's connections, so
// clients reconnect at their next packet instead of at their idle timeout.
func (b *binder) statelessResetKey() *[32]byte {
	key, err := hkdf.Key(sha256.New, b.secret, nil, "quic-stateless-reset", 32)
	if err != nil {
		panic(err) // only for outputs longer than 255 hash lengths
	}
	return (*[32]byte)(key)
}

// forMeeting returns the signer of one meeting's binding tokens, with the
// meeting key derived once.
func (b *binder) forMeeting(meetingID string) meetingBinder {
	return meetingBinder{key: b.meetingKey(meetingID)}
}

// meetingBinder issues and checks the binding tokens of one meeting.
type meetingBinder struct{ key []byte }

func (k meetingBinder) mac(correlationID, participantID, nonce string) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(correlationID))
	m.Write([]byte(participantID))
	m.Write([]byte(nonce))
	return m.Sum(nil)
}

// issue returns a fresh nonce and the binding token for it.
func (k meetingBinder) issue(correlationID, participantID string) (token, nonce string) {
	n := make([]byte, nonceBytes)
	rand.Read(n) // never fails (crypto/rand contract)
	nonce = hex.EncodeToString(n)
	return hex.EncodeToString(k.mac(correlationID, participantID, nonce)), nonce
}

// valid reports whether token is the binding token for these values, in
// constant time with respect to the token's contents.
func (k meetingBinder) valid(correlationID, participantID, nonce, token string) bool {
	got, err := hex.DecodeString(token)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	return subtle.ConstantTimeCompare(got, k.mac(correlationID, participantID, nonce)) == 1
}

// loadBindingSecret reads the master secret from file (hex, or raw bytes of
// at least 32), or, when file is empty, from dataDir/binding.key, creating it
// (atomically) with 32 random bytes on first start so that bindings survive a
// restart.
func loadBindingSecret(file, dataDir string) ([]byte, error) {
	if file == "" {
		file = filepath.Join(dataDir, bindingSecretName)
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			s := make([]byte, minMasterSecret)
			rand.Read(s)
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return nil, fmt.Errorf("binding secret: %w", err)
			}
			if err := atomicfile.WriteFile(file, []byte(hex.EncodeToString(s)+"\n"), 0o600); err != nil {
				return nil, fmt.Errorf("binding secret: %w", err)
			}
			return s, nil
		}
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("binding secret: %w", err)
	}
	secret, err := parseBindingSecret(raw)
	if err != nil {
		return nil, fmt.Errorf("binding secret in %s %w", file, err)
	}
	return secret, nil
}

// parseBindingSecret decodes a binding secret file: hex, or raw bytes. The
// error follows the file's name and never shows the contents.
func parseBindingSecret(raw []byte) ([]byte, error) {
	text := strings.TrimSpace(string(raw))
	secret, err := hex.DecodeString(text)
	if err != nil {
		secret = []byte(text)
	}
	if len(secret) < minMasterSecret {
		return nil, fmt.Errorf("is shorter than %d bytes", minMasterSecret)
	}
	return secret, nil
}
