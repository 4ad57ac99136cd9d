package appliance

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edgemc/edgemc/store"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

var errDiskFull = errors.New("no space left on device")

// runMeeting starts a meeting of fakes with its goroutine; ops run through do.
func runMeeting(t *testing.T, f *fakeDeps, st store.Meeting) *meeting {
	t.Helper()
	m := newMeeting(context.Background(), f.deps(), st)
	go m.run()
	t.Cleanup(func() { m.cancel(); <-m.done })
	return m
}

func (m *meeting) on(t *testing.T, fn func()) {
	t.Helper()
	if err := m.do(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

// joined runs a join on m's goroutine and returns the participant id.
func joined(t *testing.T, m *meeting, sub, role string, conn peer) string {
	t.Helper()
	var pid string
	var cerr *codedError
	m.on(t, func() { pid, cerr = m.join(joinRequest{claims: claims(sub, role), name: sub, conn: conn}) })
	if cerr != nil {
		t.Fatal(cerr)
	}
	return pid
}

// leftEvent waits until p was told that pid left, and returns the reason.
func leftEvent(t *testing.T, m *meeting, p *recPeer, pid string) pb.LeaveReason {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found *pb.ParticipantLeft
		m.on(t, func() {
			for _, msg := range p.msgs {
				if l := msg.GetParticipantLeft(); l != nil && l.ParticipantId == pid {
					found = l
				}
			}
		})
		if found != nil {
			return found.Reason
		}
		if time.Now().After(deadline) {
			t.Fatalf("never told that %s left", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// aliceAndBob runs a meeting of f in which host alice and bob have joined.
func aliceAndBob(t *testing.T, f *fakeDeps) (m *meeting, alice, bob *recPeer, bobID string) {
	t.Helper()
	m = runMeeting(t, f, store.Meeting{ID: "m", Generation: 1})
	alice, bob = &recPeer{id: 1}, &recPeer{id: 2}
	joined(t, m, "alice", "host", alice)
	return m, alice, bob, joined(t, m, "bob", "participant", bob)
}

// A disconnect whose write fails still starts the grace: the participant
// leaves with TIMEOUT once the store is back.
func TestDisconnectWithFailingStoreStillStartsGrace(t *testing.T) {
	f := newFakeDeps(t)
	f.grace = 50 * time.Millisecond
	m, alice, bob, bobID := aliceAndBob(t, f)

	f.store.setFail(errDiskFull)
	m.on(t, func() { m.disconnected(bobID, bob.ID()) })
	m.on(t, func() {
		if p := m.participants[bobID]; p.conn != nil || p.grace == nil {
			t.Fatalf("after a failed disconnect write: conn %v, grace %v; want no session and a grace timer", p.conn, p.grace)
		}
	})
	f.store.setFail(nil)
	if r := leftEvent(t, m, alice, bobID); r != pb.LeaveReason_TIMEOUT {
		t.Fatalf("bob left with %v, want TIMEOUT", r)
	}
}

// A leave whose write fails keeps the participant (disconnected, grace
// running) and tells nobody; the removal is tried again when the grace ends.
func TestLeaveWithFailingStoreTimesOutLater(t *testing.T) {
	f := newFakeDeps(t)
	f.grace = 50 * time.Millisecond
	m, alice, bob, bobID := aliceAndBob(t, f)

	f.store.setFail(errDiskFull)
	m.on(t, func() { m.leave(bobID, bob.ID(), pb.LeaveReason_VOLUNTARY) })
	m.on(t, func() {
		p := m.participants[bobID]
		if p == nil || p.conn != nil || p.grace == nil {
			t.Fatalf("after a failed leave write: %+v; want bob kept, disconnected, with a grace timer", p)
		}
		for _, msg := range alice.msgs {
			if msg.GetParticipantLeft() != nil {
				t.Fatal("alice was told bob left before the store forgot him")
			}
		}
	})
	if _, ok := f.store.participant(bobID); !ok {
		t.Fatal("bob is gone from the store")
	}
	f.store.setFail(nil)
	if r := leftEvent(t, m, alice, bobID); r != pb.LeaveReason_TIMEOUT {
		t.Fatalf("bob left with %v, want TIMEOUT", r)
	}
	if _, ok := f.store.participant(bobID); ok {
		t.Fatal("bob is still in the store after timing out")
	}
}

// A reconnection with a failing store (the nonce cannot be consumed, and the
// fallback join cannot be stored) leaves the participant as it was and gives
// the new session an error.
func TestReconnectWithFailingStoreKeepsTheOldState(t *testing.T) {
	f := newFakeDeps(t)
	m, _, bob, bobID := aliceAndBob(t, f)
	resp := bob.msgs[0].GetJoinResponse()
	m.on(t, func() { m.disconnected(bobID, bob.ID()) })
	var before participant
	m.on(t, func() { before = *m.participants[bobID] })

	f.store.setFail(errDiskFull)
	again := &recPeer{id: 3}
	var cerr *codedError
	m.on(t, func() {
		_, cerr = m.join(joinRequest{claims: claims("bob", "participant"), conn: again,
			correlationID: resp.CorrelationId, bindingToken: resp.BindingToken})
	})
	if cerr == nil {
		t.Fatal("reconnection with a failing store succeeded")
	}
	m.on(t, func() {
		p := m.participants[bobID]
		if p.conn != nil || p.rec.Connected || p.binding != before.binding || p.grace != before.grace {
			t.Fatalf("after a failed reconnection: conn %v, rec %+v, binding %+v; want it as before", p.conn, p.rec, p.binding)
		}
	})
	if len(again.msgs) != 0 {
		t.Fatalf("the new session was sent %v", again.msgs)
	}
}

// Only the session write fails (the nonce is consumed): the participant is not
// re-pointed at the new session, which gets INTERNAL_ERROR.
func TestReconnectWithFailingSessionWrite(t *testing.T) {
	f := newFakeDeps(t)
	m := runMeeting(t, f, store.Meeting{ID: "m", Generation: 1})
	bob := &recPeer{id: 2}
	bobID := joined(t, m, "bob", "participant", bob)
	resp := bob.msgs[0].GetJoinResponse()
	m.on(t, func() { m.disconnected(bobID, bob.ID()) })

	f.store.failSessions(errDiskFull)
	again := &recPeer{id: 3}
	var cerr *codedError
	m.on(t, func() {
		_, cerr = m.join(joinRequest{claims: claims("bob", "participant"), conn: again,
			correlationID: resp.CorrelationId, bindingToken: resp.BindingToken})
	})
	if cerr == nil || cerr.code != pb.ErrorCode_INTERNAL_ERROR {
		t.Fatalf("reconnection with a failing session write: %v, want INTERNAL_ERROR", cerr)
	}
	m.on(t, func() {
		if p := m.participants[bobID]; p.conn != nil || p.rec.Connected || p.grace == nil {
			t.Fatalf("after a failed reconnection: conn %v, connected %v, grace %v; want disconnected with its grace", p.conn, p.rec.Connected, p.grace)
		}
	})
	if len(again.msgs) != 0 {
		t.Fatalf("the new session was sent %v", again.msgs)
	}
}

// Mutes change memory only once stored.
func TestMuteWithFailingStoreChangesNothing(t *testing.T) {
	f := newFakeDeps(t)
	m := runMeeting(t, f, store.Meeting{ID: "m", Generation: 1})
	host, bob := &recPeer{id: 1}, &recPeer{id: 2}
	hostID := joined(t, m, "host", "host", host)
	bobID := joined(t, m, "bob", "participant", bob)
	m.on(t, func() {
		if cerr := m.hostMute(hostID, &pb.HostMuteRequest{ParticipantId: bobID, AudioMuted: true}); cerr != nil {
			t.Fatal(cerr)
		}
	})
	f.store.setFail(errDiskFull)
	m.on(t, func() {
		want := m.participants[bobID].rec
		m.selfMute(bobID, &pb.MuteRequest{VideoMuted: true})
		if cerr := m.hostMute(hostID, &pb.HostMuteRequest{ParticipantId: bobID}); cerr == nil {
			t.Error("host-mute with a failing store succeeded")
		}
		if cerr := m.unmuteResponse(hostID, &pb.UnmuteResponse{ParticipantId: bobID, AudioApproved: true}); cerr == nil {
			t.Error("unmute approval with a failing store succeeded")
		}
		if got := m.participants[bobID].rec; got != want {
			t.Errorf("bob in memory %+v after failed writes, want %+v", got, want)
		}
		if got := m.snapshot.Load().Participants[1]; got != want {
			t.Errorf("status shows %+v, want %+v", got, want)
		}
	})
}

// A JoinResponse that alone exceeds a frame (the media-handler list does) is
// refused cleanly: no panic, nothing stored, the seat freed.
func TestJoinResponseLargerThanAFrameIsRefused(t *testing.T) {
	f := newFakeDeps(t)
	var mhs []store.Assignment
	for i := range 80 {
		mhs = append(mhs, store.Assignment{MHID: "mh", WebTransportEndpoint: "https://" + strings.Repeat("h", 1000) + string(rune('a'+i%26))})
	}
	m := runMeeting(t, f, store.Meeting{ID: "m", Generation: 1, Assignments: mhs})
	var cerr *codedError
	m.on(t, func() { _, cerr = m.join(joinRequest{claims: claims("alice", "host"), conn: &recPeer{id: 1}}) })
	if cerr == nil || cerr.code != pb.ErrorCode_INTERNAL_ERROR {
		t.Fatalf("join: %v, want INTERNAL_ERROR", cerr)
	}
	if n := f.seats.count(); n != 0 {
		t.Fatalf("%d seats taken after a refused join", n)
	}
	if len(f.store.participants) != 0 {
		t.Fatalf("stored %v after a refused join", f.store.participants)
	}
}

// A meeting nobody joins ends after the empty-meeting timeout, as a meeting
// whose last participant left does.
func TestEmptyMeetingEnds(t *testing.T) {
	f := newFakeDeps(t)
	f.empty = 20 * time.Millisecond
	runMeeting(t, f, store.Meeting{ID: "m", Generation: 1})
	select {
	case ended := <-f.stops:
		if !ended {
			t.Fatal("the empty meeting stopped without ending")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the empty meeting never ended")
	}
}

// If the store refuses to delete an empty meeting, it is tried again later.
func TestEmptyMeetingEndRetriedAfterStoreFailure(t *testing.T) {
	f := newFakeDeps(t)
	f.empty = 20 * time.Millisecond
	f.store.setFail(errDiskFull)
	m := runMeeting(t, f, store.Meeting{ID: "m", Generation: 1})
	deadline := time.Now().Add(10 * time.Second)
	for f.store.deleteTries() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the end of the meeting was not tried again")
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.on(t, func() {
		if m.stopped {
			t.Fatal("the meeting stopped although its delete failed")
		}
	})
	f.store.setFail(nil)
	if ended := <-f.stops; !ended {
		t.Fatal("the meeting stopped without ending")
	}
}
