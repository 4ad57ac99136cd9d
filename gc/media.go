package gc

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/internalpb"
)

// MediaEvent is one notification of a media handler about a participant.
// ParticipantID is the participant's join-token subject: the MH knows the
// token, not the MC's participant id.
type MediaEvent struct {
	MeetingID, ParticipantID, HandlerID string
	Connected                           bool
	// Reason is set on a disconnection; values outside the contract's enum
	// are reported as DISCONNECT_REASON_UNSPECIFIED.
	Reason internalpb.DisconnectReason
}

// MediaCoordinator takes the media handlers' notifications; the appliance
// implements it. Every notification is acknowledged, also for a meeting or
// participant it does not know, so it returns nothing; it must not block
// for long.
type MediaCoordinator interface {
	MediaEvent(ctx context.Context, e MediaEvent)
}

// maxMediaIDBytes bounds every id of a notification.
const maxMediaIDBytes = 256

type mediaService struct {
	internalpb.UnimplementedMediaCoordinationServiceServer
	media MediaCoordinator
	log   *slog.Logger
}

func (s *mediaService) NotifyParticipantConnected(ctx context.Context, req *internalpb.NotifyParticipantConnectedRequest) (*internalpb.NotifyParticipantConnectedResponse, error) {
	e := MediaEvent{MeetingID: req.GetMeetingId(), ParticipantID: req.GetParticipantId(), HandlerID: req.GetHandlerId(), Connected: true}
	if err := validateMediaEvent(e); err != nil {
		return nil, err
	}
	s.media.MediaEvent(ctx, e)
	return &internalpb.NotifyParticipantConnectedResponse{Acknowledged: true}, nil
}

func (s *mediaService) NotifyParticipantDisconnected(ctx context.Context, req *internalpb.NotifyParticipantDisconnectedRequest) (*internalpb.NotifyParticipantDisconnectedResponse, error) {
	e := MediaEvent{MeetingID: req.GetMeetingId(), ParticipantID: req.GetParticipantId(), HandlerID: req.GetHandlerId(), Reason: req.GetReason()}
	if _, known := internalpb.DisconnectReason_name[int32(e.Reason)]; !known {
		e.Reason = internalpb.DisconnectReason_DISCONNECT_REASON_UNSPECIFIED
	}
	if err := validateMediaEvent(e); err != nil {
		return nil, err
	}
	s.media.MediaEvent(ctx, e)
	return &internalpb.NotifyParticipantDisconnectedResponse{Acknowledged: true}, nil
}

// validateMediaEvent: every id is 1 to 256 bytes, else INVALID_ARGUMENT.
func validateMediaEvent(e MediaEvent) error {
	for _, f := range []struct{ name, v string }{
		{"meeting_id", e.MeetingID}, {"participant_id", e.ParticipantID}, {"handler_id", e.HandlerID},
	} {
		if f.v == "" || len(f.v) > maxMediaIDBytes {
			return status.Error(codes.InvalidArgument, fmt.Sprintf("%s must be 1 to %d bytes", f.name, maxMediaIDBytes))
		}
	}
	return nil
}
