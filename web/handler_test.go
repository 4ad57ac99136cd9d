package web

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const statusToken = "status-token-9f8e7d6c5b4a"

func newServer(t *testing.T, opts Options, src StatusSource) *httptest.Server {
	t.Helper()
	// Requests derive from a context that ends before Close, as in the
	// appliance, so that open event streams do not hold Close up.
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewUnstartedServer(NewHandler(opts, src))
	srv.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	srv.Start()
	t.Cleanup(func() {
		cancel()
		srv.Close()
	})
	return srv
}

// get performs a GET that does not follow redirects.
func get(t *testing.T, rawURL string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func decodeJSON(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, body)
	}
	return m
}

// path walks a decoded JSON document: path(m, "gc", "registered").
func path(t *testing.T, v any, keys ...any) any {
	t.Helper()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %q: not an object: %v", k, v)
			}
			if v, ok = m[k]; !ok {
				t.Fatalf("missing key %q in %v", k, m)
			}
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("at [%d]: not an array long enough: %v", k, v)
			}
			v = a[k]
		}
	}
	return v
}

func TestStatusJSON(t *testing.T) {
	src := &fakeSource{s: sampleStatus()}
	srv := newServer(t, Options{}, src)

	resp, body := get(t, srv.URL+"/api/v1/status", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	m := decodeJSON(t, body)
	for _, c := range []struct{ got, want any }{
		{path(t, m, "identity", "id"), "mc-lab-1"},
		{path(t, m, "identity", "region"), "eu-west"},
		{path(t, m, "health"), "HEALTHY"},
		{path(t, m, "gc", "registered"), true},
		{path(t, m, "gc", "fast_interval_ns"), 1e10},
		{path(t, m, "capacity", "max_meetings"), 100.0},
		{path(t, m, "system", "goroutines"), 57.0},
		{path(t, m, "store", "max_generation"), 7.0},
		{path(t, m, "meetings", 0, "id"), "meeting-1"},
		{path(t, m, "meetings", 0, "media_handlers", 0), "mh-1"},
		{path(t, m, "meetings", 0, "participants", 1, "name"), "Bob"},
		{path(t, m, "meetings", 0, "participants", 1, "role"), "participant"},
		{path(t, m, "meetings", 0, "participants", 0, "joined_at"), "2026-11-26T10:00:00Z"},
		{path(t, m, "store", "path"), "/var/lib/edgemc/state.db"},
	} {
		if c.got != c.want {
			t.Errorf("got %v, want %v", c.got, c.want)
		}
	}
	p1 := path(t, m, "meetings", 0, "participants", 1).(map[string]any)
	for _, k := range []string{"audio_host_muted", "video_self_muted", "connected", "disconnected_since"} {
		if _, ok := p1[k]; !ok {
			t.Errorf("participant lacks %q", k)
		}
	}
	// Zero times are omitted, not sent as year 1.
	if _, ok := path(t, m, "gc").(map[string]any)["next_retry"]; ok {
		t.Error("zero next_retry was sent")
	}
	if _, ok := p1["disconnected_since"]; !ok {
		t.Error("disconnected_since missing")
	}
	if _, ok := m["lab"]; ok {
		t.Error("lab present outside lab mode")
	}
}

func TestStatusJSONEmptyArrays(t *testing.T) {
	s := sampleStatus()
	s.Meetings = []Meeting{{ID: "empty"}}
	srv := newServer(t, Options{}, &fakeSource{s: s})
	_, body := get(t, srv.URL+"/api/v1/status", nil)
	m := decodeJSON(t, body)
	for _, k := range []string{"participants", "media_handlers"} {
		if a, ok := path(t, m, "meetings", 0, k).([]any); !ok || len(a) != 0 {
			t.Errorf("%s = %v, want []", k, path(t, m, "meetings", 0, k))
		}
	}
	srv = newServer(t, Options{}, &fakeSource{})
	_, body = get(t, srv.URL+"/api/v1/status", nil)
	if a, ok := decodeJSON(t, body)["meetings"].([]any); !ok || len(a) != 0 {
		t.Errorf("meetings = %v, want []", decodeJSON(t, body)["meetings"])
	}
}

func TestPagesAndAssets(t *testing.T) {
	srv := newServer(t, Options{}, &fakeSource{s: sampleStatus()})
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html", `src="/assets/status.js"`},
		{"/assets/status.js", "text/javascript", "EventSource"},
		{"/assets/app.css", "text/css", "@media (max-width: 600px)"},
		{"/assets/proto.js", "text/javascript", "export function decode"},
	} {
		resp, body := get(t, srv.URL+tc.path, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", tc.path, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("%s: Content-Type %q, want %s", tc.path, ct, tc.ctype)
		}
		if !strings.Contains(body, tc.contains) {
			t.Errorf("%s: body lacks %q", tc.path, tc.contains)
		}
		for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("%s: header %s missing", tc.path, h)
			}
		}
	}
	for _, p := range []string{"/nope", "/lab/join", "/lab/api/join-info?role=host&name=a", "/assets/missing.js"} {
		if resp, _ := get(t, srv.URL+p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
	resp, err := http.Post(srv.URL+"/api/v1/status", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST status: %d, want 405", resp.StatusCode)
	}
}

// Liveness and readiness answer at edgemc's paths and at Dark Tower's.
var (
	livePaths  = []string{"/health/live", "/health"}
	readyPaths = []string{"/health/ready", "/ready"}
)

func TestHealthLive(t *testing.T) {
	srv := newServer(t, Options{StatusToken: statusToken}, &fakeSource{})
	for _, p := range livePaths {
		resp, body := get(t, srv.URL+p, nil)
		if resp.StatusCode != http.StatusOK || decodeJSON(t, body)["live"] != true {
			t.Errorf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
}

// Readiness reasons while the GC is in trouble.
const (
	notRegistered = "not registered with the global controller yet"
	gcDown        = "ready; global controller link down, serving held meetings"
)

// neverRegistered is gc as it is before the GC has accepted the appliance.
func neverRegistered(gc GCStatus) GCStatus {
	gc.Registered = false
	gc.LastRegistered, gc.LastFast, gc.LastComprehensive = time.Time{}, time.Time{}, time.Time{}
	return gc
}

func TestReady(t *testing.T) {
	ok := sampleStatus()
	cases := []struct {
		name   string
		mutate func(*Status)
		ready  bool
		reason string
	}{
		{"healthy", func(*Status) {}, true, "ready"},
		{"no GC configured", func(s *Status) { s.GC = GCStatus{} }, true, "ready"},
		{"store down", func(s *Status) { s.Store.OK = false; s.Store.Error = "open: permission denied" }, false, "store unavailable"},
		{"draining flag", func(s *Status) { s.Draining = true }, false, "draining"},
		{"draining health", func(s *Status) { s.Health = HealthDraining }, false, "draining"},
		{"unhealthy", func(s *Status) { s.Health = HealthUnhealthy }, false, "unhealthy"},
		// Before the GC has accepted it once, an appliance is not ready...
		{"never registered", func(s *Status) { s.GC = neverRegistered(s.GC); s.Meetings = nil }, false, notRegistered},
		{"never registered, GC refusing", func(s *Status) {
			s.GC = neverRegistered(s.GC)
			s.GC.DownSince, s.GC.ConsecutiveFailures, s.GC.LastError = time.Now(), 3, "gc: registration rejected by GC"
			s.Meetings = nil
		}, false, notRegistered},
		// ...unless it already holds meetings (recovered after a restart).
		{"never registered, holding meetings", func(s *Status) { s.GC = neverRegistered(s.GC) }, true, gcDown},
		// Once accepted, a lost GC link is a note, not a reason to leave the
		// load balancer: heartbeats failing, or the GC forgot the MC and
		// does not take it back yet.
		{"heartbeats failing", func(s *Status) {
			s.GC.DownSince, s.GC.ConsecutiveFailures, s.GC.LastError = time.Now().Add(-time.Hour), 360, "gc: fast heartbeat: Unavailable"
		}, true, gcDown},
		{"GC forgot the MC", func(s *Status) { s.GC.Registered, s.GC.DownSince = false, time.Now() }, true, gcDown},
		{"GC link down, at capacity", func(s *Status) { s.GC.Registered = false; s.Capacity.Meetings = 95 }, false, "at capacity (95%)"},
		{"GC link down, draining", func(s *Status) { s.GC.Registered = false; s.Draining = true }, false, "draining"},
		{"never registered, draining", func(s *Status) { s.GC = neverRegistered(s.GC); s.Draining = true }, false, "draining"},
		{"meetings at 95%", func(s *Status) { s.Capacity.Meetings = 95 }, false, "at capacity (95%)"},
		{"participants at 95%", func(s *Status) { s.Capacity.Participants = 950 }, false, "at capacity (95%)"},
		{"participants at 94.9%", func(s *Status) { s.Capacity.Participants = 949 }, true, "ready"},
		{"unlimited", func(s *Status) { s.Capacity = Capacity{Meetings: 5000, Participants: 9000} }, true, "ready"},
		{"degraded is ready", func(s *Status) { s.Health = HealthDegraded; s.Capacity.Meetings = 90 }, true, "ready"},
	}
	src := &fakeSource{}
	srv := newServer(t, Options{StatusToken: statusToken}, src)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			s.GC = ok.GC
			tc.mutate(&s)
			gotOK, gotReason := Ready(s)
			if gotOK != tc.ready || gotReason != tc.reason {
				t.Errorf("Ready = %v %q, want %v %q", gotOK, gotReason, tc.ready, tc.reason)
			}
			src.update(func(st *Status) { *st = s })
			wantCode := http.StatusOK
			if !tc.ready {
				wantCode = http.StatusServiceUnavailable
			}
			for _, p := range readyPaths {
				resp, body := get(t, srv.URL+p, nil)
				if resp.StatusCode != wantCode {
					t.Errorf("%s: %d, want %d", p, resp.StatusCode, wantCode)
				}
				m := decodeJSON(t, body)
				if m["ready"] != tc.ready || m["reason"] != tc.reason || m["health"] != s.Health {
					t.Errorf("%s body %s", p, body)
				}
				if strings.Contains(body, "permission denied") {
					t.Errorf("%s leaks store error detail", p)
				}
			}
		})
	}
}

