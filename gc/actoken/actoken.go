// Package actoken obtains edgemc's own service token from Dark Tower's Auth
// Controller (AC) with the OAuth 2.0 client-credentials grant, and keeps it
// fresh: a Source acquires a token at start, refreshes it before it
// expires, retries every failure with backoff for as long as it runs, and
// meanwhile keeps handing out the last good token until that expires.
//
// A Source never gives up and never stops the process: without a token,
// Token fails with ErrNoToken and Wait blocks, and Status says why. The
// client secret and the tokens appear in no error, log record or status.
package actoken

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/edgemc/edgemc/gc/internal/retry"
	"github.com/edgemc/edgemc/gc/tracectx"
)

// TokenPath is the AC's token endpoint, relative to its base URL.
const TokenPath = "/api/v1/auth/service/token"

// Defaults of Config.
const (
	// DefaultRefreshLead: a token is refreshed no later than this long
	// before it expires, as Dark Tower's own MC does.
	DefaultRefreshLead = 330 * time.Second
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 30 * time.Second
	DefaultHTTPTimeout = 10 * time.Second
	defaultDialTimeout = 5 * time.Second
)

// Failure kinds, as Error.Kind and the metrics name them.
const (
	KindHTTP              = "http"               // network error or 5xx: the AC is unavailable
	KindAuthRejected      = "auth_rejected"      // 401/403: the credentials were refused
	KindInvalidResponse   = "invalid_response"   // a 200 whose body is not a usable token
	KindAcquisitionFailed = "acquisition_failed" // any other answer (400, 404, 3xx, ...)
	KindConfiguration     = "configuration"      // the client secret could not be read
)

// ErrNoToken is matched by Token's error while the Source holds no token
// that is still valid.
var ErrNoToken = errors.New("no service token from the auth controller")

// Error is one failed acquisition. It never holds the secret or a token.
type Error struct {
	Kind   string // one of the Kind constants
	Status int    // the HTTP status, 0 when there was no answer
	Err    error
}

