package web

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/edgemc/edgemc/web/webtest"
)

// controlPlaneStatus is sampleStatus with a TLS gRPC server, a GC link
// with a certificate problem and a plaintext JWKS link allowed across the
// network.
func controlPlaneStatus(now time.Time) Status {
	s := sampleStatus()
	grpc := TLSLink{Name: "grpc-server", Label: "gRPC server", URL: "https://mc-1.example.net:50052", TLS: true, MutualTLS: true}
	grpc.SetCert("CN=mc-1.example.net", now.Add(47*24*time.Hour+time.Hour), now)
	gc := TLSLink{Name: "gc", Label: "Global Controller", URL: "https://gc.example.net", TLS: true,
		Problem: "the certificate of gc.example.net:443 expired on 2026-01-01T00:00:00Z"}
	gc.SetCert("CN=gc.example.net", now.Add(-36*time.Hour), now)
	s.ControlPlane = []TLSLink{grpc, gc, {Name: "jwks", Label: "Auth Controller (JWKS)", URL: "http://ac.lan/.well-known/jwks.json",
		Warning: "plaintext: allowed by allow-plaintext-control-plane, so tokens cross the network in the clear"}}
	return s
}

func TestTLSLinkDaysLeft(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		after time.Duration
		want  int
	}{{47*24*time.Hour + time.Hour, 47}, {23 * time.Hour, 0}, {-time.Hour, -1}, {-36 * time.Hour, -2}} {
		var l TLSLink
		l.SetCert("CN=x", now.Add(tc.after), now)
		if l.CertDaysLeft == nil || *l.CertDaysLeft != tc.want {
			t.Errorf("%v from now: %v days left, want %d", tc.after, l.CertDaysLeft, tc.want)
		}
	}
	var none TLSLink
	none.SetCert("", time.Time{}, now)
	if none.CertDaysLeft != nil || none.CertSubject != "" {
		t.Errorf("no certificate: %+v", none)
	}
}

func TestControlPlaneJSONAndMetrics(t *testing.T) {
	now := time.Now()
	s := controlPlaneStatus(now)
	reg := prometheus.NewRegistry()
	m := NewControlPlaneMetrics(reg)
	reg.MustRegister(NewStateCollector(&fakeSource{s: s}, nil))
	m.PinRefused("subject_not_allowed")
	m.PinRefused("subject_not_allowed")
	(*ControlPlaneMetrics)(nil).PinRefused("wrong_issuer") // a nil collector set ignores calls
	srv := newServer(t, Options{Registry: reg}, &fakeSource{s: s})

	_, body := get(t, srv.URL+"/api/v1/status", nil)
	js := decodeJSON(t, body)
	for _, c := range []struct{ got, want any }{
		{path(t, js, "control_plane", 0, "name"), "grpc-server"},
		{path(t, js, "control_plane", 0, "tls"), true},
		{path(t, js, "control_plane", 0, "mtls"), true},
		{path(t, js, "control_plane", 0, "cert_subject"), "CN=mc-1.example.net"},
		{path(t, js, "control_plane", 0, "cert_days_left"), 47.0},
		{path(t, js, "control_plane", 1, "cert_days_left"), -2.0},
		{path(t, js, "control_plane", 1, "problem"), s.ControlPlane[1].Problem},
		{path(t, js, "control_plane", 2, "tls"), false},
		{path(t, js, "control_plane", 2, "warning"), s.ControlPlane[2].Warning},
	} {
		if c.got != c.want {
			t.Errorf("got %v, want %v", c.got, c.want)
		}
	}
	if _, ok := path(t, js, "control_plane", 2).(map[string]any)["cert_days_left"]; ok {
		t.Error("a link without a certificate has days left")
	}

	resp, metrics := get(t, srv.URL+"/metrics", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	for _, series := range []string{
		fmt.Sprintf(`mc_tls_cert_expiry_timestamp_seconds{link="grpc-server"} %g`, float64(s.ControlPlane[0].CertNotAfter.Unix())),
		fmt.Sprintf(`mc_tls_cert_expiry_timestamp_seconds{link="gc"} %g`, float64(s.ControlPlane[1].CertNotAfter.Unix())),
		`mc_service_token_pin_refusals_total{reason="subject_not_allowed"} 2`,
	} {
		if !strings.Contains(metrics, series+"\n") {
			t.Errorf("/metrics lacks %q", series)
		}
	}
	if strings.Contains(metrics, `link="jwks"`) {
		t.Error("a link without a certificate has an expiry")
	}
	if err := testutil.CollectAndCompare(m.pinRefusals, strings.NewReader(`
# HELP mc_service_token_pin_refusals_total Service tokens refused for missing a pin (service-token-issuer, -audience, -subjects), by reason.
# TYPE mc_service_token_pin_refusals_total counter
mc_service_token_pin_refusals_total{reason="subject_not_allowed"} 2
`)); err != nil {
		t.Error(err)
	}
}

func TestBrowserControlPlaneCard(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	s := controlPlaneStatus(time.Now())
	srv := newServer(t, Options{EventInterval: 20 * time.Millisecond}, &fakeSource{s: s})
	run(t, ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(srv.URL+"/"))
	waitFor(t, ctx, `document.querySelector('[data-field="control_plane.jwks"]')`)

	// What a person sees on each link, as rendered text.
	card := func(name string) string {
		return eval[string](t, ctx, `document.querySelector('[data-field="control_plane.`+name+`"]').innerText`)
	}
	for name, wants := range map[string][]string{
		"grpc-server": {"TLS", "mTLS on", "https://mc-1.example.net:50052", "CN=mc-1.example.net", "(47 days left)"},
		"gc":          {"TLS", "mTLS off", "CN=gc.example.net", "(36 h ago)", "expired on 2026-01-01"},
		"jwks":        {"plaintext", "http://ac.lan/.well-known/jwks.json", "tokens cross the network in the clear"},
	} {
		text := card(name)
		for _, want := range wants {
			if !strings.Contains(text, want) {
				t.Errorf("%s link shows %q, lacking %q", name, text, want)
			}
		}
	}
	// The plaintext link's badge is a visible warning (amber), the TLS ones green.
	colors := eval[[]string](t, ctx, `['grpc-server', 'jwks'].map(n => getComputedStyle(document.querySelector('[data-field="control_plane.' + n + '"] .badge')).backgroundColor)`)
	ok := eval[string](t, ctx, `getComputedStyle(document.querySelector('.badge.yes')).backgroundColor`)
	warn := eval[string](t, ctx, `(() => { const b = document.createElement('span'); b.className = 'badge warn'; document.body.append(b); const c = getComputedStyle(b).backgroundColor; b.remove(); return c; })()`)
	if colors[0] != ok || colors[1] != warn || ok == warn {
		t.Errorf("badge colours %v; want TLS %s and plaintext %s", colors, ok, warn)
	}
	if !eval[bool](t, ctx, `(() => { const r = document.querySelector('[data-field="control_plane.jwks"] .badge').getBoundingClientRect(); return r.width > 0 && r.height > 0; })()`) {
		t.Error("the plaintext badge is not visible")
	}
	screenshot(t, ctx, "status-control-plane.png")
}
