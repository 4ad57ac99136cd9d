package appliance

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/internalpb"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

func isJoined(id string) func(*pb.ServerMessage) bool {
	return func(m *pb.ServerMessage) bool {
		return m.GetParticipantJoined().GetParticipant().GetParticipantId() == id
	}
}

func isMuteUpdate(id string) func(*pb.ServerMessage) bool {
	return func(m *pb.ServerMessage) bool { return m.GetParticipantMuteUpdate().GetParticipantId() == id }
}

func isLeft(id string) func(*pb.ServerMessage) bool {
	return func(m *pb.ServerMessage) bool { return m.GetParticipantLeft().GetParticipantId() == id }
}

func TestTwoParticipantsSeeEachOther(t *testing.T) {
	e := newEnv(t)
	if r := e.assign("m1"); !r.Accepted {
		t.Fatalf("assignment rejected: %v", r.RejectionReason)
	}
	alice := e.join("m1", "alice", "host")
	if len(alice.resp.ExistingParticipants) != 0 {
		t.Fatalf("first participant sees %d others", len(alice.resp.ExistingParticipants))
	}
	if alice.resp.CorrelationId == "" || len(alice.resp.BindingToken) != 64 {
		t.Fatalf("join response lacks a binding: %+v", alice.resp)
	}
	if len(alice.resp.MediaServers) != 1 || alice.resp.MediaServers[0].MediaHandlerUrl != "https://mh-1.example:4434/" {
		t.Fatalf("media servers %v, want the assigned MH", alice.resp.MediaServers)
	}
	bob := e.join("m1", "bob", "participant")
	if got := bob.resp.ExistingParticipants; len(got) != 1 || got[0].ParticipantId != alice.resp.ParticipantId || got[0].Name != "alice" {
		t.Fatalf("bob sees %v, want alice", got)
	}
	alice.until("bob joined", isJoined(bob.resp.ParticipantId))

	// The roster is in the store and on the status page.
	snaps := e.a.ctrl.Snapshots()
	if len(snaps) != 1 || len(snaps[0].Participants) != 2 {
		t.Fatalf("snapshots %+v, want one meeting with two participants", snaps)
	}
	states, err := e.a.db.LoadAll()
	if err != nil || len(states) != 1 || len(states[0].Participants) != 2 || len(states[0].Bindings) != 2 {
		t.Fatalf("stored state %+v, %v", states, err)
	}
}

func TestMuteAndHostMute(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	host := e.join("m1", "host-user", "host")
	bob := e.join("m1", "bob", "participant")
	host.until("bob joined", isJoined(bob.resp.ParticipantId))

	bob.send(&pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: true}}})
	u := host.until("bob's self-mute", isMuteUpdate(bob.resp.ParticipantId)).GetParticipantMuteUpdate()
	if !u.AudioSelfMuted || u.VideoSelfMuted || u.AudioHostMuted {
		t.Fatalf("self-mute update %+v", u)
	}

	host.send(&pb.ClientMessage{Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{
		ParticipantId: bob.resp.ParticipantId, VideoMuted: true, Reason: "noise",
	}}})
	u = bob.until("host-mute", func(m *pb.ServerMessage) bool {
		return m.GetParticipantMuteUpdate().GetVideoHostMuted()
	}).GetParticipantMuteUpdate()
	if u.ParticipantId != bob.resp.ParticipantId || u.HostMutedBy != host.resp.ParticipantId {
		t.Fatalf("host-mute update %+v", u)
	}
	// Host-mute is durable.
	states, _ := e.a.db.LoadAll()
	for _, p := range states[0].Participants {
		if p.ID == bob.resp.ParticipantId && !p.VideoHostMuted {
			t.Fatal("host-mute not in the store")
		}
	}

	// A participant may not host-mute; the session stays usable.
	bob.send(&pb.ClientMessage{Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{
		ParticipantId: host.resp.ParticipantId, AudioMuted: true,
	}}})
	bob.expectError(pb.ErrorCode_FORBIDDEN)

	// Unmute request goes to the host; the host's approval lifts the mute.
	bob.send(&pb.ClientMessage{Message: &pb.ClientMessage_UnmuteRequest{UnmuteRequest: &pb.UnmuteRequest{RequestVideo: true}}})
	host.until("unmute request", func(m *pb.ServerMessage) bool { return m.GetUnmuteRequest().GetRequestVideo() })
	host.send(&pb.ClientMessage{Message: &pb.ClientMessage_UnmuteResponse{UnmuteResponse: &pb.UnmuteResponse{
		ParticipantId: bob.resp.ParticipantId, VideoApproved: true,
	}}})
	bob.until("unmute response", func(m *pb.ServerMessage) bool { return m.GetUnmuteResponse().GetVideoApproved() })
	u = host.until("mute lifted", func(m *pb.ServerMessage) bool {
		mu := m.GetParticipantMuteUpdate()
		return mu.GetParticipantId() == bob.resp.ParticipantId && !mu.VideoHostMuted
	}).GetParticipantMuteUpdate()
	if !u.AudioSelfMuted {
		t.Fatalf("lifting the host-mute lost the self-mute: %+v", u)
	}

	// Unsupported messages get an error and do not break the session.
	bob.send(&pb.ClientMessage{Message: &pb.ClientMessage_PublishStream{PublishStream: &pb.PublishStream{StreamId: "s"}}})
	bob.expectError(pb.ErrorCode_INVALID_REQUEST)
	bob.send(&pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{}}})
	host.until("bob still alive", isMuteUpdate(bob.resp.ParticipantId))
}

