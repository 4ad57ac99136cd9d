package web

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed assets
var assetFS embed.FS

// Options configures [NewHandler].
type Options struct {
	// StatusToken, when set, protects the status page, its API and the lab
	// pages. Health and metrics stay open for probes.
	StatusToken string
	// Registry is served on /metrics. Nil serves an empty registry.
	Registry *prometheus.Registry
	// Lab enables the lab-mode demo routes when not nil.
	Lab Lab
	// Logger receives errors; nil discards them.
	Logger *slog.Logger
	// EventInterval is how often the status is read for the live streams
	// (while one is open) and what changed is sent. Defaults to 2 s.
	EventInterval time.Duration
	// KeepAliveInterval is the longest the live stream stays silent.
	// Defaults to 15 s.
	KeepAliveInterval time.Duration
	// MaxEventStreams bounds the live streams open at once; past it a new
	// one is answered 503. Defaults to 8.
	MaxEventStreams int
}

type handler struct {
	src       StatusSource
	lab       Lab
	log       *slog.Logger
	auth      *tokenAuth
	interval  time.Duration
	keepAlive time.Duration
	live      *liveHub
	assets    fs.FS
}

// NewHandler returns the http-listen handler:
//
//	GET /                      status page (status token)
//	GET /api/v1/status         the status as JSON (status token)
//	GET /api/v1/events         the status, then its changes, as server-sent events (status token)
//	GET /health/live           200 while the process answers
//	GET /health/ready          200 or 503 with {"ready":..,"reason":..}
//	GET /health, GET /ready    the same two, at the paths Dark Tower's probes use
//	GET /metrics               Prometheus exposition of opts.Registry
//	GET /assets/...            embedded CSS, JavaScript and icon
//	GET /favicon.ico           the icon (an SVG), for clients that ask for it there
//	GET /lab/join              demo join page (lab mode, status token)
//	GET /lab/api/join-info     join details for the demo (lab mode, loopback only, status token)
//
// The event stream lasts as long as its request context: serve the handler
// with http.Server.BaseContext returning the appliance's lifetime context so
// that http.Server.Shutdown is not held up by open status pages.
func NewHandler(opts Options, src StatusSource) http.Handler {
	assets, err := fs.Sub(assetFS, "assets")
	if err != nil {
		panic(err) // the embedded directory is part of the build
	}
	h := &handler{
		src:       src,
		lab:       opts.Lab,
		log:       opts.Logger,
		auth:      newTokenAuth(opts.StatusToken),
		interval:  opts.EventInterval,
		keepAlive: opts.KeepAliveInterval,
		assets:    assets,
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.interval <= 0 {
		h.interval = 2 * time.Second
	}
	if h.keepAlive <= 0 {
		h.keepAlive = 15 * time.Second
	}
	if opts.MaxEventStreams <= 0 {
		opts.MaxEventStreams = 8
	}
	h.live = &liveHub{snapshot: h.snapshot, interval: h.interval, max: opts.MaxEventStreams, log: h.log}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}

	mux := http.NewServeMux()
	mux.Handle("GET /{$}", h.protect(h.page("index.html")))
	mux.Handle("GET /api/v1/status", h.protect(http.HandlerFunc(h.status)))
	mux.Handle("GET /api/v1/events", h.protect(http.HandlerFunc(h.events)))
	mux.HandleFunc("GET /health/live", live)
	mux.HandleFunc("GET /health/ready", h.ready)
	mux.HandleFunc("GET /health", live)
	mux.HandleFunc("GET /ready", h.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", noCache(http.FileServerFS(assets))))
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, assets, "favicon.svg")
	})
	if h.lab != nil {
		mux.Handle("GET /lab/join", labCSP(h.protect(h.page("lab.html"))))
		mux.Handle("GET /lab/api/join-info", loopbackOnly(h.protect(http.HandlerFunc(h.joinInfo))))
	}
	return securityHeaders(mux)
}

// page serves one embedded HTML file.
func (h *handler) page(name string) http.Handler {
	body, err := fs.ReadFile(h.assets, name)
	if err != nil {
		panic(err) // the embedded file is part of the build
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})
}

// snapshot reads the status and fills nil slices so that JSON clients always
// see arrays.
func (h *handler) snapshot(ctx context.Context) Status {
	s := h.src.Status(ctx)
	// Clone before filling in: the source may share its slices.
	s.Meetings = slices.Clone(s.Meetings)
	if s.Meetings == nil {
		s.Meetings = []Meeting{}
	}
	for i := range s.Meetings {
		m := &s.Meetings[i]
		if m.Participants == nil {
			m.Participants = []Participant{}
		}
		if m.MediaHandlers == nil {
			m.MediaHandlers = []string{}
		}
	}
	return s
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.snapshot(r.Context()))
}

func live(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"live": true})
}

// readyBody is the JSON answer of /health/ready.
type readyBody struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason"`
	Health string `json:"health"`
}

func (h *handler) ready(w http.ResponseWriter, r *http.Request) {
	s := h.src.Status(r.Context())
	ok, reason := Ready(s)
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, readyBody{Ready: ok, Reason: reason, Health: s.Health})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

const defaultCSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// securityHeaders sets headers that keep pages out of frames, stop MIME
// sniffing and keep a ?token= out of Referer headers.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Content-Security-Policy", defaultCSP)
		next.ServeHTTP(w, r)
	})
}

// labCSP lets the demo page open WebTransport sessions to the appliance's
// https endpoint.
func labCSP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy",
			"default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self' https:; "+
				"frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		next.ServeHTTP(w, r)
	})
}

func noCache(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}
