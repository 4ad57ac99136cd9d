package actoken

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/actest"
	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/internal/retry"
	"github.com/edgemc/edgemc/gc/tlsfiles"
	"github.com/edgemc/edgemc/gc/tlsfiles/tlstest"
	"github.com/edgemc/edgemc/gc/tracectx"
)

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// count is how many lines of the log contain s.
func (l *logBuf) count(s string) int { return strings.Count(l.String(), s) }

type kinds struct {
	mu sync.Mutex
	k  []string
}

func (o *kinds) TokenRefresh(kind string, _ time.Duration) {
	o.mu.Lock()
	o.k = append(o.k, kind)
	o.mu.Unlock()
}
func (o *kinds) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.k...)
}

type fixture struct {
	ac   *actest.AC
	src  *Source
	logs *logBuf
	obs  *kinds
}

// newFixture builds a Source against a fake AC with fast retries; run
// starts it for the rest of the test.
func newFixture(t *testing.T, mod ...func(*Config)) *fixture {
	t.Helper()
	f := &fixture{ac: actest.Start(t), logs: &logBuf{}, obs: &kinds{}}
	cfg := Config{
		URL: f.ac.URL(), ClientID: actest.ClientID,
		Secret:      func() (string, error) { return actest.Secret, nil },
		BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Observer: f.obs,
	}
	for _, m := range mod {
		m(&cfg)
	}
	var err error
	if f.src, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range []string{actest.Secret} {
			if strings.Contains(f.logs.String(), s) {
				t.Errorf("the client secret is in the log:\n%s", f.logs.String())
			}
		}
	})
	return f
}

func (f *fixture) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.src.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestAcquire(t *testing.T) {
	f := newFixture(t)
	if _, err := f.src.Token(context.Background()); !errors.Is(err, ErrNoToken) {
		t.Fatalf("Token before any acquisition: %v", err)
	}
	f.run(t)
	ctx := waitCtx(t)
	if err := f.src.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := f.src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := auth.NewVerifier(auth.NewStaticKeys(f.ac.Issuer.PublicKey()), auth.VerifierOptions{}).VerifyService(ctx, tok, "")
	if err != nil || claims.ServiceType != "meeting-controller" || !claims.HasScope("service.write.mh") {
		t.Fatalf("token claims %+v, %v", claims, err)
	}
	r := f.ac.Requests()[0]
	if r.ClientID != actest.ClientID || !r.SecretOK || r.GrantType != "client_credentials" || r.Status != http.StatusOK {
		t.Fatalf("request %+v", r)
	}
	if _, ok := tracectx.Parse(r.TraceParent, ""); !ok {
		t.Fatalf("token request without a valid traceparent: %q", r.TraceParent)
	}
	st := f.src.Status()
	if !st.HasToken || st.Failures != 0 || st.Scope != "service.write.mh service.write.gc" || time.Until(st.ExpiresAt) < 59*time.Minute {
		t.Fatalf("status %+v", st)
	}
	if strings.Contains(f.logs.String(), tok) {
		t.Fatal("the token is in the log")
	}
}

// A token is refreshed before it expires: here it lives 6 s and is renewed
// 4 s before its end.
func TestRefreshBeforeExpiry(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RefreshLead = 4 * time.Second })
	f.ac.Grant(6 * time.Second)
	f.run(t)
	reqs, err := f.ac.WaitRequests(waitCtx(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap > 2*time.Second+time.Second/2 || gap < time.Second {
		t.Fatalf("refreshed after %s, want about 2 s (6 s life, 4 s lead, up to 10 %% jitter)", gap)
	}
}

func TestRefreshDelay(t *testing.T) {
	for _, tc := range []struct{ life, lead, lo, hi time.Duration }{
		{time.Hour, 330 * time.Second, 3240 * time.Second, 3270 * time.Second},
		{10 * time.Second, 330 * time.Second, 4500 * time.Millisecond, 5 * time.Second},
	} {
		for range 100 {
			if d := refreshDelay(tc.life, tc.lead); d < tc.lo || d > tc.hi {
				t.Fatalf("refreshDelay(%s, %s) = %s, want %s..%s", tc.life, tc.lead, d, tc.lo, tc.hi)
			}
		}
	}
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 5: 16 * time.Second, 6: 30 * time.Second, 60: 30 * time.Second} {
		if got := retry.Backoff(time.Second, 30*time.Second, n); got != want {
			t.Errorf("backoff after %d failures = %s, want %s", n, got, want)
		}
		if j := jittered(want); j > want || j < want*4/5 {
			t.Errorf("jittered(%s) = %s", want, j)
		}
	}
}