func TestStatusTokenAuth(t *testing.T) {
	src := &fakeSource{s: sampleStatus()}
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	srv := newServer(t, Options{StatusToken: statusToken, Registry: reg, Lab: &fakeLab{}}, src)
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	protected := []string{"/", "/api/v1/status", "/lab/join", "/lab/api/join-info?role=host&name=Al"}
	for _, p := range protected {
		resp, body := get(t, srv.URL+p, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without token: %d", p, resp.StatusCode)
		}
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: no WWW-Authenticate", p)
		}
		if strings.Contains(body, "mc-lab-1") || strings.Contains(body, labToken) {
			t.Errorf("%s: unauthorised answer leaks data: %s", p, body)
		}
		if resp, _ := get(t, srv.URL+p, bearer("wrong")); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with wrong bearer: %d", p, resp.StatusCode)
		}
		if resp, _ := get(t, srv.URL+p, bearer(statusToken)); resp.StatusCode != http.StatusOK {
			t.Errorf("%s with bearer: %d", p, resp.StatusCode)
		}
	}
	// The page answers a browser with a token form.
	if _, body := get(t, srv.URL+"/", nil); !strings.Contains(body, `name="token"`) {
		t.Errorf("login form missing: %s", body)
	}
	// Probes stay open.
	for _, p := range append(append([]string{"/metrics", "/assets/app.css"}, livePaths...), readyPaths...) {
		if resp, _ := get(t, srv.URL+p, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("%s without token: %d", p, resp.StatusCode)
		}
	}
	// A wrong ?token= is refused and sets nothing.
	resp, _ := get(t, srv.URL+"/?token=nope", nil)
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Errorf("wrong ?token=: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	// ?token= once: a cookie and a redirect that drops the token.
	resp, _ = get(t, srv.URL+"/api/v1/status?x=1&token="+url.QueryEscape(statusToken), nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("?token=: %d", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/status?x=1" {
		t.Errorf("redirect to %q", loc)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	c := cookies[0]
	if c.Name != CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("cookie %+v", c)
	}
	if strings.Contains(c.Value, statusToken) || strings.Contains(resp.Header.Get("Set-Cookie"), statusToken) {
		t.Error("cookie carries the token itself")
	}
	withCookie := http.Header{"Cookie": {c.Name + "=" + c.Value}}
	for _, p := range protected {
		if resp, _ := get(t, srv.URL+p, withCookie); resp.StatusCode != http.StatusOK {
			t.Errorf("%s with cookie: %d", p, resp.StatusCode)
		}
	}
	if resp, _ := get(t, srv.URL+"/", http.Header{"Cookie": {CookieName + "=forged"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged cookie: %d", resp.StatusCode)
	}
	// A different token yields a different cookie.
	if newTokenAuth("other").cookie == newTokenAuth(statusToken).cookie {
		t.Error("cookie does not depend on the token")
	}
}

func TestNoTokenMeansOpen(t *testing.T) {
	srv := newServer(t, Options{Lab: &fakeLab{}}, &fakeSource{s: sampleStatus()})
	for _, p := range []string{"/", "/api/v1/status", "/lab/join"} {
		if resp, _ := get(t, srv.URL+p, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
}

// TestNoSecretsInOutput fetches every route, authorised, and looks for the
// status token, the lab join token and a binding-like secret in the answers.
func TestNoSecretsInOutput(t *testing.T) {
	s := sampleStatus()
	s.Lab = &LabInfo{MeetingID: "lab-meeting", JoinPath: "/lab/join", Note: "development GC and token issuer"}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.SessionRefused("draining")
	srv := newServer(t, Options{StatusToken: statusToken, Registry: reg, Lab: &fakeLab{}, EventInterval: time.Millisecond}, &fakeSource{s: s})
	auth := http.Header{"Authorization": {"Bearer " + statusToken}}
	for _, p := range []string{"/", "/api/v1/status", "/health/live", "/health/ready", "/metrics", "/lab/join",
		"/assets/status.js", "/assets/lab.js", "/?token=" + statusToken} {
		resp, body := get(t, srv.URL+p, auth)
		all := body + fmtHeader(resp.Header)
		for _, secret := range []string{statusToken, labToken} {
			if strings.Contains(all, secret) {
				t.Errorf("%s: answer contains a secret", p)
			}
		}
	}
	// The one route that hands out a token is the lab's, by design.
	_, body := get(t, srv.URL+"/lab/api/join-info?role=host&name=A", auth)
	if strings.Contains(body, statusToken) {
		t.Error("join-info contains the status token")
	}
}

func fmtHeader(h http.Header) string {
	var b strings.Builder
	_ = h.Write(&b)
	return b.String()
}

// sseReader reads server-sent events.
type sseReader struct{ r *bufio.Reader }

// next returns the next event name and data, or "comment" for a comment.
func (s sseReader) next() (event, data string, err error) {
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if event != "" || data != "" {
				return event, data, nil
			}
		case strings.HasPrefix(line, ":"):
			event = "comment"
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data += strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestLabJoinInfo(t *testing.T) {
	lab := &fakeLab{}
	h := NewHandler(Options{Lab: lab}, &fakeSource{s: sampleStatus()})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	resp, body := get(t, srv.URL+"/lab/api/join-info?role=host&name="+url.QueryEscape(" Ada L. "), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("join-info: %d %s", resp.StatusCode, body)
	}
	m := decodeJSON(t, body)
	want := map[string]any{"url": "https://127.0.0.1:4433/signaling", "cert_sha256": "deadbeef",
		"meeting_id": "lab-meeting", "token": labToken, "role": "host", "name": "Ada L."}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("join-info is cacheable")
	}
	if got := lab.calls; len(got) != 1 || got[0] != "host/Ada L." {
		t.Errorf("lab calls %v", got)
	}

	for _, q := range []string{"role=admin&name=a", "name=a", "role=host&name=", "role=host&name=" + strings.Repeat("x", 257),
		"role=participant&name=%ff"} {
		if resp, _ := get(t, srv.URL+"/lab/api/join-info?"+q, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, resp.StatusCode)
		}
	}

	// A page on another origin that rebinds its name to 127.0.0.1.
	req := httptest.NewRequest(http.MethodGet, "/lab/api/join-info?role=host&name=a", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	req.Host = "attacker.example:8080"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || strings.Contains(rec.Body.String(), labToken) {
		t.Errorf("rebound host: %d", rec.Code)
	}
	// A client from another machine.
	req = httptest.NewRequest(http.MethodGet, "/lab/api/join-info?role=host&name=a", nil)
	req.RemoteAddr = "192.0.2.7:5555"
	req.Host = "127.0.0.1:8080"
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("remote client: %d", rec.Code)
	}
	// The lab page itself, and its CSP allowing WebTransport.
	resp, body = get(t, srv.URL+"/lab/join?role=participant", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Development tool") {
		t.Errorf("lab page: %d", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self' https:") {
		t.Errorf("lab CSP %q", csp)
	}

	// No token before the demo meeting is held: 503, and the page retries.
	lab.err = fmt.Errorf("%w: demo meeting not assigned", ErrLabNotReady)
	resp, body = get(t, srv.URL+"/lab/api/join-info?role=host&name=a", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || strings.Contains(body, labToken) ||
		!strings.Contains(body, "not ready yet") {
		t.Errorf("lab not ready: %d (Retry-After %q) %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}

	lab.err = errors.New("issuer: key file /secret/key.pem unreadable")
	resp, body = get(t, srv.URL+"/lab/api/join-info?role=host&name=a", nil)
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(body, "key.pem") {
		t.Errorf("lab failure: %d %s", resp.StatusCode, body)
	}
}

func TestLoopbackChecks(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1:8080", true}, {"127.0.0.1", true}, {"[::1]:80", true}, {"::1", true}, {"[::1]", true},
		{"localhost:8080", true}, {"LOCALHOST", true}, {"10.0.0.1:80", false}, {"example.com", false},
		{"localhost.example.com", false}, {"", false},
	} {
		if got := hostIsLoopback(tc.host); got != tc.want {
			t.Errorf("hostIsLoopback(%q) = %v", tc.host, got)
		}
	}
	for _, tc := range []struct {
		remote string
		want   bool
	}{
		{"127.0.0.1:1", true}, {"[::1]:1", true}, {"[::ffff:127.0.0.1]:1", true}, {"192.0.2.1:1", false}, {"junk", false},
	} {
		if got := remoteIsLoopback(tc.remote); got != tc.want {
			t.Errorf("remoteIsLoopback(%q) = %v", tc.remote, got)
		}
	}
}
