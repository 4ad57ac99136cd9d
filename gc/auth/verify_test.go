package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/devissuer"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newVerifier(iss *devissuer.Issuer) *auth.Verifier {
	return auth.NewVerifier(auth.NewStaticKeys(iss.PublicKey()), auth.VerifierOptions{
		ClockSkew: time.Minute,
		Now:       func() time.Time { return t0 },
	})
}

// keysByKID is a KeySource that knows exactly one kid.
type keysByKID map[string]ed25519.PublicKey

func (k keysByKID) Key(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if key, ok := k[kid]; ok {
		return key, nil
	}
	return nil, auth.ErrUnknownKey
}

// checks records what a Verifier's Observer is told.
type checks struct {
	mu  sync.Mutex
	got []string // "token_type/reason"
}

func (c *checks) TokenChecked(tokenType, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, tokenType+"/"+reason)
}

// take returns what was recorded since the last take.
func (c *checks) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := c.got
	c.got = nil
	return got
}

func reasonOf(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	if !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("error %v does not match ErrInvalidToken", err)
	}
	var te *auth.TokenError
	if !errors.As(err, &te) {
		t.Fatalf("error %v is not a *TokenError", err)
	}
	return te.Reason
}

func TestVerifyJoin(t *testing.T) {
	iss := devissuer.NewIssuer().WithClock(func() time.Time { return t0 })
	other := devissuer.NewIssuer().WithClock(func() time.Time { return t0 })
	obs := &checks{}
	v := auth.NewVerifier(keysByKID{iss.KID(): iss.PublicKey()}, auth.VerifierOptions{
		Now:      func() time.Time { return t0 },
		Observer: obs,
	})
	meeting := iss.MeetingToken("user-1", "m-1", devissuer.WithRole("host"))
	header, rest, _ := strings.Cut(meeting, ".")
	payload, sig, _ := strings.Cut(rest, ".")
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"` + iss.KID() + `"}`))
	hsHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"` + iss.KID() + `"}`))

	tests := []struct {
		name, token, reason string
	}{
		{"meeting", meeting, ""},
		{"guest", iss.GuestToken("g-1", "m-1", "Guest"), ""},
		{"expired guest", iss.GuestToken("g-1", "m-1", "Guest", devissuer.WithIssuedAt(t0.Add(-2*time.Hour)), devissuer.WithExpiresAt(t0.Add(-2*time.Minute))), auth.ReasonExpired},
		{"missing", "", auth.ReasonMissing},
		{"too large", strings.Repeat("a", auth.MaxTokenSize+1), auth.ReasonTooLarge},
		{"garbage", "not-a-jwt", auth.ReasonMalformed},
		{"bad base64", header + ".%%%." + sig, auth.ReasonMalformed},
		{"no kid", iss.MeetingToken("u", "m-1", devissuer.WithKID("")), auth.ReasonMalformed},
		{"alg none", noneHeader + "." + payload + ".", auth.ReasonAlgorithm},
		{"alg HS256", hsHeader + "." + payload + "." + sig, auth.ReasonAlgorithm},
		{"tampered payload", header + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin"}`)) + "." + sig, auth.ReasonSignature},
		{"other key same kid", other.MeetingToken("u", "m-1", devissuer.WithKID(iss.KID())), auth.ReasonSignature},
		{"unknown kid", other.MeetingToken("u", "m-1"), auth.ReasonUnknownKID},
		{"expired", iss.MeetingToken("u", "m-1", devissuer.WithIssuedAt(t0.Add(-2*time.Hour)), devissuer.WithExpiresAt(t0.Add(-2*time.Minute))), auth.ReasonExpired},
		{"expired within skew", iss.MeetingToken("u", "m-1", devissuer.WithIssuedAt(t0.Add(-time.Hour)), devissuer.WithExpiresAt(t0.Add(-30*time.Second))), ""},
		{"iat in future", iss.MeetingToken("u", "m-1", devissuer.WithIssuedAt(t0.Add(5*time.Minute))), auth.ReasonIssuedInFuture},
		{"iat ahead within skew", iss.MeetingToken("u", "m-1", devissuer.WithIssuedAt(t0.Add(30*time.Second))), ""},
		{"no exp", iss.MeetingToken("u", "m-1", devissuer.WithoutClaim("exp")), auth.ReasonMissingClaim},
		{"no iat", iss.MeetingToken("u", "m-1", devissuer.WithoutClaim("iat")), auth.ReasonMissingClaim},
		{"no meeting id", iss.MeetingToken("u", ""), auth.ReasonMissingClaim},
		{"service token", iss.ServiceToken("gc", "global-controller"), auth.ReasonWrongType},
		{"other token type", iss.MeetingToken("u", "m-1", devissuer.WithClaim("token_type", "refresh")), auth.ReasonWrongType},
		{"claim of wrong JSON type", iss.MeetingToken("u", "m-1", devissuer.WithClaim("capabilities", 7)), auth.ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims, err := v.VerifyJoin(context.Background(), tt.token)
			if got := reasonOf(t, err); got != tt.reason {
				t.Fatalf("reason = %q (%v), want %q", got, err, tt.reason)
			}
			if err == nil && claims.MeetingID != "m-1" {
				t.Fatalf("claims = %+v", claims)
			}
			// Each check is observed once, under the type the token
			// claims (meeting unless it claims guest).
			tokenType := auth.TokenTypeMeeting
			if strings.Contains(tt.name, "guest") {
				tokenType = auth.TokenTypeGuest
			}
			if got, want := obs.take(), []string{tokenType + "/" + tt.reason}; !slices.Equal(got, want) {
				t.Fatalf("observed %q, want %q", got, want)
			}
		})
	}
}

