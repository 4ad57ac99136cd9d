package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// GC intervals of the fault tests: a heartbeat is a second, the shortest
// interval edgemc takes from a GC, so "within one heartbeat" is cheap to
// wait for.
const (
	faultFast = time.Second
	faultComp = 2 * time.Second
)

// gcFaultArgs are edgemc's GC settings in the fault tests: its own fast
// heartbeat agrees with the GC's, as in production, and the registration
// backoff's cap (3 s) is three heartbeats, as in production (30 s against
// 10 s).
func gcFaultArgs(t *testing.T, id string, g *gctest.GC) []string {
	t.Helper()
	token := filepath.Join(t.TempDir(), "gc-token")
	if err := os.WriteFile(token, []byte("gc-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--id=" + id, "--gc-url=" + g.Target(), "--gc-token-file=" + token,
		"--gc-backoff-base=100ms", "--gc-backoff-max=3s", "--fast-heartbeat=" + faultFast.String()}
}

// startGCFaultMC starts a fake GC and an edgemc registered with it (see
// gcFaultArgs).
func startGCFaultMC(t *testing.T) (*gctest.GC, *faultMC) {
	t.Helper()
	g := gctest.Start(t)
	g.Accept(faultFast, faultComp)
	mc := startFaultMC(t, "", devissuer.NewIssuer(), gcFaultArgs(t, "mc-faults", g)...)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := waitOKFast(ctx, g, time.Time{}); err != nil {
		t.Fatalf("no acknowledged heartbeat: %v", err)
	}
	return g, mc
}

// waitOKFast waits for an acknowledged fast heartbeat received after after.
func waitOKFast(ctx context.Context, g *gctest.GC, after time.Time) error {
	for n := 1; ; n++ {
		calls, err := g.WaitFast(ctx, n)
		if err != nil {
			return err
		}
		if c := calls[n-1]; c.OK && c.At.After(after) {
			return nil
		}
	}
}

// meetingClients are joined participants whose every message is read; any
// sign of a disconnection (a ParticipantLeft, an error, a closed session)
// fails the test.
type meetingClients struct {
	t       *testing.T
	mc      *faultMC
	meeting string
	readers map[string]*reader // by user
}

func newMeetingClients(t *testing.T, mc *faultMC, meeting string) *meetingClients {
	mc.mustAssign(t, meeting)
	return &meetingClients{t: t, mc: mc, meeting: meeting, readers: map[string]*reader{}}
}

// join adds a participant; everyone already there must see it join.
func (m *meetingClients) join(sub string) {
	m.t.Helper()
	conn, resp := m.mc.mustJoin(m.t, m.meeting, sub)
	ctx, cancel := context.WithCancel(context.Background())
	m.t.Cleanup(cancel)
	for _, r := range m.readers {
		r.until(m.t, "ParticipantJoined of "+sub, func(s *pb.ServerMessage) bool {
			return s.GetParticipantJoined().GetParticipant().GetParticipantId() == resp.ParticipantId
		}, m.unexpected)
	}
	m.readers[sub] = startReader(ctx, conn)
}

func (m *meetingClients) unexpected(s *pb.ServerMessage) {
	m.t.Helper()
	if s.GetParticipantLeft() != nil || s.GetError() != nil {
		m.t.Fatalf("a client of %s received %v", m.meeting, s)
	}
}

// roundTrip has sub mute itself and waits until every participant has seen
// it: signaling works and nobody was disconnected.
func (m *meetingClients) roundTrip(sub string, mute bool) {
	m.t.Helper()
	if err := m.readers[sub].conn.Send(&pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: mute}}}); err != nil {
		m.t.Fatalf("%s: send mute: %v", sub, err)
	}
	for user, r := range m.readers {
		r.until(m.t, user+" seeing the mute of "+sub, func(s *pb.ServerMessage) bool {
			u := s.GetParticipantMuteUpdate()
			return u != nil && u.AudioSelfMuted == mute
		}, m.unexpected)
	}
}

