package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgemc/edgemc/gc/actest"
	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/gc/mhtest"
	"github.com/edgemc/edgemc/web/webtest"
)

// readyReason is /health/ready's status code and reason.
func readyReason(t *testing.T, httpAddr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/health/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct{ Reason string }
	json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r.Reason
}

// poll waits until cond holds, failing the test after waitTimeout or when
// edgemc exits.
func (p *edgemcProc) poll(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		select {
		case <-p.exited:
			p.t.Fatalf("edgemc exited (code %d) while waiting for %s", p.exitCode, what)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestE2EAuthControllerDownAtStart runs the real binary with its
// credentials at a fake AC that refuses them and then is unavailable, for
// many attempts: edgemc never exits, says why it is not ready, registers
// with the GC as soon as the AC answers, and calls media handlers with the
// AC's token. The client secret appears in no log line and no help text.
func TestE2EAuthControllerDownAtStart(t *testing.T) {
	ac := actest.Start(t)
	ac.Refuse(http.StatusUnauthorized, -1)
	gc := gctest.Start(t)
	gc.Accept(200*time.Millisecond, time.Second)
	mh := mhtest.Start(t, "mh-1")
	issuer := devissuer.NewIssuer()
	secretFile := filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(secretFile, []byte(actest.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startEdgemc(t, append([]string{"serve", writeJWTKey(t, issuer), "--id=mc-ac",
		"--gc-url=" + gc.Target(), "--ac-url=" + ac.URL(), "--client-id=" + actest.ClientID, "--client-secret-file=" + secretFile,
		"--gc-backoff-base=10ms", "--gc-backoff-max=50ms"}, loopbackArgs()...))
	ready := p.WaitReady()
	httpAddr := ready.Str("http")

	p.poll("credentials refused on /health/ready", func() bool {
		code, reason := readyReason(t, httpAddr)
		return code == http.StatusServiceUnavailable && strings.HasSuffix(reason, "credentials refused")
	})
	p.WaitLog("the refusal logged as an error", func(l logLine) bool {
		return l.Level() == "ERROR" && strings.Contains(l.Msg(), "credentials refused")
	})
	ac.Refuse(http.StatusServiceUnavailable, -1)
	n := len(ac.Requests())
	p.poll("40 more token requests", func() bool { return len(ac.Requests()) >= n+40 })
	if code, reason := readyReason(t, httpAddr); code != http.StatusServiceUnavailable || !strings.HasSuffix(reason, "auth controller unavailable") {
		t.Fatalf("ready while the AC is unavailable: %d %q", code, reason)
	}
	if regs := gc.Registrations(); len(regs) != 0 {
		t.Fatalf("%d registrations without a token", len(regs))
	}

	ac.Grant(time.Hour)
	ctx := testCtx(t)
	regs, err := gc.WaitRegistrations(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	verifier := auth.NewVerifier(auth.NewStaticKeys(ac.Issuer.PublicKey()), auth.VerifierOptions{})
	if c, err := verifier.VerifyService(ctx, regs[0].Token, ""); err != nil || !c.HasScope("service.write.gc") {
		t.Fatalf("registered with a token the AC did not issue: %v", err)
	}
	p.poll("ready", func() bool { code, _ := readyReason(t, httpAddr); return code == http.StatusOK })

	// The first join registers the meeting with its media handler, which
	// sees the AC's token.
	resp, err := gctest.Assign(ctx, ready.Str("grpc"), issuer.ServiceToken("gc", "global-controller"), &internalpb.AssignMeetingWithMhRequest{
		MeetingId: "m1", RequestingGcId: "gc",
		MhAssignments: []*internalpb.MhAssignment{{MhId: "mh-1", WebtransportEndpoint: "https://127.0.0.1:1/", GrpcEndpoint: mh.Endpoint()}},
	})
	if err != nil || !resp.Accepted {
		t.Fatalf("assign: %v %v", resp, err)
	}
	a := &mc{p: p, issuer: issuer}
	a.ready()
	a.join(t, "m1", "alice", "", "")
	calls, err := mh.WaitCalls(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	c, err := verifier.VerifyService(ctx, calls[0].Token, "")
	if err != nil || c.ServiceType != "meeting-controller" || !c.HasScope("service.write.mh") || calls[0].Req.McId != "mc-ac" {
		t.Fatalf("RegisterMeeting with claims %+v, %v", c, err)
	}

	if code := p.Stop(); code != exitOK {
		t.Fatalf("exit code %d", code)
	}
	for _, l := range p.Logs() {
		if strings.Contains(l.Raw, actest.Secret) || strings.Contains(l.Raw, regs[0].Token) {
			t.Fatalf("a secret is in the log: %s", l.Raw)
		}
	}
	_, out, errOut := runEdgemc(t, []string{"help"}, "EDGEMC_CLIENT_SECRET_FILE="+secretFile)
	if strings.Contains(out+errOut, actest.Secret) || !strings.Contains(out, "client-secret-file") {
		t.Fatal("edgemc help shows the secret, or not the setting")
	}
}

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestBrowserLabRestart restarts the real binary in lab mode under two
// demo tabs: edgemc redirects both before it closes their sessions, and
// each comes back, by itself, as the same participant, with its media
// handler connection, as a `systemctl restart` in a meeting would.
func TestBrowserLabRestart(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	dir := t.TempDir()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"lab",
		"--http-listen=" + httpAddr,
		fmt.Sprintf("--grpc-listen=127.0.0.1:%d", freePort(t)),
		fmt.Sprintf("--webtransport-listen=127.0.0.1:%d", freeUDPPort(t)),
		"--drain-timeout=10s",
	}
	p := startEdgemcIn(t, dir, args)
	p.WaitReady()
	base := "http://" + httpAddr

	host, guest := webtest.NewTab(t, ctx), webtest.NewTab(t, ctx)
	joined := `document.getElementById('status').textContent === 'joined'`
	browse(t, host, chromedp.Navigate(base+"/lab/join?role=host&name=Alice&autojoin=1"))
	browse(t, guest, chromedp.Navigate(base+"/lab/join?role=participant&name=Bob&autojoin=1"))
	ids := map[string]string{}
	for name, tab := range map[string]context.Context{"Alice": host, "Bob": guest} {
		waitJS(t, tab, name+" joined, with the media handler connected",
			joined+` && document.querySelector('#media li[data-state="CONNECTED"]') && `+labRows+` === 2`, labDescribe)
		ids[name] = jsEval[string](t, tab, `window.edgemcDemo.state.selfId`)
	}
	// The status page shows both sides of the media connection.
	status := webtest.NewTab(t, ctx)
	browse(t, status, chromedp.Navigate(base+"/"))
	for _, id := range ids {
		waitJS(t, status, "media on the status page", statusCell(id, "Media")+`?.startsWith('media: 1/1 handlers')`, statusDescribe)
	}
	waitJS(t, status, "the media handler registered", `document.querySelector('[data-meeting-id="demo"] [data-mh-id="lab-mh-1"]')?.dataset.state === 'registered'`, statusDescribe)

	if code := p.Stop(); code != exitOK {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if !strings.Contains(p.stderrText(), "participants redirected") {
		t.Fatal("no redirect before the drain closed the sessions")
	}
	for name, tab := range map[string]context.Context{"Alice": host, "Bob": guest} {
		waitJS(t, tab, name+"'s page reconnecting", `document.getElementById('status').textContent.startsWith('reconnecting')`, labDescribe)
	}

	p2 := startEdgemcIn(t, dir, args)
	p2.WaitReady()
	for name, tab := range map[string]context.Context{"Alice": host, "Bob": guest} {
		waitJS(t, tab, name+" back in the meeting", joined+` && `+labRows+` === 2 && window.edgemcDemo.state.reconnects === 1 && `+
			`document.querySelector('#media li[data-state="CONNECTED"]')`, labDescribe)
		if got := jsEval[string](t, tab, `window.edgemcDemo.state.selfId`); got != ids[name] {
			t.Errorf("%s came back as %s, was %s", name, got, ids[name])
		}
	}
	p2.WaitLog("the recovered meeting registered with its media handler again", func(l logLine) bool {
		return l.Msg() == "registering the meeting with its media handlers" && l.Str("why") == "first participant back after a restart"
	})
	if code := p2.Stop(); code != exitOK {
		t.Fatalf("exit code %d after the second SIGTERM", code)
	}
}