func TestLeaveAndMeetingEnd(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	alice := e.join("m1", "alice", "host")
	bob := e.join("m1", "bob", "participant")
	alice.until("bob joined", isJoined(bob.resp.ParticipantId))
	bob.Close()
	left := alice.until("bob left", isLeft(bob.resp.ParticipantId)).GetParticipantLeft()
	if left.Reason != pb.LeaveReason_VOLUNTARY {
		t.Fatalf("leave reason %v, want VOLUNTARY", left.Reason)
	}
	alice.Close()
	// The last leave ends the meeting: state removed, a join is NOT_FOUND.
	waitFor(t, "meeting ended", func() bool { return len(e.a.ctrl.Snapshots()) == 0 })
	states, err := e.a.db.LoadAll()
	if err != nil || len(states) != 0 {
		t.Fatalf("stored state after the meeting ended: %+v %v", states, err)
	}
	c := e.dial()
	c.send(joinMsg("m1", e.issuer.MeetingToken("carol", "m1"), "carol"))
	c.expectError(pb.ErrorCode_NOT_FOUND)
}

func TestJoinRefusals(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	other := devissuer.NewIssuer()
	huge := strings.Repeat("x", 9000)
	cases := []struct {
		name string
		msg  *pb.ClientMessage
		code pb.ErrorCode
	}{
		{"expired", joinMsg("m1", e.issuer.MeetingToken("u", "m1", devissuer.WithIssuedAt(time.Now().Add(-2*time.Hour)), devissuer.WithTTL(time.Hour)), "u"), pb.ErrorCode_UNAUTHORIZED},
		{"wrong signature", joinMsg("m1", other.MeetingToken("u", "m1", devissuer.WithKID(e.issuer.KID())), "u"), pb.ErrorCode_UNAUTHORIZED},
		{"wrong meeting", joinMsg("m1", e.issuer.MeetingToken("u", "m2"), "u"), pb.ErrorCode_UNAUTHORIZED},
		{"service token", joinMsg("m1", e.issuer.ServiceToken("u", "global-controller"), "u"), pb.ErrorCode_UNAUTHORIZED},
		{"unknown token type", joinMsg("m1", e.issuer.MeetingToken("u", "m1", devissuer.WithClaim("token_type", "admin")), "u"), pb.ErrorCode_UNAUTHORIZED},
		{"oversized token", joinMsg("m1", e.issuer.MeetingToken("u", "m1", devissuer.WithClaim("pad", huge)), "u"), pb.ErrorCode_UNAUTHORIZED},
		{"missing token", joinMsg("m1", "", "u"), pb.ErrorCode_UNAUTHORIZED},
		{"unknown meeting", joinMsg("nope", e.issuer.MeetingToken("u", "nope"), "u"), pb.ErrorCode_NOT_FOUND},
		{"name too long", joinMsg("m1", e.issuer.MeetingToken("u", "m1"), strings.Repeat("n", 257)), pb.ErrorCode_INVALID_REQUEST},
		{"first frame not a join", &pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{}}}, pb.ErrorCode_INVALID_REQUEST},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial()
			c.t = t
			c.send(tc.msg)
			em := c.expectError(tc.code)
			if strings.Contains(em.Message, "eyJ") {
				t.Fatalf("error message leaks a token: %q", em.Message)
			}
			c.expectClosed()
		})
	}
	// A guest token joins as a participant with its display name.
	c := e.dial()
	c.send(joinMsg("m1", e.issuer.GuestToken("g1", "m1", "Guest One"), ""))
	if r := c.expect("guest join").GetJoinResponse(); r == nil {
		t.Fatal("guest token refused")
	}
	snap := e.a.ctrl.Snapshots()[0]
	if snap.Participants[0].Name != "Guest One" {
		t.Fatalf("guest name %q", snap.Participants[0].Name)
	}
}

