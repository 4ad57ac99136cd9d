package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

const (
	defaultCacheTTL           = 5 * time.Minute
	defaultMinRefreshInterval = 10 * time.Second
	jwksFetchTimeout          = 10 * time.Second
	maxJWKSDocument           = 1 << 20
)

// JWKSOptions tunes a JWKS key source. Zero values select the defaults.
type JWKSOptions struct {
	// CacheTTL is how long a fetched document is trusted before it is
	// fetched again (default 5 minutes).
	CacheTTL time.Duration
	// MinRefreshInterval rate limits fetches caused by an unknown kid or an
	// expired cache (default 10 seconds), so forged kids cannot turn the MC
	// into a load generator against the Auth Controller.
	MinRefreshInterval time.Duration
	// Logger receives refresh failures; nil discards them.
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// JWKS is a KeySource backed by a JWKS document served over HTTP(S). It is
// safe for concurrent use; concurrent refreshes are collapsed into one fetch.
type JWKS struct {
	url    string
	client *http.Client
	opts   JWKSOptions
	flight singleflight.Group

	mu        sync.Mutex
	keys      map[string]ed25519.PublicKey
	fetchedAt time.Time // last successful fetch
	attemptAt time.Time // last fetch attempt, for rate limiting
}

// NewJWKS returns a key source reading the JWKS document at url. A nil client
// uses a plain http.Client with a 10 s timeout. Nothing is fetched until the
// first Key or Refresh call.
func NewJWKS(url string, client *http.Client, opts JWKSOptions) *JWKS {
	if client == nil {
		client = &http.Client{Timeout: jwksFetchTimeout}
	}
	if opts.CacheTTL <= 0 {
		opts.CacheTTL = defaultCacheTTL
	}
	if opts.MinRefreshInterval <= 0 {
		opts.MinRefreshInterval = defaultMinRefreshInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &JWKS{url: url, client: client, opts: opts}
}

// Key returns the key for kid. A kid missing from the cached document causes
// a refresh (at most once per MinRefreshInterval); a kid still missing after
// that yields ErrUnknownKey. When a refresh of an expired cache fails, the
// previously fetched keys stay in use.
func (j *JWKS) Key(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	now := j.opts.Now()
	j.mu.Lock()
	key, known := j.keys[kid]
	fresh := !j.fetchedAt.IsZero() && now.Sub(j.fetchedAt) < j.opts.CacheTTL
	mayFetch := j.attemptAt.IsZero() || now.Sub(j.attemptAt) >= j.opts.MinRefreshInterval
	j.mu.Unlock()

	if known && (fresh || !mayFetch) {
		return key, nil
	}
	if !mayFetch {
		return nil, ErrUnknownKey
	}
	if err := j.Refresh(ctx); err != nil {
		if known {
			j.opts.Logger.Warn("JWKS refresh failed; using cached keys", "url", j.url, "error", err)
			return key, nil
		}
		return nil, err
	}
	j.mu.Lock()
	key, known = j.keys[kid]
	j.mu.Unlock()
	if !known {
		return nil, ErrUnknownKey
	}
	return key, nil
}

// Refresh fetches the document now, regardless of the cache and rate limit.
func (j *JWKS) Refresh(ctx context.Context) error {
	ch := j.flight.DoChan("fetch", func() (any, error) {
		j.mu.Lock()
		j.attemptAt = j.opts.Now()
		j.mu.Unlock()
		// The fetch is shared by every waiter, so it must not die with the
		// first caller's context.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
		defer cancel()
		keys, err := j.fetch(fctx)
		if err != nil {
			return nil, err
		}
		j.mu.Lock()
		j.keys = keys
		j.fetchedAt = j.opts.Now()
		j.mu.Unlock()
		return nil, nil
	})
	select {
	case res := <-ch:
		return res.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (j *JWKS) fetch(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("auth: fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("auth: fetching JWKS: HTTP status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSDocument+1))
	if err != nil {
		return nil, fmt.Errorf("auth: reading JWKS: %w", err)
	}
	if len(body) > maxJWKSDocument {
		return nil, errors.New("auth: JWKS document too large")
	}
	return parseJWKS(body)
}

type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	X   string `json:"x"`
	Use string `json:"use"`
}

// parseJWKS decodes a JWKS document, keeping the Ed25519 signing keys and
// ignoring keys of other types. A document without any usable key is an error.
func parseJWKS(doc []byte) (map[string]ed25519.PublicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("auth: decoding JWKS: %w", err)
	}
	keys := make(map[string]ed25519.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" || k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			continue
		}
		keys[k.Kid] = ed25519.PublicKey(x)
	}
	if len(keys) == 0 {
		return nil, errors.New("auth: JWKS holds no Ed25519 signing key")
	}
	return keys, nil
}
