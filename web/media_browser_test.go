package web

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgemc/edgemc/web/webtest"
)

// The status page shows the service token, each media handler's answer to
// RegisterMeeting, and per participant both views of its media
// connections, flagging a client that says FAILED while the handler says
// connected; the client's words are shown as text, never as HTML.
func TestBrowserStatusMedia(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	s := sampleStatus()
	now := time.Now().UTC()
	s.AC = &ACStatus{URL: "https://ac.example:8082", ClientID: "mc-1", HasToken: true, ExpiresAt: now.Add(50 * time.Minute),
		Scope: "service.write.mh service.write.gc"}
	m := &s.Meetings[0]
	m.MHRegistrations = []MHRegistration{
		{MHID: "mh-1", State: MHRegistered, Attempts: 1},
		{MHID: "mh-2", State: MHFailed, Attempts: 3, LastError: "cannot connect"},
	}
	m.Participants[0].Media = &ParticipantMedia{Connected: 2, Total: 2, Handlers: []ParticipantMHLink{
		{MHID: "mh-1", MHConnected: true, ClientState: "CONNECTED"},
		{MHID: "mh-2", MHConnected: true, ClientState: "FAILED", ClientFailureReason: xssName, Disagree: true},
	}}
	srv := newServer(t, Options{}, &fakeSource{s: s})
	run(t, ctx, chromedp.Navigate(srv.URL+"/"))
	p0 := m.Participants[0].ID
	cell := `document.querySelector('tr[data-participant-id="` + p0 + `"] td[data-label="Media"]')`
	waitFor(t, ctx, cell+`?.textContent.startsWith('media: 2/2 handlers')`)
	flag := eval[string](t, ctx, cell+`.querySelector('[data-disagree="mh-2"]').innerText`)
	if !strings.Contains(flag, "client says FAILED") || !strings.Contains(flag, "handler says connected") || !strings.Contains(flag, "<img") {
		t.Errorf("disagreement shown as %q", flag)
	}
	if eval[bool](t, ctx, `window.pwned === 1`) {
		t.Fatal("a client's failure reason ran as HTML")
	}
	if got := eval[string](t, ctx, `[...document.querySelectorAll('[data-mh-id]')].map((e) => e.dataset.mhId + ':' + e.dataset.state).join(' ')`); got != "mh-1:registered mh-2:failed" {
		t.Errorf("registrations shown as %q", got)
	}
	if got := eval[string](t, ctx, `document.querySelector('[data-field="ac.has_token"]').innerText`); !strings.HasPrefix(got, "valid until") {
		t.Errorf("service token row %q", got)
	}
	screenshot(t, ctx, "status-media.png")
}
