package appliance

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// otherParticipant in a fuzzed message's participant_id stands for the
// anchor participant's real id, so that host actions reach a real target.
const otherParticipant = "$other"

// FuzzDispatch runs a host's signaling session on a live controller (real
// store, meeting goroutine, binder): a valid join, then the frames of the
// input as a client's stream carries them, decoded as the server decodes
// them. No input may panic a meeting, wedge it, or disturb the other
// participant.
func FuzzDispatch(f *testing.F) {
	frames := func(msgs ...*pb.ClientMessage) []byte {
		var b []byte
		for _, m := range msgs {
			var err error
			if b, err = webtransport.AppendFrame(b, m); err != nil {
				f.Fatal(err)
			}
		}
		return b
	}
	mute := &pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: true, VideoMuted: true}}}
	hostMute := &pb.ClientMessage{Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{ParticipantId: otherParticipant, AudioMuted: true}}}
	unmuteAsk := &pb.ClientMessage{Message: &pb.ClientMessage_UnmuteRequest{UnmuteRequest: &pb.UnmuteRequest{RequestAudio: true, RequestVideo: true}}}
	unmuteOK := &pb.ClientMessage{Message: &pb.ClientMessage_UnmuteResponse{UnmuteResponse: &pb.UnmuteResponse{ParticipantId: otherParticipant, AudioApproved: true}}}
	rejoin := &pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: &pb.JoinRequest{MeetingId: "m-fuzz", CorrelationId: "c", BindingToken: "00"}}}
	publish := &pb.ClientMessage{Message: &pb.ClientMessage_PublishStream{PublishStream: &pb.PublishStream{StreamId: "s", StreamType: pb.StreamType(99)}}}
	f.Add(frames(mute, hostMute, unmuteOK))
	f.Add(frames(hostMute, unmuteAsk, unmuteOK, mute))
	f.Add(frames(rejoin, publish, &pb.ClientMessage{}, &pb.ClientMessage{TraceParent: "00-x"}))
	f.Add(frames(&pb.ClientMessage{Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{}}}))
	f.Add([]byte{0, 0, 0, 3, 0xff, 0xff, 0xff})               // undecodable, framing intact
	f.Add(binary.BigEndian.AppendUint32(frames(mute), 1<<20)) // oversized frame
	f.Add(append(frames(mute), 0, 0, 0, 9, 1))                // truncated frame
	f.Add(append(frames(unmuteAsk), 0, 0, 0, 2, 0x3a, 0x00))  // mute_request field, empty

	fx := newDispatchFixture(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		s := fx.session(data)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		fx.ctrl.serve(ctx, s)
		if ctx.Err() != nil {
			t.Fatal("the session did not end: a meeting is wedged")
		}
		fx.check(t)
	})
}

// dispatchFixture is one controller holding meeting m-fuzz, with an anchor
// participant that stays joined for the whole run.
type dispatchFixture struct {
	ctrl    *Controller
	metrics *countingSink
	anchor  *fakeSession
	ids     atomic.Uint64
}

func newDispatchFixture(f *testing.F) *dispatchFixture {
	db, err := store.Open(f.TempDir(), store.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	b, err := newBinder(bytes.Repeat([]byte{7}, minMasterSecret))
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fx := &dispatchFixture{metrics: &countingSink{}}
	fx.ctrl = newController(controllerConfig{MaxMeetings: 10, MaxParticipants: 1 << 20, Grace: time.Millisecond},
		slog.New(slog.DiscardHandler), db, fakeVerifier{}, b, fx.metrics)
	if _, err := fx.ctrl.AssignMeeting(ctx, "m-fuzz", nil, "gc-fuzz"); err != nil {
		f.Fatal(err)
	}
	// The anchor joins and then waits, reading nothing, until the run ends.
	fx.anchor = fx.newSession(joinMsg("m-fuzz", "anchor", "anchor"))
	served := make(chan struct{})
	go func() { defer close(served); fx.ctrl.serve(ctx, fx.anchor) }()
	select {
	case <-fx.anchor.joined:
	case <-served:
		f.Fatal("the anchor participant could not join")
	}
	f.Cleanup(func() {
		cancel()
		<-served
		fx.ctrl.Stop(context.Background())
	})
	return fx
}

// session is a host's session: a valid join, then data's frames.
func (fx *dispatchFixture) session(data []byte) *fakeSession {
	s := fx.newSession(joinMsg("m-fuzz", "host", "fuzzing host"))
	r := bytes.NewReader(data)
	for {
		payload, err := webtransport.ReadFrame(r, nil)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF // a truncated frame ends the stream as a clean close would
		}
		if err != nil {
			s.end = err
			return s
		}
		m, err := webtransport.DecodeClientMessage(payload)
		if m != nil {
			aim(m, fx.anchor.participantID())
		}
		s.msgs = append(s.msgs, inbound{msg: m, err: err})
	}
}

