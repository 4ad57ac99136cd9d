package loadgen

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

func FuzzMessageKind(f *testing.F) {
	for _, m := range []*pb.ServerMessage{
		{Message: &pb.ServerMessage_JoinResponse{JoinResponse: &pb.JoinResponse{ParticipantId: "p"}}},
		{Message: &pb.ServerMessage_ParticipantMuteUpdate{ParticipantMuteUpdate: &pb.ParticipantMuteUpdate{ParticipantId: "p", AudioHostMuted: true}}},
		{Message: &pb.ServerMessage_Error{Error: &pb.ErrorMessage{Code: pb.ErrorCode_NOT_FOUND}}, TraceParent: "00-x"},
		{TraceParent: "00-x"},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x42, 0xff})
	f.Add([]byte{0xa2, 0x01, 0x00, 0x42, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		kind := messageKind(b)
		var m pb.ServerMessage
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		if (kind != 0) != (m.Message != nil) {
			t.Fatalf("kind %d, decoded message %v", kind, m.Message)
		}
	})
}

func FuzzDecodeLabJoinInfo(f *testing.F) {
	f.Add([]byte(`{"url":"https://127.0.0.1:4433/","cert_sha256":"` + string(bytes.Repeat([]byte("ab"), 32)) + `","meeting_id":"demo","token":"t"}`))
	f.Add([]byte(`{"url":"","cert_sha256":"zz"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := DecodeLabJoinInfo(bytes.NewReader(b))
		if err == nil && (info.URL == "" || info.MeetingID == "" || info.Token == "" || len(info.CertSHA256) != 64) {
			t.Fatalf("accepted incomplete join info %+v", info)
		}
	})
}

func FuzzParsePrivateKeyPEM(f *testing.F) {
	good, err := MarshalPrivateKeyPEM(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("not pem"))
	f.Fuzz(func(t *testing.T, b []byte) {
		priv, err := ParsePrivateKeyPEM(b)
		if err != nil {
			return
		}
		if len(priv) != ed25519.PrivateKeySize {
			t.Fatalf("key of %d bytes", len(priv))
		}
		again, err := MarshalPrivateKeyPEM(priv)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := ParsePrivateKeyPEM(again); err != nil || !back.Equal(priv) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func TestMessageKind(t *testing.T) {
	mute, _ := proto.Marshal(&pb.ServerMessage{TraceState: "s", Message: &pb.ServerMessage_ParticipantMuteUpdate{ParticipantMuteUpdate: &pb.ParticipantMuteUpdate{}}})
	joined, _ := proto.Marshal(&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantJoined{ParticipantJoined: &pb.ParticipantJoined{}}})
	if k := messageKind(mute); k != muteUpdateField {
		t.Errorf("mute update: kind %d", k)
	}
	if k := messageKind(joined); k != 2 {
		t.Errorf("participant joined: kind %d", k)
	}
	if k := messageKind([]byte{0x42, 0x05, 0x00}); k != 0 {
		t.Errorf("truncated: kind %d", k)
	}
}
