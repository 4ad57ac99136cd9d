package appliance

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBindingTokenRoundTrip(t *testing.T) {
	b, err := newBinder(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	tok, nonce := b.forMeeting("m1").issue("corr", "p1")
	if len(tok) != 64 || len(nonce) != 32 {
		t.Fatalf("token %d hex chars, nonce %d; want 64 and 32", len(tok), len(nonce))
	}
	if !b.forMeeting("m1").valid("corr", "p1", nonce, tok) {
		t.Fatal("issued token does not verify")
	}
	flipped := []byte(tok)
	flipped[10] = "0123456789abcdef"[(strings.IndexByte("0123456789abcdef", flipped[10])+1)%16]
	for name, ok := range map[string]bool{
		"other meeting":     b.forMeeting("m2").valid("corr", "p1", nonce, tok),
		"other correlation": b.forMeeting("m1").valid("corr2", "p1", nonce, tok),
		"other participant": b.forMeeting("m1").valid("corr", "p2", nonce, tok),
		"other nonce":       b.forMeeting("m1").valid("corr", "p1", strings.Repeat("0", 32), tok),
		"one digit changed": b.forMeeting("m1").valid("corr", "p1", nonce, string(flipped)),
		"not hex":           b.forMeeting("m1").valid("corr", "p1", nonce, "zz"),
		"short":             b.forMeeting("m1").valid("corr", "p1", nonce, tok[:62]),
	} {
		if ok {
			t.Errorf("%s: token accepted", name)
		}
	}
	other, _ := newBinder(bytes.Repeat([]byte{8}, 32))
	if other.forMeeting("m1").valid("corr", "p1", nonce, tok) {
		t.Error("token accepted under another master secret")
	}
	if _, err := newBinder(make([]byte, 31)); err == nil {
		t.Error("31-byte secret accepted")
	}
}

func TestBindingSecretPersists(t *testing.T) {
	dir := t.TempDir()
	s1, err := loadBindingSecret("", dir)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := loadBindingSecret("", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s1, s2) || len(s1) != 32 {
		t.Fatalf("secret not kept across loads: %x vs %x", s1, s2)
	}
	fi, err := os.Stat(filepath.Join(dir, bindingSecretName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file mode: %v %v", fi.Mode(), err)
	}
	// Written through a temporary file renamed into place: nothing else is left in the data dir.
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 {
		t.Fatalf("data dir after creating the secret: %v %v", entries, err)
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abcd"), 0o600)
	if _, err := loadBindingSecret(short, dir); err == nil {
		t.Fatal("short secret accepted")
	}
}