// aim replaces otherParticipant with the anchor's id.
func aim(m *pb.ClientMessage, id string) {
	if x := m.GetHostMuteRequest(); x != nil && x.ParticipantId == otherParticipant {
		x.ParticipantId = id
	}
	if x := m.GetUnmuteResponse(); x != nil && x.ParticipantId == otherParticipant {
		x.ParticipantId = id
	}
}

// check asserts that no meeting panicked and that m-fuzz still answers,
// with the anchor in it and connected.
func (fx *dispatchFixture) check(t *testing.T) {
	t.Helper()
	if n := fx.metrics.panics.Load(); n > 0 {
		t.Fatalf("%d meeting panics recovered", n)
	}
	m := fx.ctrl.lookup("m-fuzz")
	if m == nil {
		t.Fatal("meeting m-fuzz is gone")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	anchorOK := false
	if err := m.do(ctx, func() {
		p := m.participants[fx.anchor.participantID()]
		anchorOK = p != nil && p.conn != nil
	}); err != nil {
		t.Fatalf("meeting m-fuzz does not answer: %v", err)
	}
	if !anchorOK {
		t.Fatal("the anchor participant was removed or disconnected")
	}
}

func (fx *dispatchFixture) newSession(join *pb.ClientMessage) *fakeSession {
	return &fakeSession{id: fx.ids.Add(1), msgs: []inbound{{msg: join}}, joined: make(chan struct{}), closed: make(chan struct{})}
}

type inbound struct {
	msg *pb.ClientMessage
	err error
}

// fakeSession is a client session without a network: Next returns msgs in
// order and then end (the anchor, with end nil, waits until the run ends);
// what the server sends is dropped, except the JoinResponse's id.
type fakeSession struct {
	id     uint64
	msgs   []inbound
	end    error
	next   int
	joined chan struct{}

	mu        sync.Mutex
	pid       string
	closeOnce sync.Once
	closed    chan struct{}
}

func (s *fakeSession) ID() uint64 { return s.id }

func (s *fakeSession) Send(m *pb.ServerMessage) error {
	if r := m.GetJoinResponse(); r != nil {
		s.mu.Lock()
		first := s.pid == ""
		s.pid = r.ParticipantId
		s.mu.Unlock()
		if first {
			close(s.joined)
		}
	}
	return nil
}

// SendFrame looks at the first message of f (a JoinResponse comes first in
// the write that carries it).
func (s *fakeSession) SendFrame(f webtransport.Frame) error {
	payload, err := webtransport.ReadFrame(bytes.NewReader(f), nil)
	if err != nil {
		return err
	}
	m, err := webtransport.DecodeServerMessage(payload)
	if err != nil {
		return err
	}
	return s.Send(m)
}

func (s *fakeSession) Close(uint32, string) { s.closeOnce.Do(func() { close(s.closed) }) }

func (s *fakeSession) Joined() {}

func (s *fakeSession) Next(ctx context.Context) (*pb.ClientMessage, error) {
	select {
	case <-s.closed:
		return nil, webtransport.ErrSessionClosed
	default:
	}
	if s.next < len(s.msgs) {
		in := s.msgs[s.next]
		s.next++
		return in.msg, in.err
	}
	if s.end != nil {
		return nil, s.end
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closed:
		return nil, webtransport.ErrSessionClosed
	}
}

func (s *fakeSession) participantID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// fakeVerifier accepts any token as a meeting token for m-fuzz of a user
// named by the token; "host" is a host.
type fakeVerifier struct{}

func (fakeVerifier) VerifyJoin(_ context.Context, token string) (*auth.JoinClaims, error) {
	role := "participant"
	if token == "host" {
		role = "host"
	}
	return &auth.JoinClaims{Subject: token, TokenType: "meeting", MeetingID: "m-fuzz", Role: role}, nil
}

// countingSink is a metricsSink that counts recovered panics.
type countingSink struct{ panics atomic.Int64 }

func (s *countingSink) PanicRecovered(string)        { s.panics.Add(1) }
func (*countingSink) FencedOut()                     {}
func (*countingSink) NonceReplayRefused()            {}
func (*countingSink) Reconnection(string)            {}
func (*countingSink) JoinDone(time.Duration, string) {}
func (*countingSink) RateLimited(string)             {}
