package appliance

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/edgemc/edgemc/gc/auth"
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

// peer is one participant's open session, as a meeting sees it.
type peer interface {
	ID() uint64
	Send(*pb.ServerMessage) error
	SendFrame(webtransport.Frame) error
	Close(code uint32, reason string)
}

// participant is a roster entry; only its meeting's goroutine touches it.
type participant struct {
	rec     store.Participant
	conn    peer // nil while disconnected
	binding store.Binding
	grace   *time.Timer
}

// meeting is the actor that owns one meeting's state. Its goroutine (run) is
// the only code that reads or writes the fields below mailbox; everyone else
// sends it functions through the mailbox.
type meeting struct {
	id        string
	gen       uint64
	c         *Controller
	log       *slog.Logger
	createdAt time.Time
	ctx       context.Context
	cancel    context.CancelFunc
	mailbox   chan func()
	done      chan struct{}
	snapshot  atomic.Pointer[MeetingSnapshot]

	assignments  []store.Assignment
	participants map[string]*participant
	order        []string // participant ids in join order
	stopped      bool
}

// MeetingSnapshot is a copy of a meeting's state for status reads.
type MeetingSnapshot struct {
	ID           string
	Generation   uint64
	CreatedAt    time.Time
	Assignments  []store.Assignment
	Participants []store.Participant
}

