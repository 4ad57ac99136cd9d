// Package devissuer is a DEVELOPMENT token issuer: it mints Dark Tower EdDSA
// tokens (meeting, guest and service tokens) signed by one Ed25519 key, and
// serves the JWKS document and PEM public key that let a verifier trust them.
//
// It is a development stand-in for Dark Tower's Auth Controller, used by
// `edgemc lab` (inside the same process, JWKS on loopback), by the load
// generator and bench tools, and by tests. `edgemc serve` never uses it on
// its production path: there tokens come from the real Auth Controller and
// are only verified (package gc/auth). Its options can also craft expired
// tokens, tokens under a foreign or missing kid and tokens with odd claims,
// which tests use to exercise the verifier.
package devissuer

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of minted tokens.
const (
	DefaultTTL          = time.Hour
	DefaultServiceScope = "service.write.mc"
)

// Issuer signs tokens with one Ed25519 key under one kid. It is immutable and
// safe for concurrent use.
type Issuer struct {
	kid  string
	priv ed25519.PrivateKey
	now  func() time.Time
}

// NewIssuer returns an issuer with a fresh key and a random kid.
func NewIssuer() *Issuer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("devissuer: generating key: %v", err)) // crypto/rand does not fail
	}
	return NewIssuerFromKey("edgemc-dev-"+rand.Text()[:12], priv)
}

// NewIssuerFromKey returns an issuer signing with priv under kid, for a
// development issuer whose key survives restarts.
func NewIssuerFromKey(kid string, priv ed25519.PrivateKey) *Issuer {
	return &Issuer{kid: kid, priv: priv, now: time.Now}
}

// WithClock returns a copy of the issuer that stamps iat/exp from now.
func (i *Issuer) WithClock(now func() time.Time) *Issuer {
	c := *i
	c.now = now
	return &c
}

// KID is the key id written in every token header (unless overridden).
func (i *Issuer) KID() string { return i.kid }

// PublicKey returns the verification key.
func (i *Issuer) PublicKey() ed25519.PublicKey { return i.priv.Public().(ed25519.PublicKey) }

// PublicKeyPEM returns the verification key as a PKIX "PUBLIC KEY" PEM block.
func (i *Issuer) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(i.PublicKey())
	if err != nil {
		panic(fmt.Sprintf("devissuer: encoding public key: %v", err)) // Ed25519 keys always encode
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// JWKS returns the JWKS document holding the issuer's key.
func (i *Issuer) JWKS() []byte {
	doc, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
		"kid": i.kid, "x": base64.RawURLEncoding.EncodeToString(i.PublicKey()),
	}}})
	return doc
}

// JWKSHandler serves the JWKS document (e.g. at /.well-known/jwks.json).
func (i *Issuer) JWKSHandler() http.Handler {
	doc := i.JWKS()
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(doc)
	})
}

// Option adjusts one token.
type Option func(*tokenSpec)

type tokenSpec struct {
	claims jwt.MapClaims
	kid    string
	iat    time.Time
	exp    time.Time
	ttl    time.Duration
}

// WithTTL sets exp to iat + d.
func WithTTL(d time.Duration) Option { return func(s *tokenSpec) { s.ttl = d } }

// WithExpiresAt sets exp.
func WithExpiresAt(t time.Time) Option { return func(s *tokenSpec) { s.exp = t } }

// WithIssuedAt sets iat (exp follows from it unless set explicitly).
func WithIssuedAt(t time.Time) Option { return func(s *tokenSpec) { s.iat = t } }

// WithKID overrides the header kid; an empty kid omits it.
func WithKID(kid string) Option { return func(s *tokenSpec) { s.kid = kid } }

// WithClaim sets (or replaces) one claim.
func WithClaim(name string, value any) Option { return func(s *tokenSpec) { s.claims[name] = value } }

// WithoutClaim removes one claim (including iat or exp).
func WithoutClaim(name string) Option { return func(s *tokenSpec) { s.claims[name] = nil } }

// WithRole sets the role claim of a join token ("host" or "participant").
func WithRole(role string) Option { return WithClaim("role", role) }

// WithScopes sets the space-separated scope claim of a service token.
func WithScopes(scopes ...string) Option {
	return WithClaim("scope", strings.Join(scopes, " "))
}

// MeetingToken mints a member's meeting join token (role "participant"
// unless overridden).
func (i *Issuer) MeetingToken(sub, meetingID string, opts ...Option) string {
	base := jwt.MapClaims{
		"sub": sub, "token_type": "meeting", "meeting_id": meetingID,
		"meeting_org_id": "org-dev", "home_org_id": "org-dev", "participant_type": "member",
		"role": "participant", "capabilities": []string{"audio", "video", "screen_share"},
	}
	return i.mustSign(base, opts)
}

// GuestToken mints a guest join token.
func (i *Issuer) GuestToken(sub, meetingID, displayName string, opts ...Option) string {
	base := jwt.MapClaims{
		"sub": sub, "token_type": "guest", "meeting_id": meetingID,
		"meeting_org_id": "org-dev", "participant_type": "external", "role": "participant",
		"display_name": displayName, "waiting_room": false, "capabilities": []string{"audio", "video"},
	}
	return i.mustSign(base, opts)
}

// ServiceToken mints a service token for a caller of the given service type
// ("global-controller", "media-handler", ...) with scope "service.write.mc"
// unless overridden.
func (i *Issuer) ServiceToken(sub, serviceType string, opts ...Option) string {
	base := jwt.MapClaims{"sub": sub, "service_type": serviceType, "scope": DefaultServiceScope}
	return i.mustSign(base, opts)
}

// Sign mints a token with arbitrary claims; iat, exp and jti are added unless
// present. It fails only when a claim cannot be encoded as JSON.
func (i *Issuer) Sign(claims map[string]any, opts ...Option) (string, error) {
	s := tokenSpec{claims: jwt.MapClaims{}, kid: i.kid, iat: i.now(), ttl: DefaultTTL}
	for k, v := range claims {
		s.claims[k] = v
	}
	for _, o := range opts {
		o(&s)
	}
	if s.exp.IsZero() {
		s.exp = s.iat.Add(s.ttl)
	}
	defaults := map[string]any{"iat": s.iat.Unix(), "exp": s.exp.Unix(), "jti": newJTI()}
	for k, v := range defaults {
		if _, set := s.claims[k]; !set {
			s.claims[k] = v
		}
	}
	for k, v := range s.claims {
		if v == nil {
			delete(s.claims, k)
		}
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, s.claims)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	signed, err := tok.SignedString(i.priv)
	if err != nil {
		return "", fmt.Errorf("devissuer: signing token: %w", err)
	}
	return signed, nil
}

func (i *Issuer) mustSign(base jwt.MapClaims, opts []Option) string {
	tok, err := i.Sign(base, opts...)
	if err != nil {
		panic(err) // only a WithClaim value that JSON cannot encode gets here
	}
	return tok
}

func newJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
