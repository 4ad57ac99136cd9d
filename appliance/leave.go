package appliance

import (
	"time"

	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// leave removes a participant that left cleanly (or whose grace ran out),
// once the store has forgotten it. If the store refuses, the participant
// stays as disconnected and times out later, when the removal is tried again.
func (m *meeting) leave(pid string, connID uint64, reason pb.LeaveReason) {
	p := m.participants[pid]
	if p == nil || (connID != 0 && (p.conn == nil || p.conn.ID() != connID)) {
		return
	}
	if m.remove(p, reason) != nil {
		if m.stopped {
			return
		}
		if p.conn != nil {
			m.markDisconnected(p)
		}
		m.startGrace(p)
		m.publish()
		return
	}
	if len(m.participants) == 0 {
		m.end()
	}
}

// remove takes p out of the meeting once the store has forgotten it, and
// tells the others why.
func (m *meeting) remove(p *participant, reason pb.LeaveReason) *codedError {
	pid := p.rec.ID
	if err := m.deps.store.DeleteSession(m.id, m.gen, pid, p.binding.CorrelationID); err != nil {
		return m.storeErr("delete session", err)
	}
	if p.grace != nil {
		p.grace.Stop()
	}
	delete(m.participants, pid)
	m.media.remove(pid)
	for i, id := range m.order {
		if id == pid {
			m.order = append(m.order[:i], m.order[i+1:]...)
			break
		}
	}
	m.deps.seats.add(-1)
	m.broadcast(&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantLeft{
		ParticipantLeft: &pb.ParticipantLeft{ParticipantId: pid, Reason: reason},
	}}, "")
	m.publish()
	m.log.Info("participant left", "participant", pid, "reason", reason.String())
	return nil
}

// disconnected marks a participant whose session ended without a leave; the
// grace timer removes them unless they reconnect. The session is gone
// whatever the store says, so a failed write still starts the grace.
func (m *meeting) disconnected(pid string, connID uint64) {
	p := m.participants[pid]
	if p == nil || p.conn == nil || p.conn.ID() != connID {
		return
	}
	m.markDisconnected(p)
	if err := m.deps.store.PutSession(m.id, m.gen, p.rec, p.binding); err != nil {
		m.storeErr("put session", err)
		if m.stopped {
			return
		}
	}
	m.startGrace(p)
	m.publish()
	m.log.Info("participant disconnected", "participant", pid)
}

// markDisconnected records in memory that p's session is gone; its binding
// expires bindingTTL from now.
func (m *meeting) markDisconnected(p *participant) {
	now := m.deps.now()
	p.conn = nil
	p.rec.Connected = false
	p.rec.DisconnectedSince = now
	p.binding.ExpiresAt = now.Add(bindingTTL)
}

// startGrace (re)arms p's grace timer: unless p reconnects (or the appliance
// drains), p leaves with TIMEOUT when it fires.
func (m *meeting) startGrace(p *participant) {
	if p.grace != nil {
		p.grace.Stop()
	}
	pid, since := p.rec.ID, p.rec.DisconnectedSince
	p.grace = time.AfterFunc(m.deps.grace, func() {
		m.post(m.ctx, func() {
			q := m.participants[pid]
			if q == nil || q.conn != nil || !q.rec.DisconnectedSince.Equal(since) || m.deps.draining() {
				return
			}
			m.leave(pid, 0, pb.LeaveReason_TIMEOUT)
		})
	})
}