func newMeeting(c *Controller, st store.Meeting) *meeting {
	ctx, cancel := context.WithCancel(c.ctx)
	m := &meeting{
		id:           st.ID,
		gen:          st.Generation,
		c:            c,
		log:          c.log.With("meeting", st.ID),
		createdAt:    st.CreatedAt,
		ctx:          ctx,
		cancel:       cancel,
		mailbox:      make(chan func(), meetingMailbox),
		done:         make(chan struct{}),
		assignments:  st.Assignments,
		participants: map[string]*participant{},
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
func (m *meeting) do(ctx context.Context, fn func()) error {
	ran := make(chan struct{})
	if err := m.post(ctx, func() { fn(); close(ran) }); err != nil {
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
	for {
		select {
		case fn := <-m.mailbox:
			m.c.metrics.MailboxDepth("meeting", len(m.mailbox))
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
			m.c.metrics.PanicRecovered()
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
	m.c.participants.Add(-int64(len(m.participants)))
	m.c.forget(m)
	m.cancel()
}

func (m *meeting) stopTimers() {
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
		m.c.metrics.FencedOut()
		m.log.Warn("meeting fenced out by a newer owner; stopping it", "op", op, "generation", m.gen)
		m.abort(pb.ErrorCode_INTERNAL_ERROR, "internal error")
	} else {
		m.log.Error("store write failed", "op", op, "err", err)
	}
	return &codedError{pb.ErrorCode_INTERNAL_ERROR, "internal error"}
}

// publish refreshes the snapshot that status reads use.
func (m *meeting) publish() {
	s := &MeetingSnapshot{ID: m.id, Generation: m.gen, CreatedAt: m.createdAt, Assignments: m.assignments}
	s.Participants = make([]store.Participant, 0, len(m.order))
	for _, id := range m.order {
		s.Participants = append(s.Participants, m.participants[id].rec)
	}
	m.snapshot.Store(s)
}

// joinRequest is what a session brings to its meeting.
type joinRequest struct {
	claims        *auth.JoinClaims
	name          string
	correlationID string
	bindingToken  string
	conn          peer
}

// join admits a participant (or recovers one from a valid binding) and sends
// the JoinResponse on conn. It runs on the meeting goroutine.
func (m *meeting) join(req joinRequest) (string, *codedError) {
	if m.stopped {
		return "", &codedError{pb.ErrorCode_NOT_FOUND, "meeting not found"}
	}
	if req.correlationID != "" || req.bindingToken != "" {
		p, reason := m.recoverable(req)
		if p != nil {
			return p.rec.ID, m.reattach(p, req.conn)
		}
		m.c.metrics.Reconnection(reason)
		m.log.Info("reconnection refused; joining as a new participant", "reason", reason)
	}
	if !m.c.reserveParticipant() {
		return "", &codedError{pb.ErrorCode_CAPACITY_EXCEEDED, "participant capacity reached"}
	}
	now := m.c.now()
	p := &participant{
		rec: store.Participant{
			ID:        newID(),
			UserID:    req.claims.Subject,
			Name:      req.name,
			Role:      req.claims.Role,
			JoinedAt:  now,
			Connected: true,
		},
		conn: req.conn,
	}
	p.binding = store.Binding{CorrelationID: newID(), ParticipantID: p.rec.ID, UserID: p.rec.UserID}
	token := m.rebind(p)
	if err := m.c.db.PutSession(m.id, m.gen, p.rec, p.binding); err != nil {
		m.c.participants.Add(-1)
		return "", m.storeErr("put session", err)
	}
	m.participants[p.rec.ID] = p
	m.order = append(m.order, p.rec.ID)
	m.publish()
	m.sendJoinResponse(p, token)
	m.broadcast(&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantJoined{
		ParticipantJoined: &pb.ParticipantJoined{Participant: p.wire()},
	}}, p.rec.ID)
	m.log.Info("participant joined", "participant", p.rec.ID, "role", p.rec.Role)
	return p.rec.ID, nil
}

// rebind gives p a fresh nonce and returns the binding token for it.
func (m *meeting) rebind(p *participant) string {
	token, nonce := m.c.binder.issue(m.id, p.binding.CorrelationID, p.rec.ID)
	p.binding.Nonce = nonce
	p.binding.ExpiresAt = time.Time{} // live while connected; set on disconnect
	return token
}

// recoverable checks a reconnection attempt; it returns the participant to
// recover, or nil and the reason (for metrics and logs; never the token).
func (m *meeting) recoverable(req joinRequest) (*participant, string) {
	var p *participant
	for _, q := range m.participants {
		if q.binding.CorrelationID == req.correlationID {
			p = q
			break
		}
	}
	switch {
	case p == nil:
		return nil, "unknown_binding"
	case !m.c.binder.valid(m.id, req.correlationID, p.rec.ID, p.binding.Nonce, req.bindingToken):
		return nil, "bad_token"
	case !p.binding.ExpiresAt.IsZero() && m.c.now().After(p.binding.ExpiresAt.Add(bindingSkew)):
		return nil, "expired"
	case req.claims.Subject != p.rec.UserID:
		return nil, "other_user"
	}
	if err := m.c.db.ConsumeNonce(m.id, p.binding.Nonce, nonceKeep); err != nil {
		if errors.Is(err, store.ErrNonceUsed) {
			m.c.metrics.NonceReplayRefused()
			return nil, "replayed"
		}
		m.log.Error("nonce check failed", "err", err)
		return nil, "store_error"
	}
	return p, ""
}

// reattach moves a recovered participant onto a new session.
func (m *meeting) reattach(p *participant, conn peer) *codedError {
	if p.grace != nil {
		p.grace.Stop()
		p.grace = nil
	}
	old := p.conn
	p.conn = conn
	p.rec.Connected = true
	p.rec.DisconnectedSince = time.Time{}
	token := m.rebind(p)
	if err := m.c.db.PutSession(m.id, m.gen, p.rec, p.binding); err != nil {
		return m.storeErr("put session", err)
	}
	if old != nil {
		// The client came back before the server noticed the drop.
		old.Close(closeReplaced, "replaced by a newer session")
	}
	m.c.metrics.Reconnection("recovered")
	m.publish()
	m.sendJoinResponse(p, token)
	m.log.Info("participant reconnected", "participant", p.rec.ID)
	return nil
}

// sendJoinResponse sends the JoinResponse and the catch-up that follows it
// as one queued write: participants that do not fit in one frame come as
// ParticipantJoined, and the mute state of everyone muted as
// ParticipantMuteUpdate (the roster carries no mute state).
func (m *meeting) sendJoinResponse(p *participant, token string) {
	resp := &pb.JoinResponse{
		ParticipantId: p.rec.ID,
		UserId:        userNumber(p.rec.UserID),
		CorrelationId: p.binding.CorrelationID,
		BindingToken:  token,
	}
	for _, a := range m.assignments {
		resp.MediaServers = append(resp.MediaServers, &pb.MediaServerInfo{MediaHandlerUrl: a.WebTransportEndpoint})
	}
	var mutes []*pb.ServerMessage
	for _, id := range m.order {
		q := m.participants[id]
		if q != p {
			resp.ExistingParticipants = append(resp.ExistingParticipants, q.wire())
		}
		if q.muted() {
			mutes = append(mutes, q.muteUpdate())
		}
	}
	msg := &pb.ServerMessage{Message: &pb.ServerMessage_JoinResponse{JoinResponse: resp}}
	var overflow []*pb.Participant
	for proto.Size(msg) > webtransport.MaxFrameSize {
		n := len(resp.ExistingParticipants)
		k := max(1, n/8)
		overflow = slices.Concat(resp.ExistingParticipants[n-k:], overflow)
		resp.ExistingParticipants = resp.ExistingParticipants[:n-k]
	}
	buf, err := webtransport.AppendFrame(nil, msg)
	for _, q := range overflow {
		if err == nil {
			buf, err = webtransport.AppendFrame(buf, &pb.ServerMessage{Message: &pb.ServerMessage_ParticipantJoined{
				ParticipantJoined: &pb.ParticipantJoined{Participant: q},
			}})
		}
	}
	for _, u := range mutes {
		if err == nil {
			buf, err = webtransport.AppendFrame(buf, u)
		}
	}
	if err == nil {
		err = p.conn.SendFrame(webtransport.Frame(buf))
	}
	if err != nil {
		m.log.Warn("join response not delivered", "participant", p.rec.ID, "err", err)
	}
}

// broadcast encodes msg once and queues it for every connected participant
// except skip. A full queue drops that participant, never blocks the meeting.
func (m *meeting) broadcast(msg *pb.ServerMessage, skip string) {
	frame, err := webtransport.EncodeServerMessage(msg)
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

// leave removes a participant that left cleanly (or whose grace ran out).
func (m *meeting) leave(pid string, connID uint64, reason pb.LeaveReason) {
	p := m.participants[pid]
	if p == nil || (connID != 0 && (p.conn == nil || p.conn.ID() != connID)) {
		return
	}
	if p.grace != nil {
		p.grace.Stop()
	}
	if err := m.c.db.DeleteSession(m.id, m.gen, pid, p.binding.CorrelationID); err != nil {
		m.storeErr("delete session", err)
		return
	}
	delete(m.participants, pid)
	for i, id := range m.order {
		if id == pid {
			m.order = append(m.order[:i], m.order[i+1:]...)
			break
		}
	}
	m.c.participants.Add(-1)
	m.broadcast(&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantLeft{
		ParticipantLeft: &pb.ParticipantLeft{ParticipantId: pid, Reason: reason},
	}}, "")
	m.publish()
	m.log.Info("participant left", "participant", pid, "reason", reason.String())
	if len(m.participants) == 0 {
		m.end()
	}
}

// disconnected marks a participant whose session ended without a leave; the
// grace timer removes them unless they reconnect.
func (m *meeting) disconnected(pid string, connID uint64) {
	p := m.participants[pid]
	if p == nil || p.conn == nil || p.conn.ID() != connID {
		return
	}
	now := m.c.now()
	p.conn = nil
	p.rec.Connected = false
	p.rec.DisconnectedSince = now
	p.binding.ExpiresAt = now.Add(bindingTTL)
	if err := m.c.db.PutSession(m.id, m.gen, p.rec, p.binding); err != nil {
		m.storeErr("put session", err)
		return
	}
	m.startGrace(p)
	m.publish()
	m.log.Info("participant disconnected", "participant", pid)
}

func (m *meeting) startGrace(p *participant) {
	pid, since := p.rec.ID, p.rec.DisconnectedSince
	p.grace = time.AfterFunc(m.c.cfg.Grace, func() {
		m.post(m.ctx, func() {
			q := m.participants[pid]
			if q == nil || q.conn != nil || !q.rec.DisconnectedSince.Equal(since) || m.c.Draining() {
				return
			}
			m.leave(pid, 0, pb.LeaveReason_TIMEOUT)
		})
	})
}

// end removes the meeting: its stored state (fenced), its place in the
// controller, and tells the GC.
func (m *meeting) end() {
	if err := m.c.db.DeleteMeeting(m.id, m.gen); err != nil && !errors.Is(err, store.ErrNotFound) {
		m.storeErr("delete meeting", err)
		return
	}
	m.stopped = true
	m.c.forget(m)
	m.c.meetingEnded(m.id)
	m.cancel()
	m.log.Info("meeting ended")
}

func (m *meeting) selfMute(pid string, req *pb.MuteRequest) {
	p := m.participants[pid]
	if p == nil {
		return
	}
	p.rec.AudioSelfMuted, p.rec.VideoSelfMuted = req.AudioMuted, req.VideoMuted
	if err := m.c.db.PutParticipant(m.id, m.gen, p.rec); err != nil {
		m.storeErr("put participant", err)
		return
	}
	m.broadcast(p.muteUpdate(), "")
	m.publish()
}

func (m *meeting) hostMute(pid string, req *pb.HostMuteRequest) *codedError {
	host := m.participants[pid]
	if host == nil {
		return &codedError{pb.ErrorCode_NOT_FOUND, "participant not found"}
	}
	if host.rec.Role != "host" {
		return &codedError{pb.ErrorCode_FORBIDDEN, "only a host may mute others"}
	}
	p := m.participants[req.ParticipantId]
	if p == nil {
		return &codedError{pb.ErrorCode_NOT_FOUND, "participant not found"}
	}
	p.rec.AudioHostMuted, p.rec.VideoHostMuted = req.AudioMuted, req.VideoMuted
	p.rec.HostMutedBy = ""
	if req.AudioMuted || req.VideoMuted {
		p.rec.HostMutedBy = pid
	}
	if err := m.c.db.PutParticipant(m.id, m.gen, p.rec); err != nil {
		return m.storeErr("put participant", err)
	}
	m.broadcast(p.muteUpdate(), "")
	m.publish()
	return nil
}

// unmuteRequest forwards a host-muted participant's request to the hosts.
func (m *meeting) unmuteRequest(pid string, req *pb.UnmuteRequest) *codedError {
	p := m.participants[pid]
	if p == nil {
		return &codedError{pb.ErrorCode_NOT_FOUND, "participant not found"}
	}
	audio, video := req.RequestAudio && p.rec.AudioHostMuted, req.RequestVideo && p.rec.VideoHostMuted
	if !audio && !video {
		return &codedError{pb.ErrorCode_CONFLICT, "not host-muted"}
	}
	msg := &pb.ServerMessage{Message: &pb.ServerMessage_UnmuteRequest{UnmuteRequest: &pb.UnmuteRequest{RequestAudio: audio, RequestVideo: video}}}
	frame, err := webtransport.EncodeServerMessage(msg)
	if err != nil {
		return &codedError{pb.ErrorCode_INTERNAL_ERROR, "internal error"}
	}
	for _, q := range m.participants {
		if q.rec.Role == "host" && q.conn != nil && q != p {
			q.conn.SendFrame(frame)
		}
	}
	return nil
}

// unmuteResponse applies a host's answer and passes it to the participant.
func (m *meeting) unmuteResponse(pid string, resp *pb.UnmuteResponse) *codedError {
	host := m.participants[pid]
	if host == nil {
		return &codedError{pb.ErrorCode_NOT_FOUND, "participant not found"}
	}
	if host.rec.Role != "host" {
		return &codedError{pb.ErrorCode_FORBIDDEN, "only a host may answer unmute requests"}
	}
	p := m.participants[resp.ParticipantId]
	if p == nil {
		return &codedError{pb.ErrorCode_NOT_FOUND, "participant not found"}
	}
	changed := false
	if resp.AudioApproved && p.rec.AudioHostMuted {
		p.rec.AudioHostMuted, changed = false, true
	}
	if resp.VideoApproved && p.rec.VideoHostMuted {
		p.rec.VideoHostMuted, changed = false, true
	}
	if changed {
		if !p.rec.AudioHostMuted && !p.rec.VideoHostMuted {
			p.rec.HostMutedBy = ""
		}
		if err := m.c.db.PutParticipant(m.id, m.gen, p.rec); err != nil {
			return m.storeErr("put participant", err)
		}
	}
	if p.conn != nil {
		p.conn.Send(&pb.ServerMessage{Message: &pb.ServerMessage_UnmuteResponse{UnmuteResponse: &pb.UnmuteResponse{
			ParticipantId: p.rec.ID, AudioApproved: resp.AudioApproved, VideoApproved: resp.VideoApproved,
		}}})
	}
	if changed {
		m.broadcast(p.muteUpdate(), "")
		m.publish()
	}
	return nil
}

// restore re-adds a participant read back from the store at start-up: it
// counts as disconnected with a fresh grace period.
func (m *meeting) restore(rec store.Participant, b store.Binding, now time.Time) error {
	rec.Connected = false
	rec.DisconnectedSince = now
	p := &participant{rec: rec, binding: b}
	var err error
	if b.CorrelationID != "" {
		p.binding.ExpiresAt = now.Add(bindingTTL)
		err = m.c.db.PutSession(m.id, m.gen, p.rec, p.binding)
	} else {
		err = m.c.db.PutParticipant(m.id, m.gen, p.rec)
	}
	if err != nil {
		return err
	}
	m.participants[rec.ID] = p
	m.order = append(m.order, rec.ID)
	m.startGrace(p)
	return nil
}

func (p *participant) wire() *pb.Participant {
	return &pb.Participant{ParticipantId: p.rec.ID, Name: p.rec.Name, JoinedAt: uint64(p.rec.JoinedAt.UnixMilli())}
}

func (p *participant) muted() bool {
	r := p.rec
	return r.AudioSelfMuted || r.VideoSelfMuted || r.AudioHostMuted || r.VideoHostMuted
}

func (p *participant) muteUpdate() *pb.ServerMessage {
	r := p.rec
	return &pb.ServerMessage{Message: &pb.ServerMessage_ParticipantMuteUpdate{ParticipantMuteUpdate: &pb.ParticipantMuteUpdate{
		ParticipantId:  r.ID,
		AudioSelfMuted: r.AudioSelfMuted, VideoSelfMuted: r.VideoSelfMuted,
		AudioHostMuted: r.AudioHostMuted, VideoHostMuted: r.VideoHostMuted,
		HostMutedBy: r.HostMutedBy,
	}}}
}

// newID returns a UUIDv7 string.
func newID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// userNumber maps a token subject to JoinResponse.user_id: a numeric subject
// is used as is, any other is hashed to a stable 64-bit number.
func userNumber(sub string) uint64 {
	if n, err := strconv.ParseUint(sub, 10, 64); err == nil {
		return n
	}
	h := sha256.Sum256([]byte(sub))
	return binary.BigEndian.Uint64(h[:8])
}
