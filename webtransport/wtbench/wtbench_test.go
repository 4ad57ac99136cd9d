package wtbench

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/edgemc/edgemc/webtransport/signalingpb"
)

func joinPayload(t testing.TB, meeting string) []byte {
	b, err := proto.Marshal(&signalingpb.ClientMessage{Message: &signalingpb.ClientMessage_JoinRequest{JoinRequest: &signalingpb.JoinRequest{
		MeetingId: meeting, JoinToken: "token", ParticipantName: "name", CorrelationId: "c",
	}}, TraceParent: "00-x"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMeetingID(t *testing.T) {
	if got := meetingID(joinPayload(t, "m-42")); got != "m-42" {
		t.Errorf("meeting id %q, want m-42", got)
	}
	mute, err := proto.Marshal(&signalingpb.ClientMessage{Message: &signalingpb.ClientMessage_MuteRequest{MuteRequest: &signalingpb.MuteRequest{AudioMuted: true}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"not a join": mute, "empty": nil, "garbage": {0xff, 0xff, 0xff}, "truncated": joinPayload(t, "m-42")[:5]} {
		if got := meetingID(b); got != "" {
			t.Errorf("%s: meeting id %q", name, got)
		}
	}
}

// FuzzMeetingID: no input panics, and a message as a client encodes it
// gives the meeting id a full decode finds.
func FuzzMeetingID(f *testing.F) {
	f.Add(joinPayload(f, "m-1"))
	f.Add([]byte{0x0a, 0x03, 0x0a, 0x01, 'x'})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		got := meetingID(b)
		var m signalingpb.ClientMessage
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		canonical, err := proto.MarshalOptions{Deterministic: true}.Marshal(&m)
		if err == nil && bytes.Equal(canonical, b) && got != m.GetJoinRequest().GetMeetingId() {
			t.Fatalf("meeting id %q, a full decode says %q", got, m.GetJoinRequest().GetMeetingId())
		}
	})
}
