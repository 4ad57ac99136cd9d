package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/devissuer"
)

// FuzzVerifyService feeds arbitrary strings to the service-token verifier
// that guards every gRPC call: it fails with ErrInvalidToken or returns the
// claims of a token the issuer signed, never a join token's.
func FuzzVerifyService(f *testing.F) {
	iss := devissuer.NewIssuer().WithClock(func() time.Time { return t0 })
	v := newVerifier(iss)
	f.Add(iss.ServiceToken("gc", "global-controller"))
	f.Add(iss.ServiceToken("mh", "media-handler", devissuer.WithScopes("a", "service.write.mc")))
	f.Add(iss.MeetingToken("u", "m"))
	f.Add(iss.ServiceToken("gc", "global-controller", devissuer.WithKID("")))
	f.Add("eyJhbGciOiJub25lIiwia2lkIjoieCJ9.e30.")
	f.Add(strings.Repeat("a", 9<<10))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.VerifyService(context.Background(), token, "")
		if err != nil {
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("error %v is not ErrInvalidToken", err)
			}
			return
		}
		if c.ServiceType == "" || c.ExpiresAt.IsZero() {
			t.Fatalf("accepted claims %+v", c)
		}
	})
}