// Refused credentials are logged once as an error, retried, and the token
// comes once the AC accepts them.
func TestCredentialsRefused(t *testing.T) {
	f := newFixture(t)
	f.ac.Refuse(http.StatusUnauthorized, 5)
	f.run(t)
	if err := f.src.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.ac.Requests()); n != 6 {
		t.Fatalf("%d requests, want 5 refused and 1 granted", n)
	}
	if n := f.logs.count("level=ERROR msg=\"auth controller: credentials refused"); n != 1 {
		t.Fatalf("credentials refused logged %d times, want once:\n%s", n, f.logs.String())
	}
	if got := f.obs.all(); len(got) != 6 || got[0] != KindAuthRejected || got[5] != "" {
		t.Fatalf("observed %v", got)
	}
}

// The AC unavailable (connections refused, then 503) for many attempts:
// the source keeps trying and takes the token when it comes.
func TestUnavailableThenUp(t *testing.T) {
	f := newFixture(t)
	f.ac.Down()
	f.run(t)
	ctx := waitCtx(t)
	waitFor(t, ctx, "ten failed attempts", func() bool { return f.src.Status().Failures >= 10 })
	st := f.src.Status()
	if st.HasToken || st.LastErrorKind != KindHTTP || !strings.Contains(st.LastError, "unavailable") {
		t.Fatalf("status while down: %+v", st)
	}
	if _, err := f.src.Token(ctx); !errors.Is(err, ErrNoToken) || !strings.Contains(err.Error(), "unavailable") {
		t.Fatalf("Token while down: %v", err)
	}
	f.ac.Refuse(http.StatusServiceUnavailable, 3)
	f.ac.Up()
	if err := f.src.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if n := f.logs.count("auth controller unavailable; retrying"); n != 2 {
		t.Fatalf("unavailability logged %d times, want twice (refused connections, then 503):\n%s", n, f.logs.String())
	}
}

