package appliance

import (
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// rejoin reconnects with an earlier session's binding and a fresh join token
// for sub, and returns the JoinResponse.
func (e *env) rejoin(meetingID, sub, role, correlationID, bindingToken string) *client {
	e.t.Helper()
	c := e.dial()
	m := joinMsg(meetingID, e.issuer.MeetingToken(sub, meetingID, devissuer.WithRole(role)), sub)
	m.GetJoinRequest().CorrelationId = correlationID
	m.GetJoinRequest().BindingToken = bindingToken
	c.send(m)
	c.resp = c.expect("join response").GetJoinResponse()
	if c.resp == nil {
		e.t.Fatal("reconnection answered without a JoinResponse")
	}
	return c
}

// noLeaveUntilMute checks that watcher sees no ParticipantLeft for pid
// before the mute update that from sends now.
func noLeaveUntilMute(t *testing.T, watcher, from *client) {
	t.Helper()
	from.send(&pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{VideoMuted: true}}})
	watcher.until("mute marker", func(m *pb.ServerMessage) bool {
		if l := m.GetParticipantLeft(); l != nil && l.ParticipantId == from.resp.ParticipantId {
			t.Fatalf("others were told %s left (%v)", l.ParticipantId, l.Reason)
		}
		return m.GetParticipantMuteUpdate().GetParticipantId() == from.resp.ParticipantId
	})
}

func TestReconnectWithinGrace(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	alice := e.join("m1", "alice", "host")
	bob := e.join("m1", "bob", "participant")
	alice.until("bob joined", isJoined(bob.resp.ParticipantId))

	bob.Abort() // the network drops: no clean close
	again := e.rejoin("m1", "bob", "participant", bob.resp.CorrelationId, bob.resp.BindingToken)
	if again.resp.ParticipantId != bob.resp.ParticipantId {
		t.Fatalf("reconnected as %s, want %s", again.resp.ParticipantId, bob.resp.ParticipantId)
	}
	if again.resp.CorrelationId != bob.resp.CorrelationId || again.resp.BindingToken == bob.resp.BindingToken {
		t.Fatal("reconnection must keep the correlation id and issue a new binding token")
	}
	if len(again.resp.ExistingParticipants) != 1 {
		t.Fatalf("roster after reconnection: %v", again.resp.ExistingParticipants)
	}
	noLeaveUntilMute(t, alice, again)

	// The old token was used once: a replay gives a new participant.
	replay := e.rejoin("m1", "bob", "participant", bob.resp.CorrelationId, bob.resp.BindingToken)
	if replay.resp.ParticipantId == bob.resp.ParticipantId {
		t.Fatal("a replayed binding token recovered the session")
	}
	// A second reconnection with the new token works (the old session is
	// still open, so it is closed).
	third := e.rejoin("m1", "bob", "participant", again.resp.CorrelationId, again.resp.BindingToken)
	if third.resp.ParticipantId != bob.resp.ParticipantId {
		t.Fatal("reconnection with the renewed token failed")
	}
	if c := again.expectClosed(); c.Code != closeReplaced {
		t.Fatalf("old session closed with %d %q, want %d", c.Code, c.Reason, closeReplaced)
	}
}

func TestReconnectRefusedGivesNewParticipant(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	e.assign("m2")
	alice := e.join("m1", "alice", "host")
	bob := e.join("m1", "bob", "participant")
	alice.until("bob joined", isJoined(bob.resp.ParticipantId))
	bob.Abort()

	tampered := []byte(bob.resp.BindingToken)
	if tampered[0] == 'a' {
		tampered[0] = 'b'
	} else {
		tampered[0] = 'a'
	}
	cases := []struct {
		name, meeting, sub, token string
	}{
		{"one hex digit changed", "m1", "bob", string(tampered)},
		{"binding from another meeting", "m2", "bob", bob.resp.BindingToken},
		{"join token of another user", "m1", "mallory", bob.resp.BindingToken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.rejoin(tc.meeting, tc.sub, "participant", bob.resp.CorrelationId, tc.token)
			if c.resp.ParticipantId == bob.resp.ParticipantId {
				t.Fatal("session recovered")
			}
			if c.resp.CorrelationId == bob.resp.CorrelationId {
				t.Fatal("new participant got the old correlation id")
			}
		})
	}
	// None of those burned the real binding.
	ok := e.rejoin("m1", "bob", "participant", bob.resp.CorrelationId, bob.resp.BindingToken)
	if ok.resp.ParticipantId != bob.resp.ParticipantId {
		t.Fatal("valid binding refused after failed attempts")
	}
}

func TestDisconnectGraceEnds(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.DisconnectGrace = 300 * time.Millisecond })
	e.assign("m1")
	alice := e.join("m1", "alice", "host")
	bob := e.join("m1", "bob", "participant")
	alice.until("bob joined", isJoined(bob.resp.ParticipantId))
	bob.Abort()
	// The server notices the loss (QUIC idle timeout) and starts the grace.
	left := alice.until("bob timed out", isLeft(bob.resp.ParticipantId)).GetParticipantLeft()
	if left.Reason != pb.LeaveReason_TIMEOUT {
		t.Fatalf("reason %v, want TIMEOUT", left.Reason)
	}
	// Too late: the binding is gone, the join gives a new participant.
	c := e.rejoin("m1", "bob", "participant", bob.resp.CorrelationId, bob.resp.BindingToken)
	if c.resp.ParticipantId == bob.resp.ParticipantId {
		t.Fatal("session recovered after the grace ended")
	}
}

func TestRestartRecoversSessions(t *testing.T) {
	issuer := devissuer.NewIssuer()
	cfg := testConfig(t, issuer)
	e := startEnv(t, issuer, cfg)
	e.assign("m1")
	alice := e.join("m1", "alice", "host")
	bob := e.join("m1", "bob", "participant")
	alice.until("bob joined", isJoined(bob.resp.ParticipantId))
	gen := e.a.ctrl.Snapshots()[0].Generation

	stopped := make(chan struct{})
	go func() { e.stop(); close(stopped) }() // drain: sessions closed with going-away, bindings kept
	if c := alice.expectClosed(); c.Code != closeGoingAway {
		t.Fatalf("drain closed the session with %d %q", c.Code, c.Reason)
	}
	<-stopped

	e2 := startEnv(t, issuer, cfg)
	snaps := e2.a.ctrl.Snapshots()
	if len(snaps) != 1 || snaps[0].Generation <= gen || len(snaps[0].Participants) != 2 {
		t.Fatalf("after restart: %+v (generation before %d)", snaps, gen)
	}
	for _, p := range snaps[0].Participants {
		if p.Connected {
			t.Fatalf("participant %s counts as connected after a restart", p.ID)
		}
	}
	a2 := e2.rejoin("m1", "alice", "host", alice.resp.CorrelationId, alice.resp.BindingToken)
	b2 := e2.rejoin("m1", "bob", "participant", bob.resp.CorrelationId, bob.resp.BindingToken)
	if a2.resp.ParticipantId != alice.resp.ParticipantId || b2.resp.ParticipantId != bob.resp.ParticipantId {
		t.Fatal("participants not recovered after restart")
	}
	noLeaveUntilMute(t, a2, b2)
}
