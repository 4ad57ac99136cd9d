package actoken

import (
	"strings"
	"testing"
	"time"
)

// FuzzDecodeResponse: no body panics the decoder; what it accepts is a
// JWT-shaped token of bounded size with a lifetime in (0, MaxExpiresIn];
// an error never repeats the token.
func FuzzDecodeResponse(f *testing.F) {
	f.Add([]byte(`{"access_token":"a.b.c","token_type":"Bearer","expires_in":3600,"scope":"service.write.mh"}`))
	f.Add([]byte(`{"access_token":"a.b.c","expires_in":0}`))
	f.Add([]byte(`{"access_token":"a.b.c","expires_in":1e99}`))
	f.Add([]byte(`{"access_token":null}`))
	f.Add([]byte(`[1,2,3]`))
	f.Add([]byte(`null`))
	f.Add([]byte("{\"access_token\":\"a.b.c\",\"expires_in\":60,\"scope\":\"\xff\xfe\"}"))
	f.Fuzz(func(t *testing.T, body []byte) {
		g, err := decodeResponse(body)
		if err != nil {
			if g != (grant{}) {
				t.Fatalf("refused body left %+v", g)
			}
			return
		}
		if !jwtShaped(g.token) || len(g.token) > maxTokenBytes {
			t.Fatalf("accepted token %q", g.token)
		}
		if g.expiresIn <= 0 || g.expiresIn > MaxExpiresIn || g.expiresIn%time.Second != 0 {
			t.Fatalf("accepted lifetime %s", g.expiresIn)
		}
		if len(g.scope) > maxScopeBytes {
			t.Fatalf("scope of %d bytes kept", len(g.scope))
		}
	})
}

func TestDecodeErrorsNeverShowTheToken(t *testing.T) {
	const tok = "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"
	for _, body := range []string{
		`{"access_token":"` + tok + `","expires_in":-1}`,
		`{"access_token":"` + tok + `","token_type":"nope","expires_in":60}`,
		`{"access_token":"` + tok + `x y","expires_in":60}`,
	} {
		if _, err := decodeResponse([]byte(body)); err == nil || strings.Contains(err.Error(), "eyJ") {
			t.Fatalf("decodeResponse(%s): %v", body, err)
		}
	}
}
