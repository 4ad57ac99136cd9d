// Package actest is a fake Dark Tower Auth Controller for tests: a real
// HTTP server on 127.0.0.1 serving the client-credentials token endpoint,
// whose answer a test sets while it runs (grant tokens, refuse, fail, send
// garbage, be down), recording every request with wait helpers built on
// channels.
package actest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devac"
	"github.com/edgemc/edgemc/gc/devissuer"
)

// Credentials the fake AC accepts.
const (
	ClientID = "mc-client"
	Secret   = "s3cr3t-client-secret-value"
)

// Request is one recorded token request.
type Request struct {
	At          time.Time
	ClientID    string
	SecretOK    bool // the expected secret was sent
	GrantType   string
	TraceParent string
	Status      int // what the fake answered
}

// AC is the fake Auth Controller. It is safe for concurrent use.
type AC struct {
	t      testing.TB
	Issuer *devissuer.Issuer
	srv    *httptest.Server

	mu      sync.Mutex
	answer  func(w http.ResponseWriter) int // nil grants
	refuseN int                             // requests still to answer with refuseCode
	refuse  int
	ttl     time.Duration
	reqs    []Request
	changed chan struct{}
}

// Start serves a fake AC granting one-hour tokens signed by a fresh issuer
// until the test ends.
func Start(t testing.TB) *AC {
	a := &AC{t: t, Issuer: devissuer.NewIssuer(), ttl: time.Hour, changed: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

// URL is the AC's base URL (ac-url).
func (a *AC) URL() string { return a.srv.URL }

// Grant grants tokens with this expires_in (whole seconds, at least 1).
func (a *AC) Grant(ttl time.Duration) {
	a.set(func() { a.answer, a.refuseN, a.ttl = nil, 0, ttl })
}

// Refuse answers the next n requests with HTTP status code (every request
// while n < 0), then grants again.
func (a *AC) Refuse(code, n int) {
	a.set(func() { a.answer, a.refuse, a.refuseN = nil, code, n })
}

// Respond answers every request with status code and this body, verbatim.
func (a *AC) Respond(code int, body string) {
	a.set(func() {
		a.refuseN = 0
		a.answer = func(w http.ResponseWriter) int {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
			return code
		}
	})
}

func (a *AC) set(f func()) { a.mu.Lock(); f(); a.mu.Unlock() }

// Down closes the listener (connections are refused); Up serves again on
// the same address.
func (a *AC) Down() {
	a.srv.Listener.Close()
	a.srv.CloseClientConnections()
}

// Up serves again after Down.
func (a *AC) Up() {
	a.t.Helper()
	lis, err := net.Listen("tcp", a.srv.Listener.Addr().String())
	if err != nil {
		a.t.Fatalf("actest: re-listen: %v", err)
	}
	go func() { _ = http.Serve(lis, http.HandlerFunc(a.serve)) }()
	a.t.Cleanup(func() { lis.Close() })
}

// Requests returns the recorded requests.
func (a *AC) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.reqs...)
}

// WaitRequests waits until n requests were recorded.
func (a *AC) WaitRequests(ctx context.Context, n int) ([]Request, error) {
	for {
		a.mu.Lock()
		got, ch := len(a.reqs), a.changed
		a.mu.Unlock()
		if got >= n {
			return a.Requests(), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return a.Requests(), ctx.Err()
		}
	}
}

func (a *AC) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		GrantType    string `json:"grant_type"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	raw, _ := io.ReadAll(io.LimitReader(r.Body, 16<<10))
	_ = json.Unmarshal(raw, &body)
	rec := Request{At: time.Now(), ClientID: body.ClientID, SecretOK: body.ClientSecret == Secret,
		GrantType: body.GrantType, TraceParent: r.Header.Get("traceparent")}
	a.mu.Lock()
	answer, ttl := a.answer, a.ttl
	refuse := 0
	if a.refuseN != 0 {
		refuse = a.refuse
		if a.refuseN > 0 {
			a.refuseN--
		}
	}
	a.mu.Unlock()
	switch {
	case r.URL.Path != devac.TokenPath:
		rec.Status = http.StatusNotFound
		w.WriteHeader(rec.Status)
	case answer != nil:
		rec.Status = answer(w)
	case refuse != 0:
		rec.Status = refuse
		w.WriteHeader(refuse)
	default:
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		r.Body = io.NopCloser(bytes.NewReader(raw))
		devac.Handler(devac.Config{Issuer: a.Issuer, ClientID: ClientID, Secret: Secret, TTL: ttl}).ServeHTTP(rw, r)
		rec.Status = rw.code
	}
	a.mu.Lock()
	a.reqs = append(a.reqs, rec)
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) { s.code = code; s.ResponseWriter.WriteHeader(code) }
