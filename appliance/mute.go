package appliance

import (
	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

const roleHost = "host"

// asHost returns the participant pid if it is a host; otherwise the error the
// client sees (forbidden says what a host alone may do).
func (m *meeting) asHost(pid, forbidden string) (*participant, *codedError) {
	host := m.participants[pid]
	if host == nil {
		return nil, errParticipantNotFound
	}
	if host.rec.Role != roleHost {
		return nil, &codedError{pb.ErrorCode_FORBIDDEN, forbidden}
	}
	return host, nil
}

var errParticipantNotFound = &codedError{pb.ErrorCode_NOT_FOUND, "participant not found"}

func (m *meeting) selfMute(pid string, req *pb.MuteRequest) {
	p := m.participants[pid]
	if p == nil {
		return
	}
	rec := p.rec
	rec.AudioSelfMuted, rec.VideoSelfMuted = req.AudioMuted, req.VideoMuted
	m.updateParticipant(p, rec, p)
}

// updateParticipant stores rec as p's roster entry and, once stored, takes it
// and tells everyone p's mute state. A request that changes nothing is
// answered to asker alone, with no store write and no broadcast.
func (m *meeting) updateParticipant(p *participant, rec store.Participant, asker *participant) *codedError {
	if rec == p.rec {
		if asker.conn != nil {
			asker.conn.Send(p.muteUpdate())
		}
		return nil
	}
	if err := m.deps.store.PutParticipant(m.id, m.gen, rec); err != nil {
		return m.storeErr("put participant", err)
	}
	if !rec.AudioHostMuted {
		p.unmuteAsked.audio = false
	}
	if !rec.VideoHostMuted {
		p.unmuteAsked.video = false
	}
	p.rec = rec
	m.broadcast(p.muteUpdate(), "")
	m.publish()
	return nil
}

func (m *meeting) hostMute(pid string, req *pb.HostMuteRequest) *codedError {
	host, cerr := m.asHost(pid, "only a host may mute others")
	if cerr != nil {
		return cerr
	}
	p := m.participants[req.ParticipantId]
	if p == nil {
		return errParticipantNotFound
	}
	rec := p.rec
	rec.AudioHostMuted, rec.VideoHostMuted = req.AudioMuted, req.VideoMuted
	rec.HostMutedBy = ""
	if req.AudioMuted || req.VideoMuted {
		rec.HostMutedBy = pid
	}
	if rec.HostMutedBy != "" && p.rec.HostMutedBy != "" && rec.AudioHostMuted == p.rec.AudioHostMuted && rec.VideoHostMuted == p.rec.VideoHostMuted {
		rec.HostMutedBy = p.rec.HostMutedBy // the same mute again by another host changes nothing
	}
	return m.updateParticipant(p, rec, host)
}

// unmuteRequest forwards a host-muted participant's request to the hosts.
func (m *meeting) unmuteRequest(pid string, req *pb.UnmuteRequest) *codedError {
	p := m.participants[pid]
	if p == nil {
		return errParticipantNotFound
	}
	audio, video := req.RequestAudio && p.rec.AudioHostMuted, req.RequestVideo && p.rec.VideoHostMuted
	if !audio && !video {
		return &codedError{pb.ErrorCode_CONFLICT, "not host-muted"}
	}
	// Coalesced per requester: the hosts hear each request once until one
	// of them answers or the host-mute changes.
	audio, video = audio && !p.unmuteAsked.audio, video && !p.unmuteAsked.video
	if !audio && !video {
		return nil
	}
	p.unmuteAsked.audio = p.unmuteAsked.audio || audio
	p.unmuteAsked.video = p.unmuteAsked.video || video
	msg := m.stamp(&pb.ServerMessage{Message: &pb.ServerMessage_UnmuteRequest{UnmuteRequest: &pb.UnmuteRequest{RequestAudio: audio, RequestVideo: video}}})
	frame, err := webtransport.EncodeServerMessage(msg)
	if err != nil {
		return &codedError{pb.ErrorCode_INTERNAL_ERROR, "internal error"}
	}
	for _, q := range m.participants {
		if q.rec.Role == roleHost && q.conn != nil && q != p {
			q.conn.SendFrame(frame)
		}
	}
	return nil
}

// unmuteResponse applies a host's answer and passes it to the participant.
func (m *meeting) unmuteResponse(pid string, resp *pb.UnmuteResponse) *codedError {
	host, cerr := m.asHost(pid, "only a host may answer unmute requests")
	if cerr != nil {
		return cerr
	}
	p := m.participants[resp.ParticipantId]
	if p == nil {
		return errParticipantNotFound
	}
	rec := p.rec
	if resp.AudioApproved {
		rec.AudioHostMuted = false
	}
	if resp.VideoApproved {
		rec.VideoHostMuted = false
	}
	if !rec.AudioHostMuted && !rec.VideoHostMuted {
		rec.HostMutedBy = ""
	}
	if rec != p.rec {
		if cerr := m.updateParticipant(p, rec, host); cerr != nil {
			return cerr
		}
	}
	p.unmuteAsked.audio, p.unmuteAsked.video = false, false // answered
	if p.conn != nil {
		p.conn.Send(m.stamp(&pb.ServerMessage{Message: &pb.ServerMessage_UnmuteResponse{UnmuteResponse: &pb.UnmuteResponse{
			ParticipantId: p.rec.ID, AudioApproved: resp.AudioApproved, VideoApproved: resp.VideoApproved,
		}}}))
	}
	return nil
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
