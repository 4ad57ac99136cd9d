// Package devac is a DEVELOPMENT Auth Controller token endpoint: it answers
// OAuth 2.0 client-credentials requests at /api/v1/auth/service/token with
// service tokens signed by a devissuer.Issuer, for one client id and secret.
//
// It is a development stand-in for Dark Tower's Auth Controller, used by
// `edgemc lab` (inside the same process, on loopback) and by tests; `edgemc
// serve` never uses it. It keeps no state and speaks plain HTTP. Serve it
// on loopback only.
package devac

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
)

// TokenPath is where the endpoint is served.
const TokenPath = "/api/v1/auth/service/token"

// Service type and scopes of the tokens issued, as Dark Tower's AC grants
// them to a Meeting Controller.
const (
	ServiceType = "meeting-controller"
	Scopes      = "service.write.mh service.write.gc"
)

// Config configures the endpoint. A zero TTL issues one-hour tokens.
type Config struct {
	Issuer           *devissuer.Issuer
	ClientID, Secret string
	TTL              time.Duration
}

// Handler returns the token endpoint. It accepts the credentials in the
// JSON body or as HTTP Basic auth (the body then carries only grant_type),
// answers 400 for a bad grant_type or body, 401 for wrong credentials.
func Handler(cfg Config) http.Handler {
	if cfg.TTL <= 0 {
		cfg.TTL = time.Hour
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+TokenPath, func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			GrantType    string `json:"grant_type"`
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<10))
		if err != nil || json.Unmarshal(body, &req) != nil || req.GrantType != "client_credentials" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
			return
		}
		if id, secret, ok := r.BasicAuth(); ok {
			req.ClientID, req.ClientSecret = id, secret
		}
		if !equal(req.ClientID, cfg.ClientID) || !equal(req.ClientSecret, cfg.Secret) {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
			return
		}
		tok := cfg.Issuer.ServiceToken(req.ClientID, ServiceType,
			devissuer.WithClaim("scope", Scopes), devissuer.WithTTL(cfg.TTL))
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": tok, "token_type": "Bearer",
			"expires_in": int64(cfg.TTL / time.Second), "scope": Scopes,
		})
	})
	return mux
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