func TestVerifyJoinClaims(t *testing.T) {
	iss := devissuer.NewIssuer().WithClock(func() time.Time { return t0 })
	v := newVerifier(iss)
	c, err := v.VerifyJoin(context.Background(), iss.GuestToken("g-7", "m-9", "Ada", devissuer.WithClaim("waiting_room", true)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "g-7" || c.TokenType != "guest" || c.MeetingID != "m-9" || c.DisplayName != "Ada" ||
		!c.WaitingRoom || c.ParticipantType != "external" || c.Role != "participant" || c.JTI == "" ||
		!c.IssuedAt.Equal(t0) || !c.ExpiresAt.Equal(t0.Add(devissuer.DefaultTTL)) || len(c.Capabilities) != 2 {
		t.Fatalf("claims = %+v", c)
	}
}

func TestVerifyService(t *testing.T) {
	iss := devissuer.NewIssuer().WithClock(func() time.Time { return t0 })
	obs := &checks{}
	v := auth.NewVerifier(auth.NewStaticKeys(iss.PublicKey()), auth.VerifierOptions{Now: func() time.Time { return t0 }, Observer: obs})
	ctx := context.Background()
	readWrite := iss.ServiceToken("gc-1", "global-controller", devissuer.WithScopes("service.read.mc", "service.write.mc"))
	c, err := v.VerifyService(ctx, readWrite, "service.write.mc")
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "gc-1" || c.ServiceType != "global-controller" || !c.HasScope("service.write.mc") || c.HasScope("service.write") {
		t.Fatalf("claims = %+v", c)
	}
	if _, err := v.VerifyService(ctx, readWrite, "service.write"); reasonOf(t, err) != auth.ReasonScope {
		t.Fatalf("a scope the token lacks: %v", err)
	}
	readOnly := iss.ServiceToken("gc-1", "global-controller", devissuer.WithScopes("service.read.mc"))
	if _, err := v.VerifyService(ctx, readOnly, ""); err != nil {
		t.Fatalf("no scope required: %v", err)
	}
	if _, err := v.VerifyService(ctx, iss.MeetingToken("u", "m"), ""); reasonOf(t, err) != auth.ReasonWrongType {
		t.Fatalf("meeting token as service token: %v", err)
	}
	want := []string{"service/", "service/scope_mismatch", "service/", "service/wrong_type"}
	if got := obs.take(); !slices.Equal(got, want) {
		t.Fatalf("observed %q, want %q", got, want)
	}
}

type failingKeys struct{}

func (failingKeys) Key(context.Context, string) (ed25519.PublicKey, error) {
	return nil, errors.New("JWKS unreachable")
}

func TestVerifyFailsClosed(t *testing.T) {
	iss := devissuer.NewIssuer()
	tok := iss.ServiceToken("gc", "global-controller")
	for name, v := range map[string]*auth.Verifier{
		"nil verifier":   nil,
		"nil keys":       auth.NewVerifier(nil, auth.VerifierOptions{}),
		"key source err": auth.NewVerifier(failingKeys{}, auth.VerifierOptions{}),
		"bad pinned key": auth.NewVerifier(auth.NewStaticKeys(ed25519.PublicKey{1, 2}), auth.VerifierOptions{}),
	} {
		if _, err := v.VerifyService(context.Background(), tok, ""); reasonOf(t, err) != auth.ReasonKeyUnavailable {
			t.Errorf("%s: err = %v, want key_unavailable", name, err)
		}
	}
}

func TestParsePublicKeyPEM(t *testing.T) {
	iss := devissuer.NewIssuer()
	pub, err := auth.ParsePublicKeyPEM(iss.PublicKeyPEM())
	if err != nil || !pub.Equal(iss.PublicKey()) {
		t.Fatalf("ParsePublicKeyPEM = %x, %v", pub, err)
	}
	for name, in := range map[string]string{
		"empty":     "",
		"wrong":     "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
		"bad der":   "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
		"not a pem": "hello",
	} {
		if _, err := auth.ParsePublicKeyPEM([]byte(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzParsePublicKeyPEM(f *testing.F) {
	f.Add(devissuer.NewIssuer().PublicKeyPEM())
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		pub, err := auth.ParsePublicKeyPEM(in)
		if err == nil && len(pub) != ed25519.PublicKeySize {
			t.Fatalf("accepted key of %d bytes", len(pub))
		}
	})
}

func FuzzVerifyJoin(f *testing.F) {
	iss := devissuer.NewIssuer().WithClock(func() time.Time { return t0 })
	v := newVerifier(iss)
	f.Add(iss.MeetingToken("u", "m"))
	f.Add(iss.GuestToken("g", "m", "Guest"))
	f.Add(iss.ServiceToken("gc", "global-controller"))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.VerifyJoin(context.Background(), token)
		if err != nil {
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("error %v is not ErrInvalidToken", err)
			}
			return
		}
		if c.MeetingID == "" || (c.TokenType != "meeting" && c.TokenType != "guest") {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}

func TestIssuerKeysAreFresh(t *testing.T) {
	a, b := devissuer.NewIssuer(), devissuer.NewIssuer()
	if a.KID() == b.KID() || a.PublicKey().Equal(b.PublicKey()) {
		t.Fatal("two issuers share a key or kid")
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	if got := devissuer.NewIssuerFromKey("k1", priv); got.KID() != "k1" || !got.PublicKey().Equal(priv.Public()) {
		t.Fatal("NewIssuerFromKey did not keep the key")
	}
}

func BenchmarkVerifyService(b *testing.B) {
	iss := devissuer.NewIssuer()
	v := auth.NewVerifier(auth.NewStaticKeys(iss.PublicKey()), auth.VerifierOptions{})
	tok := iss.ServiceToken("gc-1", "global-controller")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyService(ctx, tok, ""); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyJoin(b *testing.B) {
	iss := devissuer.NewIssuer()
	v := auth.NewVerifier(auth.NewStaticKeys(iss.PublicKey()), auth.VerifierOptions{})
	tok := iss.MeetingToken("user-1", "m-1")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyJoin(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func TestVerifyServicePins(t *testing.T) {
	iss := devissuer.NewIssuer().WithClock(func() time.Time { return t0 })
	pinned := func(p auth.ServicePins) *auth.Verifier {
		return auth.NewVerifier(auth.NewStaticKeys(iss.PublicKey()), auth.VerifierOptions{Now: func() time.Time { return t0 }, Pins: p})
	}
	plain := iss.ServiceToken("gc-1", "global-controller") // as Dark Tower issues them: no iss, no aud
	fitting := iss.ServiceToken("gc-1", "global-controller",
		devissuer.WithClaim("iss", "https://ac.example.net"), devissuer.WithClaim("aud", []string{"edgemc-eu", "other"}))
	tests := []struct {
		name   string
		pins   auth.ServicePins
		token  string
		reason string
	}{
		{"no pins, Dark Tower token", auth.ServicePins{}, plain, ""},
		{"all pins met", auth.ServicePins{Issuer: "https://ac.example.net", Audience: "edgemc-eu", Subjects: []string{"gc-2", "gc-1"}}, fitting, ""},
		{"audience as a string", auth.ServicePins{Audience: "edgemc-eu"}, iss.ServiceToken("gc-1", "global-controller", devissuer.WithClaim("aud", "edgemc-eu")), ""},
		{"issuer missing", auth.ServicePins{Issuer: "https://ac.example.net"}, plain, auth.ReasonWrongIssuer},
		{"issuer of another deployment", auth.ServicePins{Issuer: "https://ac.example.net"},
			iss.ServiceToken("gc-1", "global-controller", devissuer.WithClaim("iss", "https://ac.example.org")), auth.ReasonWrongIssuer},
		{"audience missing", auth.ServicePins{Audience: "edgemc-eu"}, plain, auth.ReasonWrongAudience},
		{"audience of another deployment", auth.ServicePins{Audience: "edgemc-us"}, fitting, auth.ReasonWrongAudience},
		{"subject not allowed", auth.ServicePins{Subjects: []string{"gc-2"}}, plain, auth.ReasonSubjectNotAllowed},
	}
	for _, tc := range tests {
		var counted []string
		tc.pins.Refused = func(reason string) { counted = append(counted, reason) }
		_, err := pinned(tc.pins).VerifyService(context.Background(), tc.token, "")
		if got := reasonOf(t, err); got != tc.reason {
			t.Errorf("%s: reason %q (%v), want %q", tc.name, got, err, tc.reason)
		}
		if want := []string{tc.reason}; tc.reason != "" && !slices.Equal(counted, want) || tc.reason == "" && counted != nil {
			t.Errorf("%s: counted %q", tc.name, counted)
		}
	}
	// Pins are about service tokens: join tokens are unaffected.
	if _, err := pinned(auth.ServicePins{Issuer: "x", Audience: "y", Subjects: []string{"z"}}).VerifyJoin(context.Background(), iss.MeetingToken("u", "m-1")); err != nil {
		t.Errorf("a join token was judged by service pins: %v", err)
	}
}
