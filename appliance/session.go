package appliance

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

const maxNameBytes = 256

// ServeSession runs one participant's signaling session: the join, then every
// message until the session ends. It satisfies webtransport.Handler.
func (c *Controller) ServeSession(ctx context.Context, s *webtransport.Session) {
	c.serve(ctx, s)
}

func (c *Controller) serve(ctx context.Context, s session) {
	c.sessions.Add(1)
	defer c.sessions.Done()
	start := time.Now()
	ctx, req := withRequestTrace(ctx)
	m, pid, cerr := c.admit(ctx, s)
	if cerr != nil {
		c.metrics.JoinDone(time.Since(start), cerr.code.String())
		req.sendError(s, cerr.code, cerr.msg)
		s.Close(closeError, cerr.msg)
		return
	}
	c.metrics.JoinDone(time.Since(start), "ok")
	s.Joined()
	budget := c.newBudget()
	for {
		msg, err := s.Next(ctx)
		if err == nil || isDecodeError(err) {
			switch budget.spend(time.Now()) {
			case overBudget:
				continue
			case firstOverBudget:
				c.metrics.RateLimited("dropped")
				sendError(s, pb.ErrorCode_CAPACITY_EXCEEDED, "too many messages; slow down")
				continue
			case exhausted:
				c.metrics.RateLimited("closed")
				c.log.Warn("session closed: it kept sending over its message budget", RefusedKey, "message_budget", "meeting", m.id, "participant", pid)
				sendError(s, pb.ErrorCode_CAPACITY_EXCEEDED, "too many messages")
				s.Close(closeRateLimited, "too many messages")
				c.ended(m, pid, s, err)
				return
			}
		}
		if isDecodeError(err) {
			// The framing is intact: refuse this message, keep the session.
			sendError(s, pb.ErrorCode_INVALID_REQUEST, "undecodable message")
			continue
		}
		if err != nil {
			c.ended(m, pid, s, err)
			return
		}
		if cerr := c.dispatch(beginRequest(ctx, msg), m, pid, msg); cerr != nil {
			req.sendError(s, cerr.code, cerr.msg)
		}
	}
}

func isDecodeError(err error) bool {
	var de *webtransport.DecodeError
	return errors.As(err, &de)
}

// admit reads and checks the first frame and joins its meeting.
func (c *Controller) admit(ctx context.Context, s session) (*meeting, string, *codedError) {
	msg, err := s.Next(ctx)
	if err != nil {
		return nil, "", frameError(err)
	}
	ctx = beginRequest(ctx, msg)
	jr := msg.GetJoinRequest()
	switch {
	case jr == nil:
		return nil, "", &codedError{pb.ErrorCode_INVALID_REQUEST, "the first message must be a join request"}
	case len(jr.ParticipantName) > maxNameBytes:
		return nil, "", &codedError{pb.ErrorCode_INVALID_REQUEST, "participant name is longer than 256 bytes"}
	case c.Draining():
		return nil, "", &codedError{pb.ErrorCode_CAPACITY_EXCEEDED, "meeting controller is draining"}
	}
	claims, err := c.verifier.VerifyJoin(ctx, jr.JoinToken)
	if err != nil {
		reason := "invalid_token"
		if te := (*auth.TokenError)(nil); errors.As(err, &te) {
			reason = te.Reason
		}
		c.log.InfoContext(ctx, "join refused: invalid token", RefusedKey, reason, "err", err)
		return nil, "", &codedError{pb.ErrorCode_UNAUTHORIZED, "invalid join token"}
	}
	if claims.MeetingID != jr.MeetingId {
		return nil, "", &codedError{pb.ErrorCode_UNAUTHORIZED, "join token is for another meeting"}
	}
	m := c.lookup(jr.MeetingId)
	if m == nil {
		return nil, "", &codedError{pb.ErrorCode_NOT_FOUND, "meeting not found"}
	}
	name := jr.ParticipantName
	if name == "" {
		name = claims.DisplayName
	}
	req := joinRequest{claims: claims, name: name, correlationID: jr.CorrelationId, bindingToken: jr.BindingToken, conn: s}
	var pid string
	var cerr *codedError
	if err := m.do(ctx, func() { pid, cerr = m.join(req) }); err != nil {
		if errors.Is(err, errMeetingGone) {
			return nil, "", &codedError{pb.ErrorCode_NOT_FOUND, "meeting not found"}
		}
		return nil, "", &codedError{pb.ErrorCode_INTERNAL_ERROR, "internal error"}
	}
	return m, pid, cerr
}

// frameError maps a failure to read a client frame to the error it sees.
func frameError(err error) *codedError {
	var de *webtransport.DecodeError
	switch {
	case errors.Is(err, webtransport.ErrFrameTooLarge):
		return &codedError{pb.ErrorCode_INVALID_REQUEST, "frame larger than 64 KiB"}
	case errors.As(err, &de):
		return &codedError{pb.ErrorCode_INVALID_REQUEST, "undecodable message"}
	default:
		return &codedError{pb.ErrorCode_INVALID_REQUEST, "no join request received"}
	}
}

// dispatch hands one in-meeting message to the meeting goroutine.
func (c *Controller) dispatch(ctx context.Context, m *meeting, pid string, msg *pb.ClientMessage) *codedError {
	var op func() *codedError
	switch x := msg.Message.(type) {
	case *pb.ClientMessage_MuteRequest:
		op = func() *codedError { m.selfMute(pid, x.MuteRequest); return nil }
	case *pb.ClientMessage_HostMuteRequest:
		op = func() *codedError { return m.hostMute(pid, x.HostMuteRequest) }
	case *pb.ClientMessage_UnmuteRequest:
		op = func() *codedError { return m.unmuteRequest(pid, x.UnmuteRequest) }
	case *pb.ClientMessage_UnmuteResponse:
		op = func() *codedError { return m.unmuteResponse(pid, x.UnmuteResponse) }
	case *pb.ClientMessage_MediaConnectionUpdate:
		c.mediaUpdate(ctx, m, pid, x.MediaConnectionUpdate)
		return nil
	case *pb.ClientMessage_JoinRequest:
		return &codedError{pb.ErrorCode_CONFLICT, "already joined"}
	default:
		return &codedError{pb.ErrorCode_INVALID_REQUEST, "unsupported message"}
	}
	var cerr *codedError
	if err := m.do(ctx, func() { cerr = op() }); err != nil {
		return &codedError{pb.ErrorCode_NOT_FOUND, "meeting not found"}
	}
	return cerr
}

// ended tells the meeting how the session ended: a clean close by the client
// is a leave; anything else (a lost connection, a close by the server as in a
// drain) starts the disconnect grace.
func (c *Controller) ended(m *meeting, pid string, s session, err error) {
	if errors.Is(err, webtransport.ErrFrameTooLarge) {
		// The stream can no longer be framed: say so and close.
		cerr := frameError(err)
		sendError(s, cerr.code, cerr.msg)
		s.Close(closeError, cerr.msg)
	}
	// The meeting must learn of it, however busy it is: a participant left
	// "connected" to a closed session would never time out. The wait ends
	// when the op is queued or the meeting has stopped.
	ctx := context.WithoutCancel(c.ctx)
	if cleanClose(err) {
		m.post(ctx, func() { m.leave(pid, s.ID(), pb.LeaveReason_VOLUNTARY) })
		return
	}
	m.post(ctx, func() { m.disconnected(pid, s.ID()) })
}

// cleanClose reports whether a session ended because its client closed it.
func cleanClose(err error) bool { return errors.Is(err, io.EOF) }