func TestBadFrames(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	t.Run("garbage", func(t *testing.T) {
		c := e.dial()
		c.t = t
		frame := binary.BigEndian.AppendUint32(nil, 8)
		c.SendRaw(append(frame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		c.expectError(pb.ErrorCode_INVALID_REQUEST)
		c.expectClosed()
	})
	t.Run("oversized frame", func(t *testing.T) {
		c := e.dial()
		c.t = t
		frame := binary.BigEndian.AppendUint32(nil, 65537)
		c.SendRaw(append(frame, bytes.Repeat([]byte{0}, 1024)...))
		c.expectError(pb.ErrorCode_INVALID_REQUEST)
		c.expectClosed()
	})
	t.Run("garbage after join keeps the session", func(t *testing.T) {
		c := e.join("m1", "alice", "host")
		c.t = t
		c.SendRaw(append(binary.BigEndian.AppendUint32(nil, 3), 0xff, 0xff, 0xff))
		c.expectError(pb.ErrorCode_INVALID_REQUEST)
		c.send(&pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: true}}})
		c.until("own mute update", isMuteUpdate(c.resp.ParticipantId))
	})
}

func TestCapacity(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxParticipants = 12; c.MaxMeetings = 2 })
	// Participant capacity: 12 in all.
	e.assign("m1")
	for i := range 12 {
		e.join("m1", "u"+string(rune('a'+i)), "participant")
	}
	c := e.dial()
	c.send(joinMsg("m1", e.issuer.MeetingToken("late", "m1"), "late"))
	c.expectError(pb.ErrorCode_CAPACITY_EXCEEDED)
	// Assignment capacity: participants + 10 > max rejects new meetings.
	if r := e.assign("m2"); r.Accepted || r.RejectionReason != internalpb.RejectionReason_REJECTION_REASON_AT_CAPACITY {
		t.Fatalf("assignment at capacity: %+v", r)
	}
	// Re-assigning a held meeting is idempotent.
	if r := e.assign("m1"); !r.Accepted {
		t.Fatalf("re-assignment rejected: %+v", r)
	}
}

func TestSlowReaderDoesNotDelayOthers(t *testing.T) {
	// The sender's message budget is lifted: this is about the receivers.
	e := newEnv(t, func(c *Config) {
		c.SessionMessageRate, c.SessionMessageBurst = 1e6, 1e6
		c.SlowClientTimeout = 500 * time.Millisecond
	})
	e.assign("m1")
	fast := e.join("m1", "fast", "host")
	slow := e.join("m1", "slow", "participant") // never reads again
	fast.until("slow joined", isJoined(slow.resp.ParticipantId))
	// Far more updates than the slow client's flow-control window holds:
	// the fast one gets every one of them, the slow one is dropped once an
	// update has waited slow-client-timeout for it.
	const n = 3000
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := fast.Send(&pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: i%2 == 0}}}); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	got := 0
	fast.until("all updates", func(m *pb.ServerMessage) bool {
		if m.GetParticipantMuteUpdate().GetParticipantId() == fast.resp.ParticipantId {
			got++
		}
		return got == n
	})
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slow client dropped", func() bool {
		for _, p := range e.a.ctrl.Snapshots()[0].Participants {
			if p.ID == slow.resp.ParticipantId {
				return !p.Connected
			}
		}
		return false
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMeetingPanicIsContained(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	e.assign("m2")
	alice := e.join("m1", "alice", "host")
	other := e.join("m2", "carol", "host")
	m := e.a.ctrl.lookup("m1")
	if err := m.post(context.Background(), func() { panic("injected") }); err != nil {
		t.Fatal(err)
	}
	alice.expectError(pb.ErrorCode_INTERNAL_ERROR)
	alice.expectClosed()
	// The process and the other meeting carry on.
	other.send(&pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: true}}})
	other.until("mute update", isMuteUpdate(other.resp.ParticipantId))
	if e.a.ctrl.lookup("m1") != nil {
		t.Fatal("the panicked meeting is still held")
	}
	e.expectMetric("mc_actor_panics_total", map[string]string{"actor_type": "meeting"}, 1)
}
