package appliance

import (
	"testing"
	"time"

	"github.com/edgemc/edgemc/store"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

func TestBudget(t *testing.T) {
	c := &Controller{cfg: controllerConfig{MessageRate: 20, MessageBurst: 50}}
	b := c.newBudget()
	now := time.Unix(1_800_000_000, 0)
	for i := range 50 {
		if r := b.spend(now); r != withinBudget {
			t.Fatalf("message %d of the burst: %v", i, r)
		}
	}
	if r := b.spend(now); r != firstOverBudget {
		t.Fatalf("first message over the burst: %v, want firstOverBudget", r)
	}
	for i := range 49 {
		if r := b.spend(now); r != overBudget {
			t.Fatalf("drop %d: %v, want overBudget", i+2, r)
		}
	}
	// 50 ms later one token is back (20/s): a message passes.
	now = now.Add(50 * time.Millisecond)
	if r := b.spend(now); r != withinBudget {
		t.Fatalf("after a refill: %v", r)
	}
	if r := b.spend(now); r != exhausted {
		t.Fatalf("drop 51 within the window: %v, want exhausted", r)
	}
	// A new window starts the count again.
	b = c.newBudget()
	for range 51 {
		b.spend(now)
	}
	now = now.Add(budgetWindow + time.Second) // the bucket is full again
	for range 50 {
		b.spend(now)
	}
	if r := b.spend(now); r != firstOverBudget || b.dropped != 1 {
		t.Fatalf("first drop of a new window: %v with %d counted, want firstOverBudget and 1", r, b.dropped)
	}
	if unlimited := (&Controller{}).newBudget(); unlimited.spend(now) != withinBudget {
		t.Fatal("no budget configured, yet a message was refused")
	}
}

// A mute that changes nothing is answered to its sender alone: no store
// write, no broadcast.
func TestNoOpMuteWritesNothing(t *testing.T) {
	f := newFakeDeps(t)
	m := runMeeting(t, f, store.Meeting{ID: "m", Generation: 1})
	host, bob := &recPeer{id: 1}, &recPeer{id: 2}
	hostID := joined(t, m, "host", "host", host)
	bobID := joined(t, m, "bob", "participant", bob)
	m.on(t, func() { m.selfMute(bobID, &pb.MuteRequest{AudioMuted: true}) })
	writes, seen := f.store.writes(), len(host.msgs)
	m.on(t, func() {
		for range 100 {
			m.selfMute(bobID, &pb.MuteRequest{AudioMuted: true})
			if cerr := m.hostMute(hostID, &pb.HostMuteRequest{ParticipantId: bobID}); cerr != nil {
				t.Fatal(cerr)
			}
		}
	})
	if n := f.store.writes() - writes; n != 0 {
		t.Fatalf("%d store writes for mutes that changed nothing", n)
	}
	if n := len(host.msgs) - seen; n != 100 { // the host's own 100 answers, nothing of bob's
		t.Fatalf("the host got %d messages, want its 100 answers", n)
	}
	if got := host.last().GetParticipantMuteUpdate(); got.GetParticipantId() != bobID || !got.AudioSelfMuted {
		t.Fatalf("the host's answer %v, want bob's current state", got)
	}
}

// Repeated unmute requests reach the hosts once until a host answers.
func TestUnmuteRequestsCoalesced(t *testing.T) {
	f := newFakeDeps(t)
	m := runMeeting(t, f, store.Meeting{ID: "m", Generation: 1})
	host, bob := &recPeer{id: 1}, &recPeer{id: 2}
	hostID := joined(t, m, "host", "host", host)
	bobID := joined(t, m, "bob", "participant", bob)
	requests := func() int {
		n := 0
		for _, msg := range host.msgs {
			if msg.GetUnmuteRequest() != nil {
				n++
			}
		}
		return n
	}
	m.on(t, func() {
		if cerr := m.hostMute(hostID, &pb.HostMuteRequest{ParticipantId: bobID, AudioMuted: true, VideoMuted: true}); cerr != nil {
			t.Fatal(cerr)
		}
		for range 1000 {
			if cerr := m.unmuteRequest(bobID, &pb.UnmuteRequest{RequestAudio: true}); cerr != nil {
				t.Fatal(cerr)
			}
		}
		if n := requests(); n != 1 {
			t.Fatalf("the host got %d unmute requests, want 1", n)
		}
		m.unmuteRequest(bobID, &pb.UnmuteRequest{RequestAudio: true, RequestVideo: true}) // video is new
		if n := requests(); n != 2 {
			t.Fatalf("a request for video too: the host has %d, want 2", n)
		}
		// The host answers (no to video): bob may ask again.
		if cerr := m.unmuteResponse(hostID, &pb.UnmuteResponse{ParticipantId: bobID, AudioApproved: true}); cerr != nil {
			t.Fatal(cerr)
		}
		m.unmuteRequest(bobID, &pb.UnmuteRequest{RequestVideo: true})
		if n := requests(); n != 3 {
			t.Fatalf("after the answer: the host has %d requests, want 3", n)
		}
	})
}

// One user holds at most perSub participants in a meeting: at the limit a
// new join replaces the user's oldest disconnected participant, or is refused
// while all of them are connected.
func TestParticipantsPerIdentity(t *testing.T) {
	f := newFakeDeps(t)
	d := f.deps()
	d.perSub = 2
	m := newMeeting(t.Context(), d, store.Meeting{ID: "m", Generation: 1})
	go m.run()
	t.Cleanup(func() { m.cancel(); <-m.done })
	other := &recPeer{id: 9}
	joined(t, m, "other", "host", other)
	a, b := &recPeer{id: 1}, &recPeer{id: 2}
	aID := joined(t, m, "mallory", "participant", a)
	joined(t, m, "mallory", "participant", b)

	var cerr *codedError
	m.on(t, func() { _, cerr = m.join(joinRequest{claims: claims("mallory", "participant"), conn: &recPeer{id: 3}}) })
	if cerr == nil || cerr.code != pb.ErrorCode_CAPACITY_EXCEEDED {
		t.Fatalf("third connected session of one user: %v, want CAPACITY_EXCEEDED", cerr)
	}
	m.on(t, func() { m.disconnected(aID, a.ID()) })
	joined(t, m, "mallory", "participant", &recPeer{id: 4})
	if r := leftEvent(t, m, other, aID); r != pb.LeaveReason_TIMEOUT {
		t.Fatalf("the replaced participant left with %v", r)
	}
	m.on(t, func() {
		if n := len(m.participants); n != 3 {
			t.Fatalf("%d participants, want 3", n)
		}
	})
	if n := f.seats.count(); n != 3 {
		t.Fatalf("%d seats taken, want 3", n)
	}
}

// A participant flooding the meeting is told once, then closed with its own
// code; nobody else is dropped and the others see a bounded number of its
// updates.
func TestMessageFloodClosesTheSender(t *testing.T) {
	// Loss detection plays no part here: keep a busy machine from
	// mistaking a slow test for a lost connection.
	e := newEnv(t, func(c *Config) { c.SessionIdleTimeout = 15 * time.Second })
	e.assign("m1")
	hosts := []*client{e.join("m1", "host-1", "host"), e.join("m1", "host-2", "host")}
	flooder := e.join("m1", "flooder", "participant")
	for _, h := range hosts {
		h.until("flooder joined", isJoined(flooder.resp.ParticipantId))
	}
	hosts[0].send(&pb.ClientMessage{Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{
		ParticipantId: flooder.resp.ParticipantId, AudioMuted: true,
	}}})
	flooder.until("host-muted", func(m *pb.ServerMessage) bool { return m.GetParticipantMuteUpdate().GetAudioHostMuted() })
	for i := range 2000 {
		m := &pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: i%2 == 0}}}
		if i%2 == 1 {
			m = &pb.ClientMessage{Message: &pb.ClientMessage_UnmuteRequest{UnmuteRequest: &pb.UnmuteRequest{RequestAudio: true}}}
		}
		if err := flooder.Send(m); err != nil {
			break // closed by the server
		}
	}
	flooder.expectError(pb.ErrorCode_CAPACITY_EXCEEDED) // the first drop is answered
	if c := flooder.expectClosed(); c.Code != closeRateLimited {
		t.Fatalf("flooder closed with %d %q, want %d", c.Code, c.Reason, closeRateLimited)
	}
	// Both hosts are still served: a host-mute reaches the other host.
	hosts[0].send(&pb.ClientMessage{Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{
		ParticipantId: hosts[1].resp.ParticipantId, AudioMuted: true,
	}}})
	updates := 0
	hosts[1].until("host-mute", func(m *pb.ServerMessage) bool {
		if m.GetParticipantMuteUpdate().GetParticipantId() == flooder.resp.ParticipantId {
			updates++
		}
		return m.GetParticipantMuteUpdate().GetParticipantId() == hosts[1].resp.ParticipantId
	})
	if updates > int(e.cfg.SessionMessageBurst)+1 {
		t.Fatalf("a host got %d of the flooder's updates, want at most a burst", updates)
	}
}
