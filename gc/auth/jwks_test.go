package auth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
)

// jwksServer serves whatever issuer is current and counts fetches.
type jwksServer struct {
	mu      sync.Mutex
	issuer  *devissuer.Issuer
	fail    bool
	fetches atomic.Int32
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.fetches.Add(1)
	s.mu.Lock()
	iss, fail := s.issuer, s.fail
	s.mu.Unlock()
	if fail {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	iss.JWKSHandler().ServeHTTP(w, r)
}

func (s *jwksServer) set(iss *devissuer.Issuer, fail bool) {
	s.mu.Lock()
	s.issuer, s.fail = iss, fail
	s.mu.Unlock()
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func newJWKSFixture(t *testing.T) (*jwksServer, *JWKS, *fakeClock) {
	t.Helper()
	srv := &jwksServer{issuer: devissuer.NewIssuer()}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	clock := &fakeClock{now: time.Unix(1_900_000_000, 0)}
	j := NewJWKS(hs.URL, hs.Client(), JWKSOptions{CacheTTL: time.Minute, MinRefreshInterval: 10 * time.Second, Now: clock.Now})
	return srv, j, clock
}

func TestJWKSCachesAndRefreshesOnUnknownKID(t *testing.T) {
	srv, j, clock := newJWKSFixture(t)
	ctx := context.Background()
	first := srv.issuer

	for range 3 {
		key, err := j.Key(ctx, first.KID())
		if err != nil || !key.Equal(first.PublicKey()) {
			t.Fatalf("Key = %v, %v", key, err)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1 (cached)", n)
	}

	// Key rotation: a new kid appears; the first lookup of it refreshes.
	rotated := devissuer.NewIssuer()
	srv.set(rotated, false)
	clock.Advance(11 * time.Second)
	if key, err := j.Key(ctx, rotated.KID()); err != nil || !key.Equal(rotated.PublicKey()) {
		t.Fatalf("rotated Key = %v, %v", key, err)
	}

	// Unknown kids within MinRefreshInterval do not fetch again.
	for range 5 {
		if _, err := j.Key(ctx, "forged"); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("forged kid: %v", err)
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (rate limited)", n)
	}
	clock.Advance(10 * time.Second)
	if _, err := j.Key(ctx, "forged"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("forged kid: %v", err)
	}
	if n := srv.fetches.Load(); n != 3 {
		t.Fatalf("fetches = %d, want 3 after the interval", n)
	}
}

func TestJWKSKeepsStaleKeysWhenRefreshFails(t *testing.T) {
	srv, j, clock := newJWKSFixture(t)
	ctx := context.Background()
	iss := srv.issuer
	if _, err := j.Key(ctx, iss.KID()); err != nil {
		t.Fatal(err)
	}
	srv.set(iss, true)
	clock.Advance(2 * time.Minute) // past CacheTTL
	if key, err := j.Key(ctx, iss.KID()); err != nil || !key.Equal(iss.PublicKey()) {
		t.Fatalf("stale Key = %v, %v", key, err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (expired cache refetched)", n)
	}
	clock.Advance(11 * time.Second)
	if _, err := j.Key(ctx, "other"); err == nil || errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid with JWKS down: %v, want a fetch error", err)
	}
}

func TestJWKSVerifierEndToEnd(t *testing.T) {
	srv, j, _ := newJWKSFixture(t)
	v := NewVerifier(j, VerifierOptions{})
	if _, err := v.VerifyService(context.Background(), srv.issuer.ServiceToken("gc", "global-controller"), ""); err != nil {
		t.Fatal(err)
	}
	var te *TokenError
	_, err := v.VerifyService(context.Background(), devissuer.NewIssuer().ServiceToken("gc", "global-controller"), "")
	if !errors.As(err, &te) || te.Reason != ReasonUnknownKID {
		t.Fatalf("foreign issuer: %v", err)
	}
}

func TestParseJWKS(t *testing.T) {
	iss := devissuer.NewIssuer()
	keys, err := parseJWKS(iss.JWKS())
	if err != nil || !keys[iss.KID()].Equal(iss.PublicKey()) {
		t.Fatalf("parseJWKS = %v, %v", keys, err)
	}
	for name, doc := range map[string]string{
		"not json":   "{",
		"empty":      `{"keys":[]}`,
		"rsa only":   `{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`,
		"short x":    `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AAAA"}]}`,
		"no kid":     `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
		"enc use":    `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","use":"enc","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
		"wrong type": `{"keys":"x"}`,
	} {
		if _, err := parseJWKS([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseJWKS(f *testing.F) {
	f.Add(devissuer.NewIssuer().JWKS())
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		keys, err := parseJWKS(doc)
		if err != nil {
			return
		}
		if len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for kid, k := range keys {
			if kid == "" || len(k) != ed25519.PublicKeySize {
				t.Fatalf("bad key %q: %d bytes", kid, len(k))
			}
		}
	})
}
