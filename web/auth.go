package web

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/netip"
	"strings"
)

// CookieName is the cookie that carries a status-page session after a
// ?token= login.
const CookieName = "edgemc_status"

// tokenAuth checks the optional status token. It keeps only digests: the
// SHA-256 of the token, compared in constant time against the digest of what
// a client presents (so neither content nor length leaks through timing),
// and a cookie value derived from the token, so the cookie never holds the
// token itself.
type tokenAuth struct {
	enabled bool
	digest  [sha256.Size]byte
	cookie  string
}

func newTokenAuth(token string) *tokenAuth {
	if token == "" {
		return &tokenAuth{}
	}
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("edgemc status page session v1"))
	return &tokenAuth{
		enabled: true,
		digest:  sha256.Sum256([]byte(token)),
		cookie:  hex.EncodeToString(mac.Sum(nil)),
	}
}

// tokenOK reports, in constant time, whether presented is the token.
func (a *tokenAuth) tokenOK(presented string) bool {
	d := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(d[:], a.digest[:]) == 1
}

func (a *tokenAuth) cookieOK(r *http.Request) bool {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(c.Value), []byte(a.cookie))
}

// bearerToken returns the credentials of an "Authorization: Bearer" header.
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// protect requires the status token when one is configured: a Bearer header,
// the session cookie, or ?token= once, which sets the cookie and redirects to
// the same URL without the token so it does not linger in the address bar.
func (h *handler) protect(next http.Handler) http.Handler {
	a := h.auth
	if !a.enabled {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t, ok := bearerToken(r.Header.Get("Authorization")); ok {
			if a.tokenOK(t) {
				next.ServeHTTP(w, r)
				return
			}
			h.unauthorized(w, r)
			return
		}
		q := r.URL.Query()
		if q.Has("token") {
			if !a.tokenOK(q.Get("token")) {
				h.unauthorized(w, r)
				return
			}
			http.SetCookie(w, &http.Cookie{
				Name:     CookieName,
				Value:    a.cookie,
				Path:     "/",
				HttpOnly: true,
				Secure:   r.TLS != nil,
				SameSite: http.SameSiteStrictMode,
			})
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		if a.cookieOK(r) {
			next.ServeHTTP(w, r)
			return
		}
		h.unauthorized(w, r)
	})
}

// unauthorized answers 401: a small token form for the HTML pages, JSON
// otherwise.
func (h *handler) unauthorized(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="edgemc"`)
	if r.URL.Path == "/" || r.URL.Path == "/lab/join" {
		body, err := fs.ReadFile(h.assets, "login.html")
		if err == nil {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write(body)
			return
		}
	}
	writeError(w, http.StatusUnauthorized, "unauthorized")
}

// loopbackOnly refuses requests that do not come from, and are not addressed
// to, a loopback address. Checking the Host too stops a web page that
// rebinds its own DNS name to 127.0.0.1 from reading the answers.
func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !remoteIsLoopback(r.RemoteAddr) || !hostIsLoopback(r.Host) {
			writeError(w, http.StatusForbidden, "lab endpoints answer loopback clients only")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func remoteIsLoopback(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

func hostIsLoopback(host string) bool {
	if ap, err := netip.ParseAddrPort(host); err == nil {
		return ap.Addr().Unmap().IsLoopback()
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return a.Unmap().IsLoopback()
	}
	name, _, found := strings.Cut(host, ":")
	if !found {
		name = host
	}
	return strings.EqualFold(name, "localhost")
}