func TestInvalidResponses(t *testing.T) {
	tok := actest.Start(t).Issuer.ServiceToken("x", "meeting-controller")
	for name, body := range map[string]string{
		"garbage":          `<html>oops</html>`,
		"no access_token":  `{"token_type":"Bearer","expires_in":3600}`,
		"empty token":      `{"access_token":"","expires_in":3600}`,
		"not a JWT":        `{"access_token":"abc def","expires_in":3600}`,
		"zero expires_in":  `{"access_token":"` + tok + `","expires_in":0}`,
		"negative":         `{"access_token":"` + tok + `","expires_in":-5}`,
		"absurd expires":   `{"access_token":"` + tok + `","expires_in":31536000}`,
		"no expires_in":    `{"access_token":"` + tok + `"}`,
		"fractional":       `{"access_token":"` + tok + `","expires_in":1.5}`,
		"wrong token_type": `{"access_token":"` + tok + `","token_type":"mac","expires_in":3600}`,
		"trailing data":    `{"access_token":"` + tok + `","expires_in":3600} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.ac.Respond(http.StatusOK, body)
			f.run(t)
			waitFor(t, waitCtx(t), "two failed attempts", func() bool { return f.src.Status().Failures >= 2 })
			if st := f.src.Status(); st.HasToken || st.LastErrorKind != KindInvalidResponse {
				t.Fatalf("status %+v", st)
			}
			if strings.Contains(f.logs.String(), tok) || strings.Contains(f.src.Status().LastError, tok) {
				t.Fatal("the token of a refused answer is in the log or status")
			}
			if n := f.logs.count("invalid token response; retrying"); n != 1 {
				t.Fatalf("logged %d times:\n%s", n, f.logs.String())
			}
		})
	}
}

// After a failure the last good token is still handed out, until it
// expires; Token then says why there is none.
func TestKeepsLastGoodToken(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	f.src.now = func() time.Time { return now }
	ctx := waitCtx(t)
	if _, err := f.src.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	good, _ := f.src.Token(ctx)
	f.ac.Refuse(http.StatusBadGateway, -1)
	if _, err := f.src.acquire(ctx); err == nil {
		t.Fatal("a 502 counted as a success")
	}
	if tok, err := f.src.Token(ctx); err != nil || tok != good {
		t.Fatalf("after a failed refresh: %v", err)
	}
	now = now.Add(time.Hour + time.Second)
	if _, err := f.src.Token(ctx); !errors.Is(err, ErrNoToken) || !strings.Contains(err.Error(), "HTTP 502") {
		t.Fatalf("after expiry: %v", err)
	}
	if f.src.Status().HasToken {
		t.Fatal("status says a token is held after it expired")
	}
}

func TestUnreadableSecret(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.Secret = func() (string, error) { return "", errors.New("open /etc/edgemc/ac-secret: permission denied") }
	})
	if _, err := f.src.acquire(waitCtx(t)); err == nil || !strings.Contains(err.Error(), "client secret") {
		t.Fatalf("acquire: %v", err)
	}
	if len(f.ac.Requests()) != 0 {
		t.Fatal("a request was sent without a secret")
	}
	if got := f.obs.all(); len(got) != 1 || got[0] != KindConfiguration {
		t.Fatalf("observed %v", got)
	}
}

func TestNewChecksConfig(t *testing.T) {
	secret := func() (string, error) { return "x", nil }
	for _, cfg := range []Config{
		{URL: "ftp://ac", ClientID: "c", Secret: secret},
		{URL: "https://user:pw@ac", ClientID: "c", Secret: secret},
		{URL: "https://ac", Secret: secret},
		{URL: "https://ac", ClientID: "c"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("error shows the URL's password: %v", err)
		}
	}
}

// A redirect is not followed: it would carry the secret elsewhere.
func TestRedirectNotFollowed(t *testing.T) {
	f := newFixture(t)
	f.ac.Respond(http.StatusTemporaryRedirect, "")
	_, err := f.src.acquire(waitCtx(t))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindAcquisitionFailed || e.Status != http.StatusTemporaryRedirect {
		t.Fatalf("acquire: %v", err)
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// With a transport that builds its TLS configuration per connection, the
// source follows a CA bundle replaced on disk: refused while the bundle
// names another CA, a token at the next attempt once it names the AC's.
func TestTransportFollowsCABundle(t *testing.T) {
	acCA, otherCA := tlstest.NewCA(t, "auth controller CA"), tlstest.NewCA(t, "another CA")
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	tlstest.Replace(t, bundle, otherCA.PEM)
	trust, err := tlsfiles.NewClientTrust(tlsfiles.ClientFiles{CAFile: bundle}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var front *httptest.Server
	f := newFixture(t, func(c *Config) {
		back, err := url.Parse(c.URL)
		if err != nil {
			t.Fatal(err)
		}
		front = httptest.NewUnstartedServer(httputil.NewSingleHostReverseProxy(back))
		front.TLS = &tls.Config{Certificates: []tls.Certificate{acCA.Issue(t, tlstest.Options{}).TLS(t)}}
		front.StartTLS()
		t.Cleanup(front.Close)
		c.URL, c.Transport = front.URL, trust.HTTPTransport(nil)
	})
	f.run(t)
	deadline := time.Now().Add(20 * time.Second)
	for f.src.Status().Failures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no refused attempt while the bundle names another CA")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := len(f.ac.Requests()); n != 0 {
		t.Fatalf("%d requests reached the AC through an untrusted certificate", n)
	}
	tlstest.Replace(t, bundle, acCA.PEM)
	if err := f.src.Wait(waitCtx(t)); err != nil {
		t.Fatalf("no token after the bundle named the AC's CA: %v", err)
	}
}
