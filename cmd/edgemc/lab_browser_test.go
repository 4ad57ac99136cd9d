package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/edgemc/edgemc/web/webtest"
)

// Page expressions shared by the steps of TestBrowserLab.
const (
	// labDescribe summarises a demo tab for failure messages.
	labDescribe = `JSON.stringify({status: document.getElementById('status').textContent,
		error: document.getElementById('error').textContent, roster: window.edgemcDemo.roster()})`
	// statusDescribe summarises the status page for failure messages.
	statusDescribe = `JSON.stringify(window.edgemcStatus.last())`
	// labRows counts the roster rows of a demo tab.
	labRows = `document.querySelectorAll('#roster tr[data-participant-id]').length`
	// labHostMuteButtons selects the host-mute buttons of a demo tab.
	labHostMuteButtons = `#roster tr[data-participant-id] .actions button`
)

// statusRow is the status page's row of a participant in the demo meeting.
func statusRow(pid string) string {
	return fmt.Sprintf(`document.querySelector('[data-meeting-id="demo"] tr[data-participant-id=%q]')`, pid)
}

// statusCell is the text of one labelled cell of statusRow.
func statusCell(pid, label string) string {
	return fmt.Sprintf(`%s?.querySelector('td[data-label=%q]').textContent`, statusRow(pid), label)
}

// labRowSel selects a demo tab's roster row of a participant.
func labRowSel(pid string) string {
	return fmt.Sprintf(`#roster tr[data-participant-id=%q]`, pid)
}

// labRow is a demo tab's roster row of a participant.
func labRow(pid string) string {
	return fmt.Sprintf(`document.querySelector('%s')`, labRowSel(pid))
}

