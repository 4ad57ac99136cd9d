package appliance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// memStore is an in-memory meetingStore whose writes can be made to fail.
type memStore struct {
	mu           sync.Mutex
	fail         error // returned by every write while set
	failSession  error // returned by PutSession while set
	deletes      int   // DeleteMeeting calls
	puts         int   // successful writes
	participants map[string]store.Participant
	bindings     map[string]store.Binding
	nonces       map[string]bool
	meetings     map[string]store.Meeting
}

func newMemStore() *memStore {
	return &memStore{participants: map[string]store.Participant{}, bindings: map[string]store.Binding{}, nonces: map[string]bool{}, meetings: map[string]store.Meeting{}}
}

func (s *memStore) setFail(err error)      { s.mu.Lock(); s.fail = err; s.mu.Unlock() }
func (s *memStore) failSessions(err error) { s.mu.Lock(); s.failSession = err; s.mu.Unlock() }

func (s *memStore) deleteTries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deletes
}

func (s *memStore) write(fn func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	fn()
	s.puts++
	return nil
}

func (s *memStore) writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.puts
}

func (s *memStore) PutMeeting(gen uint64, m store.Meeting) error {
	return s.write(func() { s.meetings[m.ID] = m })
}

func (s *memStore) PutSession(_ string, _ uint64, p store.Participant, b store.Binding) error {
	s.mu.Lock()
	err := s.failSession
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.write(func() { s.participants[p.ID] = p; s.bindings[b.CorrelationID] = b })
}

func (s *memStore) PutParticipant(_ string, _ uint64, p store.Participant) error {
	return s.write(func() { s.participants[p.ID] = p })
}

func (s *memStore) DeleteSession(_ string, _ uint64, pid, correlationID string) error {
	return s.write(func() { delete(s.participants, pid); delete(s.bindings, correlationID) })
}

func (s *memStore) DeleteMeeting(id string, _ uint64) error {
	s.mu.Lock()
	s.deletes++
	s.mu.Unlock()
	return s.write(func() { delete(s.meetings, id) })
}

func (s *memStore) ConsumeNonce(_, nonce string, _ time.Duration) error {
	var used bool
	err := s.write(func() { used = s.nonces[nonce]; s.nonces[nonce] = true })
	if err == nil && used {
		return store.ErrNonceUsed
	}
	return err
}

func (s *memStore) participant(id string) (store.Participant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.participants[id]
	return p, ok
}

// fakeDeps is a meeting's surroundings made of fakes.
type fakeDeps struct {
	store   *memStore
	metrics *countingSink
	seats   seatCounter
	now     time.Time
	grace   time.Duration
	empty   time.Duration
	stops   chan bool // receives ended for every stop
	binder  *binder
}

func newFakeDeps(t testing.TB) *fakeDeps {
	b, err := newBinder(bytes.Repeat([]byte{1}, minMasterSecret))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDeps{store: newMemStore(), metrics: &countingSink{}, now: time.Unix(1_800_000_000, 0), grace: time.Hour, empty: time.Hour, stops: make(chan bool, 1), binder: b}
	f.seats.max = 100
	return f
}

func (f *fakeDeps) deps() *meetingDeps {
	return &meetingDeps{
		store: f.store, binder: f.binder, metrics: f.metrics, seats: &f.seats,
		log: slog.New(slog.DiscardHandler), now: func() time.Time { return f.now }, grace: f.grace, empty: f.empty,
		draining: func() bool { return false },
		stopped:  func(_ *meeting, ended bool) { f.stops <- ended },
	}
}

// recPeer records the server messages queued for one participant.
type recPeer struct {
	id     uint64
	msgs   []*pb.ServerMessage
	closed bool
}

func (p *recPeer) ID() uint64 { return p.id }
func (p *recPeer) Send(m *pb.ServerMessage) error {
	p.msgs = append(p.msgs, m)
	return nil
}
func (p *recPeer) SendFrame(f webtransport.Frame) error {
	r := bytes.NewReader(f)
	for {
		payload, err := webtransport.ReadFrame(r, nil)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		m, err := webtransport.DecodeServerMessage(payload)
		if err != nil {
			return err
		}
		p.msgs = append(p.msgs, m)
	}
}
func (p *recPeer) Close(uint32, string) { p.closed = true }

func (p *recPeer) last() *pb.ServerMessage {
	if len(p.msgs) == 0 {
		return nil
	}
	return p.msgs[len(p.msgs)-1]
}

func claims(sub, role string) *auth.JoinClaims {
	return &auth.JoinClaims{Subject: sub, Role: role, MeetingID: "m"}
}

// A meeting runs without a controller: its store, binder, metrics, seats and
// clock are the small interfaces of meetingDeps. The ops here are called as
// its goroutine would call them.
func TestMeetingAlone(t *testing.T) {
	f := newFakeDeps(t)
	m := newMeeting(context.Background(), f.deps(), store.Meeting{ID: "m", Generation: 1})
	alice, bob := &recPeer{id: 1}, &recPeer{id: 2}
	aliceID, cerr := m.join(joinRequest{claims: claims("alice", "host"), name: "Alice", conn: alice})
	if cerr != nil {
		t.Fatal(cerr)
	}
	bobID, cerr := m.join(joinRequest{claims: claims("bob", "participant"), name: "Bob", conn: bob})
	if cerr != nil {
		t.Fatal(cerr)
	}
	if got := alice.last().GetParticipantJoined().GetParticipant().GetParticipantId(); got != bobID {
		t.Fatalf("alice's last message %v, want bob joined", alice.last())
	}
	if f.seats.count() != 2 {
		t.Fatalf("%d seats taken, want 2", f.seats.count())
	}

	// A participant may not host-mute; a host may, and it is stored.
	if cerr := m.hostMute(bobID, &pb.HostMuteRequest{ParticipantId: aliceID, AudioMuted: true}); cerr == nil || cerr.code != pb.ErrorCode_FORBIDDEN {
		t.Fatalf("participant's host-mute: %v, want FORBIDDEN", cerr)
	}
	if cerr := m.hostMute(aliceID, &pb.HostMuteRequest{ParticipantId: bobID, AudioMuted: true}); cerr != nil {
		t.Fatal(cerr)
	}
	if p, _ := f.store.participant(bobID); !p.AudioHostMuted || p.HostMutedBy != aliceID {
		t.Fatalf("stored bob %+v, want host-muted by alice", p)
	}

	// A failed write changes nothing and tells nobody.
	f.store.setFail(errors.New("disk on fire"))
	before := len(alice.msgs)
	if cerr := m.unmuteResponse(aliceID, &pb.UnmuteResponse{ParticipantId: bobID, AudioApproved: true}); cerr == nil || cerr.code != pb.ErrorCode_INTERNAL_ERROR {
		t.Fatalf("unmute with a failing store: %v, want INTERNAL_ERROR", cerr)
	}
	if len(alice.msgs) != before {
		t.Fatalf("alice was told %v after a failed write", alice.last())
	}
	f.store.setFail(nil)

	// The last leave ends the meeting, frees the seats and says it ended.
	m.leave(bobID, bob.ID(), pb.LeaveReason_VOLUNTARY)
	m.leave(aliceID, alice.ID(), pb.LeaveReason_VOLUNTARY)
	if ended := <-f.stops; !ended {
		t.Fatal("the meeting stopped without ending")
	}
	if !m.stopped || f.seats.count() != 0 {
		t.Fatalf("stopped %v, %d seats taken; want stopped and 0", m.stopped, f.seats.count())
	}
}
