package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenSize is the largest token accepted, in bytes.
const MaxTokenSize = 8 << 10

// DefaultClockSkew is the allowance for clocks that disagree between the
// issuer and edgemc: a token is accepted up to this long after its exp, and
// its iat may be up to this far in the future.
const DefaultClockSkew = 60 * time.Second

// Token types: of join tokens (their token_type claim), and of service
// tokens (which carry none), as the Observer names them.
const (
	TokenTypeMeeting = "meeting"
	TokenTypeGuest   = "guest"
	TokenTypeService = "service"
)

// ErrInvalidToken matches (with errors.Is) every verification failure.
var ErrInvalidToken = errors.New("invalid token")

// Reasons carried by TokenError. Where Dark Tower's meeting controller
// names a reason (its mc_jwt_validations_total failure_reason), edgemc uses
// the same name.
const (
	ReasonMissing        = "missing_token"
	ReasonTooLarge       = "too_large"
	ReasonMalformed      = "malformed"
	ReasonAlgorithm      = "bad_algorithm"
	ReasonUnknownKID     = "unknown_kid"
	ReasonKeyUnavailable = "key_unavailable"
	ReasonSignature      = "signature_invalid"
	ReasonExpired        = "expired"
	ReasonIssuedInFuture = "issued_in_future"
	ReasonNotYetValid    = "not_yet_valid"
	ReasonMissingClaim   = "missing_claim"
	ReasonInvalidClaims  = "invalid_claims"
	ReasonWrongType      = "wrong_type"
	ReasonScope          = "scope_mismatch"
	// Refusals by ServicePins.
	ReasonWrongIssuer       = "wrong_issuer"
	ReasonWrongAudience     = "wrong_audience"
	ReasonSubjectNotAllowed = "subject_not_allowed"
)

// TokenError describes why a token was refused. Reason is one of the Reason
// constants; Err, when set, is the underlying cause (never the token).
type TokenError struct {
	Reason string
	Err    error
}

func (e *TokenError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("invalid token (%s): %v", e.Reason, e.Err)
	}
	return "invalid token (" + e.Reason + ")"
}

// Is makes every TokenError match ErrInvalidToken.
func (e *TokenError) Is(target error) bool { return target == ErrInvalidToken }

func (e *TokenError) Unwrap() error { return e.Err }

// Observer is told the outcome of every token check, e.g. for metrics. Its
// method must not block.
type Observer interface {
	// TokenChecked reports one check of a token of tokenType
	// (TokenTypeMeeting, TokenTypeGuest or TokenTypeService): reason is ""
	// for a valid token, else one of the Reason constants.
	TokenChecked(tokenType, reason string)
}

// VerifierOptions tunes a Verifier. Zero values select the defaults.
type VerifierOptions struct {
	// ClockSkew defaults to DefaultClockSkew (60 s).
	ClockSkew time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Observer, when set, is told about every check.
	Observer Observer
	// Pins narrow the service tokens accepted; the zero value accepts any.
	Pins ServicePins
}

// ServicePins narrow the service tokens VerifyService accepts to those
// meant for this deployment. Dark Tower's tokens carry no iss or aud, so
// each pin is off unless set; a token that misses a pin is refused with
// ReasonWrongIssuer, ReasonWrongAudience or ReasonSubjectNotAllowed.
type ServicePins struct {
	Issuer   string   // iss must equal it
	Audience string   // aud must contain it
	Subjects []string // sub must be one of them
	// Refused, when set, is told the reason of every refusal (to count it).
	Refused func(reason string)
}

// Verifier checks token signatures and time claims. It is safe for
// concurrent use.
type Verifier struct {
	keys   KeySource
	parser *jwt.Parser
	obs    Observer
	pins   ServicePins
}

// NewVerifier returns a Verifier resolving keys through keys.
func NewVerifier(keys KeySource, opts VerifierOptions) *Verifier {
	if opts.ClockSkew <= 0 {
		opts.ClockSkew = DefaultClockSkew
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Verifier{
		keys: keys,
		obs:  opts.Observer,
		pins: opts.Pins,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithLeeway(opts.ClockSkew),
			jwt.WithTimeFunc(opts.Now),
			jwt.WithIssuedAt(),
			jwt.WithExpirationRequired(),
			jwt.WithStrictDecoding(),
		),
	}
}