// TestFaultGCOutageNotFound stops the GC while clients are joined and brings
// it back with no memory of the MC: nobody is disconnected, a client can
// still join during the outage, and the MC is registered again within one
// heartbeat of the GC's return (its first heartbeat gets NOT_FOUND).
func TestFaultGCOutageNotFound(t *testing.T) {
	t.Parallel()
	s := faultSettings(t)
	g, mc := startGCFaultMC(t)
	m := newMeetingClients(t, mc, "m-outage")
	m.join("host-1")
	m.join("user-1")
	m.join("user-2")

	stopAt := time.Now()
	g.Stop()
	mc.WaitLog("a failed heartbeat during the outage", func(l logLine) bool {
		return l.Msg() == "GC heartbeat failed; will retry" && logTime(l).After(stopAt)
	})
	m.join("user-3")
	m.roundTrip("user-1", true)
	t.Logf("GC stopped for %v", s.gcOutage)
	outage := time.NewTimer(time.Until(stopAt.Add(s.gcOutage))) // the fault itself lasts this long
	<-outage.C
	m.roundTrip("user-2", true)

	regsBefore := len(g.Registrations())
	restartAt := time.Now()
	g.Restart()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	regs, err := g.WaitRegistrations(ctx, regsBefore+1)
	if err != nil {
		t.Fatalf("MC did not register again after the GC came back: %v", err)
	}
	regAt := regs[regsBefore].At
	mc.WaitLog("the NOT_FOUND answer", func(l logLine) bool {
		return l.Msg() == "GC no longer knows this MC; registering again" && logTime(l).After(restartAt)
	})
	// Fast heartbeats the MC tried between the GC's return and the new
	// registration: the one answered NOT_FOUND, and at most one more that
	// was already on its way when the GC came back. A connection left in
	// backoff would show as a run of failures here.
	tried := mc.countLogs(func(l logLine) bool {
		at := logTime(l)
		return l.Msg() == "GC heartbeat failed; will retry" && l.Str("kind") == "fast" && at.After(restartAt) && at.Before(regAt)
	})
	for _, c := range g.Fast() {
		if c.At.After(restartAt) && c.At.Before(regAt) {
			tried++
		}
	}
	t.Logf("registered again %v after the GC came back, after %d fast heartbeats (interval %v)", regAt.Sub(restartAt), tried, faultFast)
	if tried > 2 {
		t.Errorf("%d fast heartbeats between the GC's return and the new registration, want at most 2 (one heartbeat)", tried)
	}
	if err := waitOKFast(ctx, g, regAt); err != nil {
		t.Fatalf("heartbeats did not resume: %v", err)
	}
	m.roundTrip("host-1", true)
	if code, reason := mc.ready(t); code != 200 {
		t.Errorf("ready after the outage: %d %s", code, reason)
	}
}

// TestFaultGCHung has the GC hold every call: heartbeats time out (and are
// retried) while joins and in-meeting signaling go on unaffected, and the
// MC stays registered once the GC answers again.
func TestFaultGCHung(t *testing.T) {
	t.Parallel()
	g, mc := startGCFaultMC(t)
	m := newMeetingClients(t, mc, "m-hung")
	m.join("host-1")
	m.join("user-1")

	slowAt := time.Now()
	g.Slow()
	timedOut := mc.WaitLog("a heartbeat timing out", func(l logLine) bool {
		return l.Msg() == "GC heartbeat failed; will retry" && logTime(l).After(slowAt) && strings.Contains(l.Str("error"), "DeadlineExceeded")
	})
	t.Logf("heartbeat timed out after %v", logTime(timedOut).Sub(slowAt))
	// The next heartbeat was due long ago, so one is hung again now.
	m.join("user-2")
	m.roundTrip("user-1", true)
	m.roundTrip("host-1", true)

	acceptAt := time.Now()
	g.Accept(faultFast, faultComp)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	if err := waitOKFast(ctx, g, acceptAt); err != nil {
		t.Fatalf("heartbeats did not recover: %v", err)
	}
	if n := len(g.Registrations()); n != 1 {
		t.Errorf("%d registrations; a hung GC must not make the MC register again", n)
	}
	m.roundTrip("user-2", true)
}

// Readiness reasons while the GC is in trouble.
const (
	reasonNotRegistered = "not registered with the global controller yet"
	reasonGCDown        = "ready; global controller link down, serving held meetings"
)

