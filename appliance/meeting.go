package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/edgemc/edgemc/gc/tracectx"
	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// Session-binding timings from the wire contract.
const (
	bindingTTL     = 30 * time.Second
	bindingSkew    = 5 * time.Second
	nonceKeep      = 35 * time.Second
	meetingMailbox = 1024
)

// meetingStore is the durable state a meeting writes, fenced by its
// generation; *store.DB satisfies it.
type meetingStore interface {
	PutMeeting(gen uint64, m store.Meeting) error
	PutSession(meetingID string, gen uint64, p store.Participant, b store.Binding) error
	PutParticipant(meetingID string, gen uint64, p store.Participant) error
	DeleteSession(meetingID string, gen uint64, participantID, correlationID string) error
	DeleteMeeting(meetingID string, gen uint64) error
	ConsumeNonce(meetingID, nonce string, ttl time.Duration) error
}

// bindingSigner gives each meeting the signer of its session-binding
// tokens; *binder satisfies it.
type bindingSigner interface {
	forMeeting(meetingID string) meetingBinder
}

// meetingMetrics is what a meeting reports; *web.Metrics satisfies it.
type meetingMetrics interface {
	PanicRecovered(actorType string)
	FencedOut()
	NonceReplayRefused()
	Reconnection(outcome string)
}

// seats counts participants over all meetings against the appliance's
// maximum; the controller owns it.
type seats interface {
	// take reserves one place; false when the appliance is full.
	take() bool
	// add counts n more participants (negative n frees places).
	add(n int)
}

// meetingDeps is everything a meeting needs from outside itself. The
// controller builds one for all its meetings; a test can build one of fakes.
type meetingDeps struct {
	store   meetingStore
	binder  bindingSigner
	metrics meetingMetrics
	seats   seats
	log     *slog.Logger
	now     func() time.Time
	grace   time.Duration // how long a disconnected participant keeps its place
	empty   time.Duration // how long a meeting with nobody in it is kept; 0 keeps it
	perSub  int           // participants one token subject may hold; 0: no limit
	// draining reports whether the appliance is draining (no grace expires then).
	draining func() bool
	// stopped is called once, on the meeting goroutine, when the meeting is
	// no longer held here: ended is true when it ended (the GC is to be
	// told), false when it was aborted (a panic, or fenced out).
	stopped func(m *meeting, ended bool)
	// mh registers meetings with their media handlers; nil when edgemc has
	// no service token to call them with.
	mh mhRegistrar
}

// participant is a roster entry; only its meeting's goroutine touches it.
type participant struct {
	rec     store.Participant
	conn    peer // nil while disconnected
	binding store.Binding
	grace   *time.Timer
	// unmuteAsked is what the participant has asked the hosts to lift and
	// no host has answered yet; a repeated request is not forwarded again.
	unmuteAsked struct{ audio, video bool }
}

// meeting is the actor that owns one meeting's state. Its goroutine (run) is
// the only code that reads or writes the fields below snapshot; everyone
// else sends it functions through the mailbox (post, do).
type meeting struct {
	id        string
	gen       uint64
	deps      *meetingDeps
	log       *slog.Logger
	createdAt time.Time
	ctx       context.Context
	cancel    context.CancelFunc
	mailbox   chan func()
	done      chan struct{}
	snapshot  atomic.Pointer[MeetingSnapshot]
	binder    meetingBinder

	assignments  []store.Assignment
	participants map[string]*participant
	order        []string    // participant ids in join order
	emptyTimer   *time.Timer // armed while nobody is in the meeting
	stopped      bool

	// Media coordination (media.go). media is synchronised on its own; the
	// rest belongs to the meeting goroutine.
	media     *mediaState
	mhLease   mhLease            // the handlers' connections, from the first registration
	mhRelease func()             // gives mhLease back
	mhCancel  context.CancelFunc // stops the registration running
	recovered bool               // reloaded after a restart; nobody is back yet
	// redirectTo is set during a drain: every participant is told to
	// reconnect there (redirect.go).
	redirectTo string
	// trace is the trace of the op running, if it has one (trace.go).
	trace tracectx.Trace
}