// ServiceClaims are the claims of a service token.
type ServiceClaims struct {
	Subject     string
	Scopes      []string
	ServiceType string
	IssuedAt    time.Time
	ExpiresAt   time.Time
}

// HasScope reports whether the token grants scope.
func (c *ServiceClaims) HasScope(scope string) bool {
	for _, s := range c.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

type serviceJWT struct {
	jwt.RegisteredClaims
	Scope       string `json:"scope"`
	ServiceType string `json:"service_type"`
	TokenType   string `json:"token_type,omitempty"`
}

// VerifyService verifies a service token (without the "Bearer " prefix)
// that must grant scope ("" requires none; a missing one is ReasonScope).
// The service_type is returned, not judged: which caller may call what is
// the caller's decision. A join token is refused (ReasonWrongType).
func (v *Verifier) VerifyService(ctx context.Context, token, scope string) (claims *ServiceClaims, err error) {
	defer func() { v.observe(TokenTypeService, err) }()
	var c serviceJWT
	if err := v.verify(ctx, token, &c); err != nil {
		return nil, err
	}
	if c.TokenType != "" {
		return nil, &TokenError{Reason: ReasonWrongType}
	}
	if err := v.pins.check(&c.RegisteredClaims); err != nil {
		if v.pins.Refused != nil {
			v.pins.Refused(err.Reason)
		}
		return nil, err
	}
	claims = &ServiceClaims{
		Subject:     c.Subject,
		Scopes:      strings.Fields(c.Scope),
		ServiceType: c.ServiceType,
		IssuedAt:    c.IssuedAt.Time,
		ExpiresAt:   c.ExpiresAt.Time,
	}
	if scope != "" && !claims.HasScope(scope) {
		return nil, &TokenError{Reason: ReasonScope, Err: fmt.Errorf("scope %s required", scope)}
	}
	return claims, nil
}

// observe tells the Observer how the check of a token of tokenType ended.
func (v *Verifier) observe(tokenType string, err error) {
	if v == nil || v.obs == nil {
		return
	}
	reason := ""
	if err != nil {
		reason = ReasonInvalidClaims
		if te := (*TokenError)(nil); errors.As(err, &te) {
			reason = te.Reason
		}
	}
	v.obs.TokenChecked(tokenType, reason)
}

// check refuses claims that miss a pin. The reasons quote claims, which
// are not secret.
func (p ServicePins) check(c *jwt.RegisteredClaims) *TokenError {
	switch {
	case p.Issuer != "" && c.Issuer != p.Issuer:
		return &TokenError{Reason: ReasonWrongIssuer, Err: fmt.Errorf("iss %q is not %q", c.Issuer, p.Issuer)}
	case p.Audience != "" && !slices.Contains(c.Audience, p.Audience):
		return &TokenError{Reason: ReasonWrongAudience, Err: fmt.Errorf("aud %q does not include %q", []string(c.Audience), p.Audience)}
	case len(p.Subjects) > 0 && !slices.Contains(p.Subjects, c.Subject):
		return &TokenError{Reason: ReasonSubjectNotAllowed, Err: fmt.Errorf("sub %q is not allowed", c.Subject)}
	}
	return nil
}

// JoinClaims are the claims of a meeting or guest join token.
type JoinClaims struct {
	Subject, TokenType, MeetingID, MeetingOrgID, HomeOrgID, ParticipantType, Role, DisplayName string
	WaitingRoom                                                                                bool
	Capabilities                                                                               []string
	JTI                                                                                        string
	IssuedAt, ExpiresAt                                                                        time.Time
}

type joinJWT struct {
	jwt.RegisteredClaims
	TokenType       string   `json:"token_type"`
	MeetingID       string   `json:"meeting_id"`
	MeetingOrgID    string   `json:"meeting_org_id"`
	HomeOrgID       string   `json:"home_org_id"`
	ParticipantType string   `json:"participant_type"`
	Role            string   `json:"role"`
	DisplayName     string   `json:"display_name"`
	WaitingRoom     bool     `json:"waiting_room"`
	Capabilities    []string `json:"capabilities"`
}

// VerifyJoin verifies a meeting or guest join token. token_type is checked
// after the signature, so a forged type never reaches the caller. Matching
// meeting_id against the join request is the caller's job.
func (v *Verifier) VerifyJoin(ctx context.Context, token string) (_ *JoinClaims, err error) {
	var c joinJWT
	// A refused token counts under the type it claims (meeting unless it
	// claims guest), so that the label stays one of the two.
	defer func() {
		tokenType := TokenTypeMeeting
		if c.TokenType == TokenTypeGuest {
			tokenType = TokenTypeGuest
		}
		v.observe(tokenType, err)
	}()
	if err := v.verify(ctx, token, &c); err != nil {
		return nil, err
	}
	if c.TokenType != TokenTypeMeeting && c.TokenType != TokenTypeGuest {
		return nil, &TokenError{Reason: ReasonWrongType}
	}
	if c.Subject == "" || c.MeetingID == "" {
		return nil, &TokenError{Reason: ReasonMissingClaim, Err: errors.New("sub and meeting_id are required")}
	}
	return &JoinClaims{
		Subject:         c.Subject,
		TokenType:       c.TokenType,
		MeetingID:       c.MeetingID,
		MeetingOrgID:    c.MeetingOrgID,
		HomeOrgID:       c.HomeOrgID,
		ParticipantType: c.ParticipantType,
		Role:            c.Role,
		DisplayName:     c.DisplayName,
		WaitingRoom:     c.WaitingRoom,
		Capabilities:    c.Capabilities,
		JTI:             c.ID,
		IssuedAt:        c.IssuedAt.Time,
		ExpiresAt:       c.ExpiresAt.Time,
	}, nil
}

// registered gives access to the standard claims of both claim structs.
type registered interface {
	jwt.Claims
	registered() *jwt.RegisteredClaims
}

func (c *serviceJWT) registered() *jwt.RegisteredClaims { return &c.RegisteredClaims }
func (c *joinJWT) registered() *jwt.RegisteredClaims    { return &c.RegisteredClaims }

// keyError marks a failure of the key source, to tell it apart from the
// parser's own "unverifiable" errors.
type keyError struct{ err error }

func (e keyError) Error() string { return e.err.Error() }
func (e keyError) Unwrap() error { return e.err }

var errNoKID = errors.New("header kid is required")

func (v *Verifier) verify(ctx context.Context, token string, claims registered) error {
	switch {
	case token == "":
		return &TokenError{Reason: ReasonMissing}
	case len(token) > MaxTokenSize:
		return &TokenError{Reason: ReasonTooLarge}
	case v == nil || v.keys == nil:
		return &TokenError{Reason: ReasonKeyUnavailable, Err: errors.New("no key source configured")}
	}
	parsed, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errNoKID
		}
		key, err := v.keys.Key(ctx, kid)
		if err != nil {
			return nil, keyError{err}
		}
		return key, nil
	})
	if err != nil {
		return classify(parsed, err)
	}
	if claims.registered().IssuedAt == nil {
		return &TokenError{Reason: ReasonMissingClaim, Err: errors.New("iat is required")}
	}
	return nil
}

// classify turns a parser error into a TokenError with a stable reason.
func classify(parsed *jwt.Token, err error) error {
	var kerr keyError
	reason := ReasonInvalidClaims
	switch {
	case errors.As(err, &kerr):
		reason = ReasonKeyUnavailable
		if errors.Is(kerr.err, ErrUnknownKey) {
			reason = ReasonUnknownKID
		}
	case errors.Is(err, errNoKID), errors.Is(err, jwt.ErrTokenMalformed):
		reason = ReasonMalformed
	case parsed != nil && parsed.Method != nil && parsed.Method.Alg() != jwt.SigningMethodEdDSA.Alg(),
		errors.Is(err, jwt.ErrTokenUnverifiable):
		// A foreign or unregistered algorithm (including "none").
		reason = ReasonAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		reason = ReasonSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		reason = ReasonExpired
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		reason = ReasonIssuedInFuture
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		reason = ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		reason = ReasonMissingClaim
	}
	return &TokenError{Reason: reason, Err: err}
}
