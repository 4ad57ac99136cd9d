package appliance

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/internalpb"
)

// endedRecorder stands in for the GC's NotifyMeetingEnded.
type endedRecorder struct {
	mu    sync.Mutex
	ended []string
	seen  chan string
}

func newEndedRecorder() *endedRecorder { return &endedRecorder{seen: make(chan string, 16)} }

func (r *endedRecorder) NotifyMeetingEnded(_ context.Context, id string) error {
	r.mu.Lock()
	r.ended = append(r.ended, id)
	r.mu.Unlock()
	r.seen <- id
	return nil
}

func (r *endedRecorder) wait(t *testing.T, id string) {
	t.Helper()
	select {
	case got := <-r.seen:
		if got != id {
			t.Fatalf("the GC was told %q ended, want %q", got, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the GC was never told %q ended", id)
	}
}

// An assigned meeting nobody joins ends after empty-meeting-timeout: its
// stored state goes, the GC is told, and its capacity is free again.
func TestEmptyAssignedMeetingEnds(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.EmptyMeetingTimeout = 100 * time.Millisecond; c.MaxMeetings = 1 })
	gc := newEndedRecorder()
	e.a.ctrl.SetNotifier(gc)
	if r := e.assign("m1"); !r.Accepted {
		t.Fatalf("assignment rejected: %v", r.RejectionReason)
	}
	gc.wait(t, "m1")
	waitFor(t, "meeting forgotten", func() bool { return len(e.a.ctrl.Snapshots()) == 0 })
	if states, err := e.a.db.LoadAll(); err != nil || len(states) != 0 {
		t.Fatalf("stored state after the meeting ended: %+v %v", states, err)
	}
	if r := e.assign("m2"); !r.Accepted {
		t.Fatalf("capacity not freed: second assignment rejected with %v", r.RejectionReason)
	}
}

// A meeting recovered after a restart ends when nobody comes back: with no
// participants after the empty-meeting timeout, with participants when the
// last grace expires.
func TestRecoveredMeetingsEndWhenNobodyReturns(t *testing.T) {
	issuer := devissuer.NewIssuer()
	cfg := testConfig(t, issuer)
	e := startEnv(t, issuer, cfg)
	e.assign("empty")
	e.assign("abandoned")
	e.join("abandoned", "alice", "host")
	e.stop()

	cfg.EmptyMeetingTimeout = 100 * time.Millisecond
	cfg.DisconnectGrace = 200 * time.Millisecond
	e2 := startEnv(t, issuer, cfg)
	gc := newEndedRecorder()
	e2.a.ctrl.SetNotifier(gc)
	waitFor(t, "both recovered meetings ended", func() bool {
		gc.mu.Lock()
		defer gc.mu.Unlock()
		return len(gc.ended) == 2
	})
	if states, err := e2.a.db.LoadAll(); err != nil || len(states) != 0 {
		t.Fatalf("stored state after the meetings ended: %+v %v", states, err)
	}
	if l := e2.a.ctrl.Load(); l.CurrentMeetings != 0 || l.CurrentParticipants != 0 {
		t.Fatalf("load after the meetings ended: %+v", l)
	}
}

// A re-assignment the store refuses is not acknowledged: a meeting fenced
// out by a newer owner is answered accepted=false, UNHEALTHY.
func TestReassignmentNotHeldIsRefused(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	if _, err := e.a.db.Acquire("m1"); err != nil { // a newer owner
		t.Fatal(err)
	}
	r := e.assign("m1")
	if r.Accepted || r.RejectionReason != internalpb.RejectionReason_REJECTION_REASON_UNHEALTHY {
		t.Fatalf("re-assignment of a fenced-out meeting: %v", r)
	}
	waitFor(t, "fenced-out meeting dropped", func() bool { return len(e.a.ctrl.Snapshots()) == 0 })
}
