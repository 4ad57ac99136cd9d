package appliance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// capturePeer records what a meeting queues for one participant.
type capturePeer struct{ frames []webtransport.Frame }

func (c *capturePeer) ID() uint64 { return 1 }
func (c *capturePeer) Send(m *pb.ServerMessage) error {
	f, err := webtransport.EncodeServerMessage(m)
	c.frames = append(c.frames, f)
	return err
}
func (c *capturePeer) SendFrame(f webtransport.Frame) error {
	c.frames = append(c.frames, f)
	return nil
}
func (c *capturePeer) Close(uint32, string) {}

// A roster too large for one 64 KiB frame still reaches a newcomer, in one
// queued write: the JoinResponse holds what fits, ParticipantJoined the rest,
// then the mute state of everyone muted.
func TestJoinResponseOfALargeMeeting(t *testing.T) {
	m := newMeeting(context.Background(), newFakeDeps(t).deps(), store.Meeting{ID: "big"})
	const n = 2000
	for i := range n {
		p := &participant{rec: store.Participant{ID: fmt.Sprintf("participant-%04d", i), Name: fmt.Sprintf("A fairly long display name %04d", i), AudioSelfMuted: i%2 == 0}}
		m.participants[p.rec.ID] = p
		m.order = append(m.order, p.rec.ID)
	}
	peer := &capturePeer{}
	newcomer := &participant{rec: store.Participant{ID: "newcomer"}, conn: peer}
	m.participants["newcomer"] = newcomer
	m.order = append(m.order, "newcomer")
	frame, cerr := m.joinResponse(newcomer, "token")
	if cerr != nil {
		t.Fatal(cerr)
	}
	m.sendJoinFrame(newcomer, frame)

	if len(peer.frames) != 1 {
		t.Fatalf("%d queued writes, want 1", len(peer.frames))
	}
	r := bytes.NewReader(peer.frames[0])
	seen, mutes := map[string]bool{}, 0
	var first *pb.JoinResponse
	for {
		payload, err := webtransport.ReadFrame(r, nil)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		msg, err := webtransport.DecodeServerMessage(payload)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case msg.GetJoinResponse() != nil:
			first = msg.GetJoinResponse()
			for _, p := range first.ExistingParticipants {
				seen[p.ParticipantId] = true
			}
		case msg.GetParticipantJoined() != nil:
			if first == nil {
				t.Fatal("ParticipantJoined before the JoinResponse")
			}
			seen[msg.GetParticipantJoined().Participant.ParticipantId] = true
		case msg.GetParticipantMuteUpdate() != nil:
			mutes++
		}
	}
	if first == nil || len(first.ExistingParticipants) == n {
		t.Fatalf("JoinResponse not split: %v", first != nil)
	}
	if len(seen) != n || seen["newcomer"] {
		t.Fatalf("newcomer learned of %d participants, want %d others", len(seen), n)
	}
	if mutes != n/2 {
		t.Fatalf("%d mute updates, want %d", mutes, n/2)
	}
}

// Once an op is queued, do waits for it even when its context ends: a join
// whose caller gave up would leave a participant no session goroutine
// serves (seen under load as a client that closed right after joining and
// was never removed).
func TestDoWaitsForAQueuedOp(t *testing.T) {
	m := newMeeting(context.Background(), newFakeDeps(t).deps(), store.Meeting{ID: "m"})
	go m.run()
	defer m.cancel()
	holding, hold := make(chan struct{}), make(chan struct{})
	if err := m.post(context.Background(), func() { close(holding); <-hold }); err != nil {
		t.Fatal(err)
	}
	<-holding // the meeting is busy: the next op waits in the mailbox
	ctx, cancel := context.WithCancel(context.Background())
	ran := false
	result := make(chan error, 1)
	go func() { result <- m.do(ctx, func() { ran = true }) }()
	for len(m.mailbox) == 0 { // until do has queued its op
		runtime.Gosched()
	}
	cancel()
	close(hold)
	if err := <-result; err != nil || !ran {
		t.Fatalf("do returned %v with the op run: %v; want nil after it ran", err, ran)
	}
}
