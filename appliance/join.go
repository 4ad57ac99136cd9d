package appliance

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// joinRequest is what a session brings to its meeting.
type joinRequest struct {
	claims        *auth.JoinClaims
	name          string
	correlationID string
	bindingToken  string
	conn          peer
}

// join admits a participant (or recovers one from a valid binding) and sends
// the JoinResponse on conn. It runs on the meeting goroutine. Nothing is
// changed or sent unless the durable write succeeded.
func (m *meeting) join(req joinRequest) (string, *codedError) {
	if m.stopped {
		return "", &codedError{pb.ErrorCode_NOT_FOUND, "meeting not found"}
	}
	if req.correlationID != "" || req.bindingToken != "" {
		p, reason := m.recoverable(req)
		if p != nil {
			return p.rec.ID, m.reattach(p, req.conn)
		}
		m.deps.metrics.Reconnection(reason)
		m.log.Info("reconnection refused; joining as a new participant", RefusedKey, reason)
	}
	if cerr := m.makeRoomFor(req.claims.Subject); cerr != nil {
		return "", cerr
	}
	if !m.deps.seats.take() {
		return "", &codedError{pb.ErrorCode_CAPACITY_EXCEEDED, "participant capacity reached"}
	}
	p := &participant{
		rec: store.Participant{
			ID:        newID(),
			UserID:    req.claims.Subject,
			Name:      req.name,
			Role:      req.claims.Role,
			JoinedAt:  m.deps.now(),
			Connected: true,
		},
		conn: req.conn,
	}
	p.binding = store.Binding{CorrelationID: newID(), ParticipantID: p.rec.ID, UserID: p.rec.UserID}
	var token string
	p.binding, token = m.bind(p)
	frame, cerr := m.joinResponse(p, token)
	if cerr == nil {
		if err := m.deps.store.PutSession(m.id, m.gen, p.rec, p.binding); err != nil {
			cerr = m.storeErr("put session", err)
		}
	}
	if cerr != nil {
		m.deps.seats.add(-1)
		return "", cerr
	}
	m.participants[p.rec.ID] = p
	m.order = append(m.order, p.rec.ID)
	if m.emptyTimer != nil {
		m.emptyTimer.Stop()
	}
	m.publish()
	m.sendJoinFrame(p, frame)
	m.broadcast(&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantJoined{
		ParticipantJoined: &pb.ParticipantJoined{Participant: p.wire()},
	}}, p.rec.ID)
	m.log.Info("participant joined", "participant", p.rec.ID, "role", p.rec.Role)
	m.arrived(p, false)
	return p.rec.ID, nil
}

// makeRoomFor applies the per-identity limit before sub joins as a new
// participant: at the limit, sub's oldest disconnected participant (one whose
// client lost its binding, say) is removed to make room; if all of sub's
// participants are connected, the join is refused.
func (m *meeting) makeRoomFor(sub string) *codedError {
	if m.deps.perSub <= 0 {
		return nil
	}
	n := 0
	var oldest *participant
	for _, id := range m.order {
		q := m.participants[id]
		if q.rec.UserID != sub {
			continue
		}
		n++
		if oldest == nil && q.conn == nil {
			oldest = q
		}
	}
	switch {
	case n < m.deps.perSub:
		return nil
	case oldest == nil:
		return &codedError{pb.ErrorCode_CAPACITY_EXCEEDED, "too many sessions for this user in this meeting"}
	}
	m.log.Info("replacing a disconnected participant of the same user", "participant", oldest.rec.ID)
	return m.remove(oldest, pb.LeaveReason_TIMEOUT)
}

// bind returns p's binding with a fresh nonce, live while p is connected
// (its expiry is set on disconnect), and the binding token for it.
func (m *meeting) bind(p *participant) (store.Binding, string) {
	b := p.binding
	token, nonce := m.binder.issue(b.CorrelationID, p.rec.ID)
	b.Nonce, b.ExpiresAt = nonce, time.Time{}
	return b, token
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
	case !m.binder.valid(req.correlationID, p.rec.ID, p.binding.Nonce, req.bindingToken):
		return nil, "bad_token"
	case !p.binding.ExpiresAt.IsZero() && m.deps.now().After(p.binding.ExpiresAt.Add(bindingSkew)):
		return nil, "expired"
	case req.claims.Subject != p.rec.UserID:
		return nil, "other_user"
	}
	if err := m.deps.store.ConsumeNonce(m.id, p.binding.Nonce, nonceKeep); err != nil {
		if errors.Is(err, store.ErrNonceUsed) {
			m.deps.metrics.NonceReplayRefused()
			return nil, "replayed"
		}
		m.log.Error("nonce check failed", "err", err)
		return nil, "store_error"
	}
	return p, ""
}

// reattach moves a recovered participant onto a new session, once the new
// binding is stored; otherwise the participant stays as it was (disconnected,
// its grace running) and the new session gets the error.
func (m *meeting) reattach(p *participant, conn peer) *codedError {
	rec := p.rec
	rec.Connected, rec.DisconnectedSince = true, time.Time{}
	b, token := m.bind(p)
	frame, cerr := m.joinResponse(p, token)
	if cerr != nil {
		return cerr
	}
	if err := m.deps.store.PutSession(m.id, m.gen, rec, b); err != nil {
		return m.storeErr("put session", err)
	}
	if p.grace != nil {
		p.grace.Stop()
		p.grace = nil
	}
	old := p.conn
	p.conn, p.rec, p.binding = conn, rec, b
	if old != nil {
		// The client came back before the server noticed the drop.
		old.Close(closeReplaced, "replaced by a newer session")
	}
	m.deps.metrics.Reconnection("recovered")
	m.publish()
	m.sendJoinFrame(p, frame)
	m.log.Info("participant reconnected", "participant", p.rec.ID)
	m.arrived(p, true)
	return nil
}

// joinResponse encodes the JoinResponse for p and the catch-up that follows
// it, to be sent as one queued write: participants that do not fit in one
// frame come as ParticipantJoined, and the mute state of everyone muted as
// ParticipantMuteUpdate (the roster carries no mute state). A response that
// does not fit in a frame even without a roster is refused.
func (m *meeting) joinResponse(p *participant, token string) (webtransport.Frame, *codedError) {
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
	msg := m.stamp(&pb.ServerMessage{Message: &pb.ServerMessage_JoinResponse{JoinResponse: resp}})
	var overflow []*pb.Participant
	for proto.Size(msg) > webtransport.MaxFrameSize {
		n := len(resp.ExistingParticipants)
		if n == 0 {
			m.log.Error("join refused: the join response alone exceeds a frame", "media_handlers", len(m.assignments))
			return nil, &codedError{pb.ErrorCode_INTERNAL_ERROR, "join response too large"}
		}
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
	if err != nil {
		m.log.Error("encode join response", "err", err)
		return nil, &codedError{pb.ErrorCode_INTERNAL_ERROR, "internal error"}
	}
	return webtransport.Frame(buf), nil
}

// sendJoinFrame queues the encoded join response for p.
func (m *meeting) sendJoinFrame(p *participant, frame webtransport.Frame) {
	if err := p.conn.SendFrame(frame); err != nil {
		m.log.Warn("join response not delivered", "participant", p.rec.ID, "err", err)
	}
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
		err = m.deps.store.PutSession(m.id, m.gen, p.rec, p.binding)
	} else {
		err = m.deps.store.PutParticipant(m.id, m.gen, p.rec)
	}
	if err != nil {
		return err
	}
	m.participants[rec.ID] = p
	m.order = append(m.order, rec.ID)
	m.startGrace(p)
	return nil
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