// TestBrowserLab runs the real edgemc binary in lab mode and uses it the way
// a new user would, from headless Chromium: the status page shows the
// appliance registered with the development GC and the demo meeting; two
// demo tabs join over real WebTransport, see each other, mute, host-mute,
// ask to be unmuted and leave; when the last one leaves the meeting ends
// and the lab assigns it again. What each person can see is checked as
// visibility, not as attributes.
func TestBrowserLab(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	artifacts := artifactDir(t)
	p := startEdgemc(t, append([]string{"lab"}, loopbackArgs()...))
	base := "http://" + p.WaitReady().Str("http")

	// The status page: registered, lab card, demo meeting assigned.
	status := ctx
	browse(t, status, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(base+"/"))
	waitJS(t, status, "registration and health on the status page",
		`document.querySelector('[data-field="gc.registered"]')?.textContent === 'registered' &&
		document.getElementById('health').textContent === 'HEALTHY'`, statusDescribe)
	waitJS(t, status, "the demo meeting on the status page",
		`document.querySelector('[data-meeting-id="demo"]')`, statusDescribe)
	waitJS(t, status, "the lab card on the status page", webtest.Shown(`#lab`, `#lab-host`), statusDescribe)
	if got := jsEval[string](t, status, `document.getElementById('lab-host').getAttribute('href')`); got != "/lab/join?role=host" {
		t.Errorf("status page lab card links to %s, want /lab/join?role=host", got)
	}
	firstGen := jsEval[int](t, status, `window.edgemcStatus.last().meetings.find(m => m.id === 'demo').generation`)

	// Two demo tabs join.
	host, guest := webtest.NewTab(t, ctx), webtest.NewTab(t, ctx)
	joined := `document.getElementById('status').textContent === 'joined'`
	browse(t, host, chromedp.EmulateViewport(1280, 800), chromedp.Navigate(base+"/lab/join?role=host&name=Alice&autojoin=1"))
	waitJS(t, host, "the host to join", joined, labDescribe)
	browse(t, guest, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(base+"/lab/join?role=participant&name=Bob"))
	waitJS(t, guest, "the join form without controls before joining",
		webtest.Shown(`#join`)+` && `+webtest.NotShown(`#controls`, `#mute-audio`, `#leave`, `#error`), labDescribe)
	browse(t, guest, chromedp.Click(`#join`))
	waitJS(t, guest, "the participant to join", joined+` && `+webtest.Shown(`#mute-audio`, `#leave`), labDescribe)
	alice := jsEval[string](t, host, `window.edgemcDemo.state.selfId`)
	bob := jsEval[string](t, guest, `window.edgemcDemo.state.selfId`)
	if alice == "" || bob == "" || alice == bob {
		t.Fatalf("participant ids %q and %q", alice, bob)
	}

	// Both see both, with names, in their rosters and on the status page.
	for _, tab := range []context.Context{host, guest} {
		waitJS(t, tab, "both participants in the roster", labRows+` === 2`, labDescribe)
		names := jsEval[string](t, tab, `document.getElementById('roster').innerText`)
		if !strings.Contains(names, "Alice") || !strings.Contains(names, "Bob") {
			t.Errorf("roster lacks a name: %q", names)
		}
	}
	waitJS(t, status, "both participants on the status page",
		statusCell(alice, "Name")+` === 'Alice' && `+statusCell(bob, "Name")+` === 'Bob'`, statusDescribe)
	if got := jsEval[string](t, status, statusCell(alice, "Role")+` + ' ' + `+statusCell(bob, "Role")); got != "host participant" {
		t.Errorf("status page roles %q, want host participant", got)
	}

	// Bob mutes his audio: Alice and the status page see it.
	browse(t, guest, chromedp.Click(`#mute-audio`))
	waitJS(t, host, "Bob's self-mute in Alice's tab", labRow(bob)+`?.dataset.audio === 'muted'`, labDescribe)
	waitJS(t, status, "Bob's self-mute on the status page", statusCell(bob, "Audio")+` === 'muted'`, statusDescribe)
	if got := jsEval[string](t, guest, `document.getElementById('mute-audio').getAttribute('aria-pressed')`); got != "true" {
		t.Errorf("Bob's mute button aria-pressed=%s after muting", got)
	}

	// Host-mute buttons: Alice (host) sees them on Bob's row, not on her
	// own; Bob sees none.
	waitJS(t, host, "host-mute buttons on Bob's row only",
		webtest.Shown(labRowSel(bob)+` .host-mute-audio`, labRowSel(bob)+` .host-mute-video`)+` && `+
			webtest.NotShown(labRowSel(alice)+` .actions button`), labDescribe)
	waitJS(t, guest, "no host-mute buttons for a participant", webtest.NotShown(labHostMuteButtons), labDescribe)

	// Bob may not host-mute Alice, even without a button: FORBIDDEN, and he
	// stays in the meeting.
	jsEval[bool](t, guest, fmt.Sprintf(`(window.edgemcDemo.hostMute(%q, true, false), true)`, alice))
	waitJS(t, guest, "FORBIDDEN for a participant's host-mute",
		webtest.Shown(`#error`)+` && document.getElementById('error').textContent.startsWith('FORBIDDEN')`, labDescribe)
	if got := jsEval[string](t, host, labRow(alice)+`.dataset.audio`); got != "on" {
		t.Errorf("Alice's audio is %q after a forbidden host-mute", got)
	}

	// Alice host-mutes Bob's video: Bob and the status page see it, and
	// Bob's video button becomes "Ask to unmute video".
	browse(t, host, chromedp.Click(labRowSel(bob)+` .host-mute-video`))
	waitJS(t, guest, "the host-mute in Bob's tab", labRow(bob)+`?.dataset.video === 'host-muted' && `+
		webtest.Shown(`#ask-video`)+` && `+webtest.NotShown(`#mute-video`), labDescribe)
	waitJS(t, status, "the host-mute on the status page", statusCell(bob, "Video")+` === 'host-muted'`, statusDescribe)
	browse(t, guest, chromedp.Click(`#ask-video`))
	waitJS(t, host, "Bob's unmute request in Alice's tab",
		webtest.Shown(`#notice`)+` && document.getElementById('notice').textContent.startsWith('Bob asks to be unmuted (video)')`, labDescribe)
	if got := jsEval[string](t, guest, labDescribe); !strings.Contains(got, `"status":"joined"`) {
		t.Errorf("Bob's tab after the host-mute: %s", got)
	}
	if got := jsEval[string](t, host, `document.getElementById('error').textContent`); got != "" {
		t.Errorf("the host sees an error: %q", got)
	}

	// Nothing secret on any page: join and binding tokens stay in the protocol.
	for _, tab := range []context.Context{status, host, guest} {
		txt := jsEval[string](t, tab, `document.body.innerText`)
		if strings.Contains(txt, "binding") || strings.Contains(txt, "eyJ") {
			t.Errorf("a token is shown on %s", jsEval[string](t, tab, `location.pathname`))
		}
	}

	screenshot(t, status, artifacts, "lab-status-desktop.png")
	screenshot(t, host, artifacts, "lab-host-desktop.png")
	screenshot(t, guest, artifacts, "lab-participant-phone.png")
	browse(t, status, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	waitJS(t, status, "the phone layout of the status page",
		`getComputedStyle(document.querySelector('table.stack thead')).display === 'none'`, statusDescribe)
	screenshot(t, status, artifacts, "lab-status-phone.png")
	for _, tab := range []context.Context{status, guest} {
		if w := jsEval[[]int](t, tab, `[document.documentElement.scrollWidth, window.innerWidth]`); w[0] > w[1] {
			t.Errorf("%s is %d px wide in a %d px phone viewport", jsEval[string](t, tab, `location.pathname`), w[0], w[1])
		}
	}

	// Bob leaves: gone from Alice's roster and from the status page; his
	// tab shows the form again, without controls or the error he had seen.
	browse(t, guest, chromedp.Click(`#leave`))
	waitJS(t, guest, "Bob's tab after leaving", webtest.Shown(`#join`)+` && `+webtest.NotShown(`#controls`, `#error`), labDescribe)
	waitJS(t, host, "Bob gone from Alice's roster", labRows+` === 1 && !`+labRow(bob), labDescribe)
	waitJS(t, status, "Bob gone from the status page", `!`+statusRow(bob)+` && `+statusRow(alice), statusDescribe)
	if got := jsEval[string](t, guest, `document.getElementById('status').textContent`); got != "left" {
		t.Errorf("Bob's status %q after leaving", got)
	}

	// Alice leaves last: the meeting ends and the lab assigns it again.
	browse(t, host, chromedp.Click(`#leave`))
	p.WaitLog("the demo meeting ending", func(l logLine) bool { return l.Msg() == "meeting ended" })
	waitJS(t, status, "the demo meeting assigned again", fmt.Sprintf(
		`window.edgemcStatus.last().meetings.some(m => m.id === 'demo' && m.generation > %d && !m.participants?.length)`, firstGen),
		statusDescribe)

	// The new demo meeting takes joins.
	browse(t, host, chromedp.Click(`#join`))
	waitJS(t, host, "Alice to join the new demo meeting", joined+` && `+labRows+` === 1`, labDescribe)
	waitJS(t, status, "Alice on the status page again", statusRow(jsEval[string](t, host, `window.edgemcDemo.state.selfId`)), statusDescribe)

	// A drain redirects the session before it closes it (Chromium reports
	// the server's close as "Connection lost.", without edgemc's close
	// code): the page leaves the meeting and keeps trying to come back.
	if code := p.Stop(); code != exitOK {
		t.Errorf("exit code after SIGTERM = %d, want %d", code, exitOK)
	}
	waitJS(t, host, "the page to notice the drain",
		`document.getElementById('status').textContent.startsWith('reconnecting') && `+labRows+` === 0 && `+webtest.NotShown(`#controls`), labDescribe)
}
