package appliance

import (
	"context"
	"errors"

	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// redirectReason is RedirectToMc.reason on a drain: the meeting moves to the
// appliance that comes back (or to whichever MC the endpoint leads to).
const redirectReason = "migration"

// Redirect tells every connected participant of every meeting to reconnect
// to endpoint (RedirectToMc), before a drain closes their sessions:
// browsers do not see WebTransport close codes, so the message is what
// tells a client to come back. Participants that join afterwards are
// redirected as soon as they are in. It waits until every meeting has
// queued its messages, or ctx ends.
func (c *Controller) Redirect(ctx context.Context, endpoint string) error {
	for _, m := range c.running() {
		if err := m.do(ctx, func() { m.redirect(endpoint) }); err != nil && !errors.Is(err, errMeetingGone) {
			return err
		}
	}
	return nil
}

// redirect sends RedirectToMc to every connected participant and to every
// later arrival. It runs on the meeting goroutine.
func (m *meeting) redirect(endpoint string) {
	m.redirectTo = endpoint
	frame, err := webtransport.EncodeServerMessage(m.redirectMsg())
	if err != nil {
		m.log.Error("encode redirect", "err", err)
		return
	}
	n := 0
	for _, id := range m.order {
		if p := m.participants[id]; p.conn != nil {
			p.conn.SendFrame(frame)
			n++
		}
	}
	m.log.Info("participants redirected", "endpoint", endpoint, "participants", n)
}

func (m *meeting) redirectMsg() *pb.ServerMessage {
	return &pb.ServerMessage{Message: &pb.ServerMessage_RedirectToMc{RedirectToMc: &pb.RedirectToMc{
		NewMcEndpoint: m.redirectTo, MeetingId: m.id, Reason: redirectReason,
	}}}
}