// TestFaultGCReadiness follows /health/ready through GC trouble. Before the
// GC has accepted it once, edgemc is not ready. Once accepted it stays
// ready, as sampled all along, through an outage in which the GC stops, then
// comes back without memory of it and refuses it for a while: its meetings
// go on, and a load balancer must not drop a fleet that the GC left all at
// once. The trouble shows in the reason and in /api/v1/status.
func TestFaultGCReadiness(t *testing.T) {
	t.Parallel()
	g := gctest.Start(t)
	g.Reject("GC starting up")
	mc := startFaultMC(t, "", devissuer.NewIssuer(), gcFaultArgs(t, "mc-ready", g)...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	if _, err := g.WaitRegistrations(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if code, reason := mc.ready(t); code != 503 || reason != reasonNotRegistered {
		t.Errorf("ready before the first registration: %d %q, want 503 %q", code, reason, reasonNotRegistered)
	}

	g.Accept(faultFast, faultComp)
	if err := waitOKFast(ctx, g, time.Time{}); err != nil {
		t.Fatalf("no acknowledged heartbeat: %v", err)
	}
	if code, reason := mc.ready(t); code != 200 || reason != "ready" {
		t.Errorf("ready once registered: %d %q", code, reason)
	}
	m := newMeetingClients(t, mc, "m-ready")
	m.join("host-1")
	m.join("user-1")

	probe := startReadyProbe(t, mc)
	stopAt := time.Now()
	g.Stop()
	mc.WaitLog("a failed heartbeat during the outage", func(l logLine) bool {
		return l.Msg() == "GC heartbeat failed; will retry" && logTime(l).After(stopAt)
	})
	if code, reason := mc.ready(t); code != 200 || reason != reasonGCDown {
		t.Errorf("ready while the GC is unreachable: %d %q, want 200 %q", code, reason, reasonGCDown)
	}

	// The GC comes back without memory of the MC and refuses it: the next
	// heartbeat is answered NOT_FOUND, and the registration that follows is
	// refused.
	g.Reject("region full")
	regsBefore := len(g.Registrations())
	g.Restart()
	if _, err := g.WaitRegistrations(ctx, regsBefore+1); err != nil {
		t.Fatalf("no registration after the GC came back: %v", err)
	}
	mc.WaitLog("the refused registration", func(l logLine) bool {
		return l.Msg() == "GC REJECTED registration; retrying" && l.Str("gc_message") == "region full"
	})
	if code, reason := mc.ready(t); code != 200 || reason != reasonGCDown {
		t.Errorf("ready while the GC refuses the MC: %d %q, want 200 %q", code, reason, reasonGCDown)
	}
	st := mc.gcStatus(t)
	if st.Registered || st.LastRegistered.IsZero() || st.DownSince.Before(stopAt) || !strings.Contains(st.LastError, "region full") {
		t.Errorf("/api/v1/status gc while the GC refuses the MC: %+v", st)
	}
	m.join("user-2")
	m.roundTrip("user-1", true)

	acceptAt := time.Now()
	g.Accept(faultFast, faultComp)
	if err := waitOKFast(ctx, g, acceptAt); err != nil {
		t.Fatalf("heartbeats did not resume: %v", err)
	}
	if failures := probe.stop(); len(failures) > 0 {
		t.Errorf("/health/ready during the outage was not always 200: %d answers, first %s", len(failures), failures[0])
	}
	if code, reason := mc.ready(t); code != 200 || reason != "ready" {
		t.Errorf("ready after the outage: %d %q", code, reason)
	}
	if st := mc.gcStatus(t); !st.Registered || !st.DownSince.IsZero() {
		t.Errorf("/api/v1/status gc after the outage: %+v", st)
	}
	m.roundTrip("host-1", true)
}

// readyProbe asks /health/ready over and over, as a load balancer does, and
// keeps every answer that is not 200.
type readyProbe struct {
	done     chan struct{}
	finished chan struct{}
	mu       sync.Mutex
	failures []string
}

func startReadyProbe(t *testing.T, mc *faultMC) *readyProbe {
	p := &readyProbe{done: make(chan struct{}), finished: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(p.finished)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var failure string
			resp, err := client.Get("http://" + mc.http + "/health/ready")
			if err != nil {
				failure = err.Error()
			} else {
				var body struct{ Reason string }
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failure = fmt.Sprintf("%d %q", resp.StatusCode, body.Reason)
				}
			}
			if failure != "" {
				p.mu.Lock()
				p.failures = append(p.failures, failure)
				p.mu.Unlock()
			}
			select {
			case <-p.done:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

// stop ends the probe and returns the answers that were not 200.
func (p *readyProbe) stop() []string {
	select {
	case <-p.done:
	default:
		close(p.done)
	}
	<-p.finished
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures
}

// gcLink is the "gc" part of /api/v1/status.
type gcLink struct {
	Registered     bool      `json:"registered"`
	LastRegistered time.Time `json:"last_registered"`
	DownSince      time.Time `json:"down_since"`
	LastError      string    `json:"last_error"`
}

// gcStatus fetches the GC link state from /api/v1/status.
func (mc *faultMC) gcStatus(t *testing.T) gcLink {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + mc.http + "/api/v1/status")
	if err != nil {
		t.Fatalf("GET /api/v1/status: %v", err)
	}
	defer resp.Body.Close()
	var st struct{ GC gcLink }
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("GET /api/v1/status: %v", err)
	}
	return st.GC
}
