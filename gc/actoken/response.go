package actoken

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Limits on the Auth Controller's answer.
const (
	// MaxExpiresIn is the longest token lifetime accepted; the Auth
	// Controller issues one-hour tokens, and an answer beyond a day is
	// taken for a broken one.
	MaxExpiresIn = 24 * time.Hour
	// maxTokenBytes is the largest access token accepted (Dark Tower's
	// tokens are at most 8 KiB).
	maxTokenBytes = 8 << 10
	// maxScopeBytes bounds the scope kept for the status page.
	maxScopeBytes = 1 << 10
	// maxBodyBytes bounds the response body read.
	maxBodyBytes = 64 << 10
)

// grant is a decoded token response.
type grant struct {
	token     string
	expiresIn time.Duration
	scope     string
}

// errInvalid marks what is wrong with a response body; it never contains
// the token.
var errInvalid = errors.New("invalid token response")

// decodeResponse reads the body of a 200 answer: a JSON object with a
// JWT-shaped access_token, token_type Bearer (when present), and expires_in
// a whole number of seconds in (0, MaxExpiresIn].
func decodeResponse(body []byte) (grant, error) {
	var r struct {
		AccessToken *string `json:"access_token"`
		TokenType   *string `json:"token_type"`
		ExpiresIn   *int64  `json:"expires_in"`
		Scope       *string `json:"scope"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		return grant{}, fmt.Errorf("%w: not a JSON object with the expected fields", errInvalid)
	}
	if dec.More() {
		return grant{}, fmt.Errorf("%w: data after the JSON object", errInvalid)
	}
	switch {
	case r.AccessToken == nil || *r.AccessToken == "":
		return grant{}, fmt.Errorf("%w: no access_token", errInvalid)
	case len(*r.AccessToken) > maxTokenBytes:
		return grant{}, fmt.Errorf("%w: access_token longer than %d bytes", errInvalid, maxTokenBytes)
	case !jwtShaped(*r.AccessToken):
		return grant{}, fmt.Errorf("%w: access_token is not a JWT", errInvalid)
	case r.TokenType != nil && !strings.EqualFold(*r.TokenType, "Bearer"):
		return grant{}, fmt.Errorf("%w: token_type is not Bearer", errInvalid)
	case r.ExpiresIn == nil:
		return grant{}, fmt.Errorf("%w: no expires_in", errInvalid)
	case *r.ExpiresIn <= 0:
		return grant{}, fmt.Errorf("%w: expires_in %d is not positive", errInvalid, *r.ExpiresIn)
	case *r.ExpiresIn > int64(MaxExpiresIn/time.Second):
		return grant{}, fmt.Errorf("%w: expires_in %d is longer than %s", errInvalid, *r.ExpiresIn, MaxExpiresIn)
	}
	g := grant{token: *r.AccessToken, expiresIn: time.Duration(*r.ExpiresIn) * time.Second}
	if r.Scope != nil {
		g.scope = truncate(*r.Scope, maxScopeBytes)
	}
	return g, nil
}

// jwtShaped reports whether s is three non-empty base64url segments joined
// by dots, which is all a client needs to know of its own token.
func jwtShaped(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
