package web

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgemc/edgemc/web/webtest"
)

// run runs steps with a deadline; the deadline must not apply to the
// context that started the browser, hence the derived one.
func run(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) into T.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript predicate until it is truthy.
func waitFor(t *testing.T, ctx context.Context, predicate string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		t.Fatalf("waiting for %s: %v", predicate, err)
	}
}

// screenshot saves a full-page PNG to $EDGEMC_ARTIFACTS or a temp dir.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("EDGEMC_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", p, len(png))
}

const xssName = `<img src=x onerror="window.pwned=1">`

// gatedSource is a fakeSource that answers nothing until open is closed,
// as an appliance slow to answer its first status.
type gatedSource struct {
	*fakeSource
	open chan struct{}
}

func (g gatedSource) Status(ctx context.Context) Status {
	select {
	case <-g.open:
	case <-ctx.Done():
	}
	return g.fakeSource.Status(ctx)
}

func TestBrowserStatusPage(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	s := sampleStatus()
	s.Meetings[0].Participants = append(s.Meetings[0].Participants,
		Participant{ID: "p-x", Name: xssName, Role: "participant", Connected: true})
	s.Lab = &LabInfo{MeetingID: "lab-meeting", JoinPath: "/lab/join", Note: "Development GC and token issuer in-process."}
	s.System.ProcessCPUPercent = 0.4
	src := gatedSource{&fakeSource{s: s}, make(chan struct{})}
	srv := newServer(t, Options{EventInterval: 20 * time.Millisecond}, src)

	// Before the first update the page says it is connecting, and shows no empty cards.
	run(t, ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(srv.URL+"/"))
	waitFor(t, ctx, webtest.Shown(`#connecting`)+` && `+webtest.NotShown(`#identity`, `#capacity`, `#meetings`, `#lab`))
	if got := eval[string](t, ctx, `document.getElementById('connecting').innerText`); got != "connecting…" {
		t.Errorf("before the first update the page says %q", got)
	}
	close(src.open)
	waitFor(t, ctx, `document.querySelector('[data-participant-id="p-2"]')`)
	waitFor(t, ctx, webtest.Shown(`#identity`, `#capacity`, `#system`, `#meetings`, `#lab`)+` && `+webtest.NotShown(`#connecting`))
	text := eval[string](t, ctx, `document.body.innerText`)
	for _, want := range []string{"mc-lab-1", "eu-west", "HEALTHY", s.Identity.CertSHA256, "registered",
		"127.0.0.1:50052", "1 / 100 (1 %)", "2 / 1000 (0 %)", "Host CPU", "12.5 % · edgemc 0.4 %", "48.0 MiB", "meeting-1", "Alice", "Bob",
		"host-muted", "disconnected", "/var/lib/edgemc/state.db", "Join the demo meeting"} {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Display names are text, never markup.
	if eval[bool](t, ctx, `document.querySelectorAll('img').length > 0 || window.pwned === 1`) {
		t.Error("a display name was rendered as HTML")
	}
	if got := eval[string](t, ctx, `document.querySelector('[data-participant-id="p-x"] td.name').textContent`); got != xssName {
		t.Errorf("name cell %q", got)
	}
	if got := eval[string](t, ctx, `document.getElementById('lab-host').getAttribute('href')`); got != "/lab/join?role=host" {
		t.Errorf("lab link %q", got)
	}
	// The tab has an icon.
	if got := eval[string](t, ctx, `fetch(document.querySelector('link[rel=icon]').href).then(r => r.status + ' ' + r.headers.get('content-type'))`); got != "200 image/svg+xml" {
		t.Errorf("page icon: %s", got)
	}
	screenshot(t, ctx, "status-desktop.png")

	if strings.Contains(text, "Link down") {
		t.Error("page shows the GC link down while it works")
	}

	// Live update without a reload, the GC link lost among the changes.
	eval[bool](t, ctx, `window.marker = true`)
	src.update(func(s *Status) {
		s.Health = HealthDegraded
		s.Capacity.Meetings = 85
		s.Meetings[0].Participants = append(s.Meetings[0].Participants,
			Participant{ID: "p-3", Name: "Carol", Role: "participant", Connected: true})
		s.GC.Registered, s.GC.DownSince = false, time.Now().Add(-2*time.Minute)
	})
	waitFor(t, ctx, `document.querySelector('[data-participant-id="p-3"]') && document.getElementById('health').textContent === 'DEGRADED'`)
	if text := eval[string](t, ctx, `document.getElementById('gc').innerText`); !strings.Contains(text, "Link down") ||
		!strings.Contains(text, "since 2 min ago") || !strings.Contains(text, "not registered") {
		t.Errorf("GC card after the link was lost:\n%s", text)
	}
	if !eval[bool](t, ctx, `window.marker === true`) {
		t.Error("the page reloaded")
	}
	if !eval[bool](t, ctx, `document.querySelector('[data-field="capacity.meetings"] .fill').classList.contains('warn')`) {
		t.Error("85 % capacity bar is not amber")
	}
	if !eval[bool](t, ctx, `document.getElementById('live').classList.contains('on')`) {
		t.Error("live indicator is off")
	}
	// Patches build on each other: the meeting ends, then a new one starts.
	src.update(func(s *Status) { s.Meetings = nil })
	waitFor(t, ctx, `!document.querySelector('[data-meeting-id="meeting-1"]') && document.getElementById('meetings').innerText.includes('No meetings.')`)
	src.update(func(s *Status) {
		s.Meetings = []Meeting{{ID: "meeting-2", Generation: 1, Participants: []Participant{{ID: "p-9", Name: "Dan", Role: "host", Connected: true}}}}
	})
	waitFor(t, ctx, `document.querySelector('[data-participant-id="p-9"]') && document.getElementById('health').textContent === 'DEGRADED'`)

	// Phone width: nothing overflows sideways, tables stack.
	run(t, ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	waitFor(t, ctx, `getComputedStyle(document.querySelector('table.stack thead')).display === 'none'`)
	if w := eval[[]int](t, ctx, `[document.documentElement.scrollWidth, window.innerWidth]`); w[0] > w[1] {
		t.Errorf("page is %d px wide in a %d px viewport", w[0], w[1])
	}
	screenshot(t, ctx, "status-phone.png")
}

func TestBrowserStatusToken(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	src := &fakeSource{s: sampleStatus()}
	srv := newServer(t, Options{StatusToken: statusToken, EventInterval: 20 * time.Millisecond}, src)

	run(t, ctx, chromedp.Navigate(srv.URL+"/"))
	waitFor(t, ctx, `document.querySelector('input[name=token]')`)
	run(t, ctx,
		chromedp.SendKeys(`input[name=token]`, statusToken),
		chromedp.Submit(`input[name=token]`),
		chromedp.WaitVisible(`#health`))
	waitFor(t, ctx, `document.getElementById('mc-id').textContent === 'mc-lab-1'`)
	loc := eval[string](t, ctx, `location.href`)
	if strings.Contains(loc, "token") {
		t.Errorf("token left in the address bar: %s", loc)
	}
	if c := eval[string](t, ctx, `document.cookie`); c != "" {
		t.Errorf("cookie readable from script: %q", c)
	}
	// The live stream is authorised by the cookie too.
	src.update(func(s *Status) { s.Identity.Version = "9.9.9" })
	waitFor(t, ctx, `document.querySelector('[data-field="identity.version"]').textContent === '9.9.9'`)
}

// With every live-update stream taken, the page polls instead.
func TestBrowserStatusPollsWhenStreamsAreTaken(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	src := &fakeSource{s: sampleStatus()}
	srv := newServer(t, Options{EventInterval: 20 * time.Millisecond, MaxEventStreams: 1}, src)
	resp, events := openEvents(t, srv.URL) // the one stream
	defer resp.Body.Close()
	if ev, _ := nextEvent(t, events); ev != "status" {
		t.Fatalf("first event %s", ev)
	}
	run(t, ctx, chromedp.Navigate(srv.URL+"/"))
	waitFor(t, ctx, `document.getElementById('live').textContent === 'live (polling)' && document.getElementById('mc-id').textContent === 'mc-lab-1'`)
}