// MeetingSnapshot is a copy of a meeting's state for status reads.
type MeetingSnapshot struct {
	ID           string
	Generation   uint64
	CreatedAt    time.Time
	Assignments  []store.Assignment
	Participants []store.Participant

	media *mediaState // read live by status
}

// newMeeting returns the actor for st; its goroutine (run) is started by the
// caller. parent bounds its life.
func newMeeting(parent context.Context, deps *meetingDeps, st store.Meeting) *meeting {
	ctx, cancel := context.WithCancel(parent)
	m := &meeting{
		id:           st.ID,
		gen:          st.Generation,
		deps:         deps,
		log:          deps.log.With("meeting", st.ID),
		createdAt:    st.CreatedAt,
		ctx:          ctx,
		cancel:       cancel,
		mailbox:      make(chan func(), meetingMailbox),
		done:         make(chan struct{}),
		assignments:  st.Assignments,
		participants: map[string]*participant{},
		binder:       deps.binder.forMeeting(st.ID),
		media:        newMediaState(st.Assignments),
	}
	m.publish()
	return m
}

// errMeetingGone is returned to callers whose message reached a meeting that
// has ended or stopped.
var errMeetingGone = errors.New("meeting is no longer held")

// post queues fn for the meeting goroutine without waiting for it to run.
func (m *meeting) post(ctx context.Context, fn func()) error {
	select {
	case m.mailbox <- fn:
		return nil
	case <-m.done:
		return errMeetingGone
	case <-ctx.Done():
		return ctx.Err()
	}
}

// do runs fn on the meeting goroutine and waits until it has run. ctx bounds
// only the wait for room in the mailbox: once queued, fn will run, and its
// caller must learn that it did (a join whose caller gave up would leave a
// participant nobody serves).
//
// A trace in ctx is the op's trace: its log records and answers carry it.
func (m *meeting) do(ctx context.Context, fn func()) error {
	ran := make(chan struct{})
	if err := m.post(ctx, func() { m.traced(ctx, fn); close(ran) }); err != nil {
		return err
	}
	select {
	case <-ran:
		return nil
	case <-m.done:
		// fn may have been the op that stopped the meeting.
		select {
		case <-ran:
			return nil
		default:
			return errMeetingGone
		}
	}
}

func (m *meeting) run() {
	defer close(m.done)
	if len(m.participants) == 0 {
		m.watchEmpty()
	}
	for {
		select {
		case fn := <-m.mailbox:
			if !m.safely(fn) || m.stopped {
				return
			}
		case <-m.ctx.Done():
			// Finish what was already queued (disconnects on drain) and stop.
			for {
				select {
				case fn := <-m.mailbox:
					if !m.safely(fn) {
						return
					}
				default:
					m.stopTimers()
					return
				}
			}
		}
	}
}

// safely runs one op; a panic is recovered, counted and logged, and ends the
// meeting's sessions with an error instead of crashing the process.
func (m *meeting) safely(fn func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			m.deps.metrics.PanicRecovered("meeting")
			m.log.Error("meeting panicked; closing its sessions", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			m.abort(pb.ErrorCode_INTERNAL_ERROR, "internal error")
			ok = false
		}
	}()
	fn()
	return true
}

// abort stops the meeting without removing its stored state: used on a
// panic or when another owner has fenced this one out.
func (m *meeting) abort(code pb.ErrorCode, msg string) {
	if m.stopped {
		return
	}
	m.stopped = true
	m.stopTimers()
	for _, p := range m.participants {
		if p.conn != nil {
			sendError(p.conn, code, msg)
			p.conn.Close(closeError, msg)
		}
	}
	m.deps.seats.add(-len(m.participants))
	m.deps.stopped(m, false)
	m.cancel()
}