func (e *Error) Error() string {
	switch e.Kind {
	case KindAuthRejected:
		return fmt.Sprintf("auth controller refused the credentials (HTTP %d)", e.Status)
	case KindHTTP:
		if e.Status != 0 {
			return fmt.Sprintf("auth controller unavailable (HTTP %d)", e.Status)
		}
		return "auth controller unavailable: " + e.Err.Error()
	case KindInvalidResponse:
		return "invalid response from the auth controller: " + e.Err.Error()
	case KindConfiguration:
		return "client secret: " + e.Err.Error()
	}
	if e.Status != 0 {
		return fmt.Sprintf("auth controller answered HTTP %d", e.Status)
	}
	return "token request failed: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Observer is told about every acquisition (metrics). kind is "" on
// success. It must not block.
type Observer interface {
	TokenRefresh(kind string, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) TokenRefresh(string, time.Duration) {}

// Config configures a Source. Zero durations take the defaults.
type Config struct {
	// URL is the AC's base URL (http:// or https://); the token endpoint
	// is URL + TokenPath.
	URL      string
	ClientID string
	// Secret returns the client secret. It is called for every request, so
	// a secret rotated in its file is used without a restart.
	Secret func() (string, error)
	// Scope, when set, is asked for explicitly.
	Scope string
	// Transport makes the requests; nil is a transport that trusts the
	// system roots. Give one that builds its TLS configuration per
	// connection (tlsfiles.ClientTrust.HTTPTransport) to follow a CA bundle
	// that changes on disk.
	Transport http.RoundTripper

	RefreshLead, BackoffBase, BackoffMax, HTTPTimeout time.Duration

	Logger   *slog.Logger // nil discards
	Observer Observer
}

// Status is a snapshot for the status page and readiness.
type Status struct {
	URL, ClientID string
	HasToken      bool // a token that has not expired is held
	ExpiresAt     time.Time
	Scope         string
	LastSuccess   time.Time
	LastAttempt   time.Time
	NextAttempt   time.Time
	Failures      int    // consecutive failed acquisitions
	LastError     string // "" after a success
	LastErrorKind string
}

// Source is the MC's token from the AC. It is safe for concurrent use.
type Source struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger
	obs    Observer
	now    func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
	status  Status
	changed chan struct{} // closed and replaced whenever a token arrives
	lastKey string        // kind and status of the last failure logged
}

// New checks cfg and returns a Source; Run starts it.
func New(cfg Config) (*Source, error) {
	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("actoken: auth controller URL %q must be http:// or https:// with a host", cfg.URL)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("actoken: auth controller URL must not carry credentials, a query or a fragment")
	case cfg.ClientID == "":
		return nil, errors.New("actoken: client id is required")
	case cfg.Secret == nil:
		return nil, errors.New("actoken: client secret is required")
	}
	setDefault(&cfg.RefreshLead, DefaultRefreshLead)
	setDefault(&cfg.BackoffBase, DefaultBackoffBase)
	setDefault(&cfg.BackoffMax, DefaultBackoffMax)
	setDefault(&cfg.HTTPTimeout, DefaultHTTPTimeout)
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffBase)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	tr := cfg.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: defaultDialTimeout, KeepAlive: 30 * time.Second}).DialContext
		tr = t
	}
	s := &Source{
		cfg: cfg,
		client: &http.Client{
			Transport: tr,
			Timeout:   cfg.HTTPTimeout,
			// A redirect would carry the secret somewhere else: never follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log:     cfg.Logger,
		obs:     cfg.Observer,
		now:     time.Now,
		changed: make(chan struct{}),
	}
	s.status.URL, s.status.ClientID = strings.TrimSuffix(cfg.URL, "/"), cfg.ClientID
	return s, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Token returns the current token, or an error matching ErrNoToken (and
// saying why) when none is valid.
func (s *Source) Token(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.now().Before(s.expires) {
		return s.token, nil
	}
	if s.status.LastError != "" {
		return "", fmt.Errorf("%w: %s", ErrNoToken, s.status.LastError)
	}
	return "", ErrNoToken
}

// Wait returns once a valid token is held, or ctx's error.
func (s *Source) Wait(ctx context.Context) error {
	for {
		s.mu.Lock()
		ok := s.token != "" && s.now().Before(s.expires)
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Status returns a snapshot; it never contains the token or the secret.
func (s *Source) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.HasToken = s.token != "" && s.now().Before(s.expires)
	return st
}

// Run acquires a token, then refreshes it before it expires, retrying
// every failure with backoff, until ctx is done; it returns nil then.
func (s *Source) Run(ctx context.Context) error {
	for failures := 0; ; {
		g, err := s.acquire(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var next time.Duration
		if err == nil {
			failures = 0
			next = refreshDelay(g.expiresIn, s.cfg.RefreshLead)
		} else {
			failures++
			next = jittered(retry.Backoff(s.cfg.BackoffBase, s.cfg.BackoffMax, failures))
		}
		s.mu.Lock()
		s.status.NextAttempt = s.now().Add(next)
		s.mu.Unlock()
		if !s.sleep(ctx, next) {
			return nil
		}
	}
}

// sleep waits d, noting (once) when the held token expires meanwhile.
func (s *Source) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	s.mu.Lock()
	held, untilExpiry := s.token != "", s.expires.Sub(s.now())
	s.mu.Unlock()
	var expiry <-chan time.Time
	if held && untilExpiry > 0 && untilExpiry < d {
		e := time.NewTimer(untilExpiry)
		defer e.Stop()
		expiry = e.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-expiry:
			expiry = nil
			s.log.Error("service token EXPIRED and the auth controller has not given a new one; calls to the GC and media handlers fail until it does",
				"auth_controller", s.status.URL)
		}
	}
}

// refreshDelay is when to refresh a token that lives for life: lead before
// it expires (at half its life for a token shorter than that), made a
// little earlier by jitter so that many MCs do not refresh in step.
func refreshDelay(life, lead time.Duration) time.Duration {
	d := life - lead
	if d <= 0 {
		d = life / 2
	}
	return d - time.Duration(rand.Int64N(int64(min(d/10, 30*time.Second))+1))
}

// jittered is d shortened by up to a fifth, at random.
func jittered(d time.Duration) time.Duration {
	return d - time.Duration(rand.Int64N(int64(d/5)+1))
}

// acquire makes one token request and records its outcome.
func (s *Source) acquire(ctx context.Context) (grant, error) {
	start := s.now()
	g, err := s.request(ctx)
	if ctx.Err() != nil {
		return g, err
	}
	d := s.now().Sub(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.LastAttempt = start
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = &Error{Kind: KindAcquisitionFailed, Err: err}
		}
		s.obs.TokenRefresh(e.Kind, d)
		s.status.Failures++
		s.status.LastError, s.status.LastErrorKind = e.Error(), e.Kind
		s.logFailure(e)
		return g, e
	}
	s.obs.TokenRefresh("", d)
	first, recovered := s.token == "", s.status.Failures > 0
	s.token, s.expires = g.token, start.Add(g.expiresIn)
	s.status.ExpiresAt, s.status.Scope, s.status.LastSuccess = s.expires, g.scope, s.now()
	s.status.Failures, s.status.LastError, s.status.LastErrorKind = 0, "", ""
	s.lastKey = ""
	close(s.changed)
	s.changed = make(chan struct{})
	attrs := []any{"auth_controller", s.status.URL, "client_id", s.cfg.ClientID, "expires_in", g.expiresIn.String(), "scope", g.scope}
	switch {
	case first || recovered:
		s.log.Info("service token acquired from the auth controller", attrs...)
	default:
		s.log.Debug("service token refreshed", attrs...)
	}
	return g, nil
}

// logFailure logs a failure when it differs from the previous one (kind and
// HTTP status), so that a long outage is one line, not one per retry.
func (s *Source) logFailure(e *Error) {
	key := fmt.Sprint(e.Kind, e.Status)
	attrs := []any{"auth_controller", s.status.URL, "client_id", s.cfg.ClientID, "kind", e.Kind, "error", e.Error()}
	if key == s.lastKey {
		s.log.Debug("auth controller token request failed again; retrying", attrs...)
		return
	}
	s.lastKey = key
	switch e.Kind {
	case KindAuthRejected:
		s.log.Error("auth controller: credentials refused; check client-id and client-secret-file. Retrying", attrs...)
	case KindConfiguration:
		s.log.Error("auth controller: the client secret cannot be read. Retrying", attrs...)
	case KindHTTP:
		s.log.Warn("auth controller unavailable; retrying", attrs...)
	case KindInvalidResponse:
		s.log.Warn("auth controller sent an invalid token response; retrying", attrs...)
	default:
		s.log.Warn("auth controller token request failed; retrying", attrs...)
	}
}

// request performs one client-credentials request.
func (s *Source) request(ctx context.Context) (grant, error) {
	secret, err := s.cfg.Secret()
	if err != nil {
		return grant{}, &Error{Kind: KindConfiguration, Err: err}
	}
	if secret == "" {
		return grant{}, &Error{Kind: KindConfiguration, Err: errors.New("is empty")}
	}
	body, err := json.Marshal(struct {
		GrantType    string `json:"grant_type"`
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
		Scope        string `json:"scope,omitempty"`
	}{"client_credentials", s.cfg.ClientID, secret, s.cfg.Scope})
	if err != nil {
		return grant{}, &Error{Kind: KindConfiguration, Err: errors.New("cannot be encoded")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.status.URL+TokenPath, bytes.NewReader(body))
	if err != nil {
		return grant{}, &Error{Kind: KindConfiguration, Err: errors.New("auth controller URL unusable")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "edgemc")
	tracectx.SetHeader(ctx, req.Header)
	resp, err := s.client.Do(req)
	if err != nil {
		return grant{}, &Error{Kind: KindHTTP, Err: scrub(err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return grant{}, &Error{Kind: KindAuthRejected, Status: resp.StatusCode}
	case resp.StatusCode >= 500:
		return grant{}, &Error{Kind: KindHTTP, Status: resp.StatusCode}
	case resp.StatusCode != http.StatusOK:
		return grant{}, &Error{Kind: KindAcquisitionFailed, Status: resp.StatusCode}
	case err != nil:
		return grant{}, &Error{Kind: KindHTTP, Status: resp.StatusCode, Err: scrub(err)}
	case len(raw) > maxBodyBytes:
		return grant{}, &Error{Kind: KindInvalidResponse, Status: resp.StatusCode, Err: fmt.Errorf("body larger than %d bytes", maxBodyBytes)}
	}
	g, err := decodeResponse(raw)
	if err != nil {
		return grant{}, &Error{Kind: KindInvalidResponse, Status: resp.StatusCode, Err: err}
	}
	return g, nil
}

// scrub keeps an HTTP client error's cause and the operation, dropping
// nothing secret (the request body never appears in it) but the URL's
// repetition.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}