// end removes the meeting: its stored state (fenced), its place in the
// controller, and tells the GC. If the store refuses, the meeting stays (empty)
// and tries again after the empty-meeting timeout.
func (m *meeting) end() {
	if err := m.deps.store.DeleteMeeting(m.id, m.gen); err != nil && !errors.Is(err, store.ErrNotFound) {
		m.storeErr("delete meeting", err)
		if !m.stopped {
			m.watchEmpty()
		}
		return
	}
	m.stopped = true
	m.deps.stopped(m, true)
	m.cancel()
	m.media.clear()
	m.log.Info("meeting ended")
}

// watchEmpty (re)arms the timer that ends the meeting if it is still empty
// when it fires: a meeting nobody joins, or one whose end failed, does not
// hold its capacity forever.
func (m *meeting) watchEmpty() {
	if m.emptyTimer != nil {
		m.emptyTimer.Stop()
	}
	if m.deps.empty <= 0 {
		return
	}
	m.emptyTimer = time.AfterFunc(m.deps.empty, func() {
		m.post(m.ctx, func() {
			if len(m.participants) > 0 || m.stopped || m.deps.draining() {
				return
			}
			m.log.Info("meeting empty; ending it", "empty_for", m.deps.empty.String())
			m.end()
		})
	})
}

func (m *meeting) stopTimers() {
	if m.emptyTimer != nil {
		m.emptyTimer.Stop()
	}
	for _, p := range m.participants {
		if p.grace != nil {
			p.grace.Stop()
		}
	}
}

// storeErr handles a failed store write: a fenced-out meeting stops; any
// other error is reported to the caller as INTERNAL_ERROR.
func (m *meeting) storeErr(op string, err error) *codedError {
	if errors.Is(err, store.ErrFencedOut) {
		m.deps.metrics.FencedOut()
		m.log.Warn("meeting fenced out by a newer owner; stopping it", "op", op, "generation", m.gen)
		m.abort(pb.ErrorCode_INTERNAL_ERROR, "internal error")
	} else {
		m.log.Error("store write failed", "op", op, "err", err)
	}
	return &codedError{pb.ErrorCode_INTERNAL_ERROR, "internal error"}
}

// reassign takes the GC's new media-handler list for the meeting, once it is
// stored; the store's error otherwise.
func (m *meeting) reassign(assignments []store.Assignment, gcID string) error {
	st := store.Meeting{ID: m.id, Generation: m.gen, Assignments: assignments, AssignedBy: gcID, CreatedAt: m.createdAt}
	if err := m.deps.store.PutMeeting(m.gen, st); err != nil {
		m.storeErr("put meeting", err)
		return err
	}
	changed := !slices.Equal(m.assignments, assignments)
	m.assignments = assignments
	if changed {
		// The new handlers have not been told; the old ones are no concern.
		m.media.setHandlers(assignments)
		m.dropMHs()
		if len(m.participants) > 0 {
			m.registerMHs("media handlers reassigned")
		}
	}
	m.publish()
	return nil
}

// publish refreshes the snapshot that status reads use.
func (m *meeting) publish() {
	s := &MeetingSnapshot{ID: m.id, Generation: m.gen, CreatedAt: m.createdAt, Assignments: m.assignments, media: m.media}
	s.Participants = make([]store.Participant, 0, len(m.order))
	for _, id := range m.order {
		s.Participants = append(s.Participants, m.participants[id].rec)
	}
	m.snapshot.Store(s)
}

// broadcast encodes msg once and queues it for every connected participant
// except skip. A full queue drops that participant, never blocks the meeting.
func (m *meeting) broadcast(msg *pb.ServerMessage, skip string) {
	frame, err := webtransport.EncodeServerMessage(m.stamp(msg))
	if err != nil {
		m.log.Error("encode broadcast", "err", err)
		return
	}
	for _, id := range m.order {
		if p := m.participants[id]; id != skip && p.conn != nil {
			p.conn.SendFrame(frame)
		}
	}
}

func (p *participant) wire() *pb.Participant {
	return &pb.Participant{ParticipantId: p.rec.ID, Name: p.rec.Name, JoinedAt: uint64(p.rec.JoinedAt.UnixMilli())}
}
