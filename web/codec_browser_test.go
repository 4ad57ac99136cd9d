package web

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/chromedp/chromedp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/edgemc/edgemc/webtransport/signalingpb"

	"github.com/edgemc/edgemc/web/webtest"
)

// TestBrowserProtoCodec checks the lab page's hand-written JavaScript
// protobuf codec (assets/proto.js) against the generated Go code, in
// Chromium: Go encodes what JS must decode and decodes what JS encodes.
func TestBrowserProtoCodec(t *testing.T) {
	ctx := webtest.NewBrowser(t)
	srv := newServer(t, Options{}, &fakeSource{s: sampleStatus()})
	run(t, ctx, chromedp.Navigate(srv.URL+"/"))
	eval[bool](t, ctx, `import('/assets/proto.js').then((m) => {
		window.proto = m;
		window.fromB64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
		window.toB64 = (u) => btoa(String.fromCharCode(...u));
		window.plain = (k, x) => (x instanceof Uint8Array ? Array.from(x) : x);
		return true;
	})`)

	t.Run("decode", func(t *testing.T) {
		for _, tc := range []struct {
			msg  *pb.ServerMessage
			kind string
			want string // JSON of the decoded oneof member
		}{
			{
				&pb.ServerMessage{Message: &pb.ServerMessage_JoinResponse{JoinResponse: &pb.JoinResponse{
					ParticipantId: "p-1", UserId: 1 << 60,
					ExistingParticipants: []*pb.Participant{
						{ParticipantId: "p-0", Name: "Zoë ✓", JoinedAt: 1764150000000,
							Streams: []*pb.MediaStream{{StreamId: "s", StreamType: pb.StreamType_VIDEO_CAMERA}}},
						{ParticipantId: "p-9"},
					},
					MediaServers:   []*pb.MediaServerInfo{{MediaHandlerUrl: "https://mh-1:4433"}},
					EncryptionKeys: &pb.EncryptionKeys{PublicKey: []byte{1, 2, 255}, KeyId: "k1"},
					CorrelationId:  "0192-corr", BindingToken: "beef",
				}}, TraceParent: "00-trace"},
				"joinResponse",
				`{"participantId":"p-1","userId":"1152921504606846976",
				  "existingParticipants":[{"participantId":"p-0","name":"Zoë ✓","joinedAt":1764150000000},
				                          {"participantId":"p-9","name":"","joinedAt":0}],
				  "mediaServers":[{"mediaHandlerUrl":"https://mh-1:4433"}],
				  "encryptionKeys":{"publicKey":[1,2,255],"keyId":"k1"},
				  "correlationId":"0192-corr","bindingToken":"beef"}`,
			},
			{
				&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantJoined{ParticipantJoined: &pb.ParticipantJoined{
					Participant: &pb.Participant{ParticipantId: "p-2", Name: "Bob", JoinedAt: 42}}}},
				"participantJoined",
				`{"participant":{"participantId":"p-2","name":"Bob","joinedAt":42}}`,
			},
			{
				&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantLeft{ParticipantLeft: &pb.ParticipantLeft{
					ParticipantId: "p-2", Reason: pb.LeaveReason_TIMEOUT}}},
				"participantLeft",
				`{"participantId":"p-2","reason":4}`,
			},
			{
				&pb.ServerMessage{Message: &pb.ServerMessage_Error{Error: &pb.ErrorMessage{
					Code: pb.ErrorCode_FORBIDDEN, Message: "host only", Details: map[string]string{"a": "1", "__proto__": "x"}}}},
				"error",
				`{"code":3,"message":"host only","details":{"a":"1","__proto__":"x"}}`,
			},
			{
				&pb.ServerMessage{Message: &pb.ServerMessage_ParticipantMuteUpdate{ParticipantMuteUpdate: &pb.ParticipantMuteUpdate{
					ParticipantId: "p-3", AudioSelfMuted: true, VideoHostMuted: true, HostMutedBy: "p-1"}}},
				"participantMuteUpdate",
				`{"participantId":"p-3","audioSelfMuted":true,"videoSelfMuted":false,"audioHostMuted":false,"videoHostMuted":true,"hostMutedBy":"p-1"}`,
			},
			{
				&pb.ServerMessage{Message: &pb.ServerMessage_UnmuteRequest{UnmuteRequest: &pb.UnmuteRequest{RequestVideo: true}}},
				"unmuteRequest",
				`{"requestAudio":false,"requestVideo":true}`,
			},
			{
				&pb.ServerMessage{Message: &pb.ServerMessage_UnmuteResponse{UnmuteResponse: &pb.UnmuteResponse{
					ParticipantId: "p-1", AudioApproved: true}}},
				"unmuteResponse",
				`{"participantId":"p-1","audioApproved":true,"videoApproved":false}`,
			},
			{
				&pb.ServerMessage{Message: &pb.ServerMessage_RedirectToMc{RedirectToMc: &pb.RedirectToMc{
					NewMcEndpoint: "https://mc-2:4433", MeetingId: "m", Reason: "draining"}}},
				"redirectToMc",
				`{"newMcEndpoint":"https://mc-2:4433","meetingId":"m","reason":"draining"}`,
			},
			{ // A member the demo does not use is skipped.
				&pb.ServerMessage{Message: &pb.ServerMessage_StreamPublished{StreamPublished: &pb.StreamPublished{
					ParticipantId: "p-1", Stream: &pb.MediaStream{StreamId: "s"}}}},
				"",
				`null`,
			},
		} {
			b, err := proto.Marshal(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			got := eval[string](t, ctx, fmt.Sprintf(`(() => {
				const m = proto.decodeServerMessage(fromB64(%q));
				return JSON.stringify({kind: m.kind ?? '', body: m.kind ? m[m.kind] : null, trace: m.traceParent}, plain);
			})()`, base64.StdEncoding.EncodeToString(b)))
			var gotV struct {
				Kind  string
				Body  any
				Trace string
			}
			if err := json.Unmarshal([]byte(got), &gotV); err != nil {
				t.Fatal(err)
			}
			var want any
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if gotV.Kind != tc.kind || !reflect.DeepEqual(gotV.Body, want) || gotV.Trace != tc.msg.GetTraceParent() {
				t.Errorf("%s: JS decoded %s", tc.kind, got)
			}
		}
	})

	t.Run("encode", func(t *testing.T) {
		frames := eval[[]string](t, ctx, `[
			{joinRequest: {meetingId: 'm-1', joinToken: 'tok', participantName: 'Zoë ✓',
				capabilities: {videoCodecs: ['vp8', 'h264'], audioCodecs: ['opus'], supportsSimulcast: true, maxVideoStreams: 3},
				correlationId: 'c-1', bindingToken: 'b-1'}, traceParent: '00-abc'},
			{muteRequest: {audioMuted: true, videoMuted: false}},
			{muteRequest: {}},
			{hostMuteRequest: {participantId: 'p-2', audioMuted: true, videoMuted: true, reason: 'noise'}},
			{unmuteRequest: {requestAudio: true}},
			{unmuteResponse: {participantId: 'p-1', audioApproved: true, videoApproved: false}},
			{mediaConnectionUpdate: {statuses: [
				{mhUrl: 'https://mh-1/', state: proto.ConnectionState.FAILED, failureReason: 'ICE ✗', failureCode: 'E1',
					observedAt: {seconds: 1764150000, nanos: 5}},
				{mhUrl: 'https://mh-2/', state: proto.ConnectionState.CONNECTED}]}, traceParent: '00-def'},
		].map((m) => toB64(proto.frame(proto.encodeClientMessage(m))))`)
		want := []*pb.ClientMessage{
			{Message: &pb.ClientMessage_JoinRequest{JoinRequest: &pb.JoinRequest{
				MeetingId: "m-1", JoinToken: "tok", ParticipantName: "Zoë ✓",
				Capabilities: &pb.ParticipantCapabilities{VideoCodecs: []string{"vp8", "h264"}, AudioCodecs: []string{"opus"},
					SupportsSimulcast: true, MaxVideoStreams: 3},
				CorrelationId: "c-1", BindingToken: "b-1"}}, TraceParent: "00-abc"},
			{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: true}}},
			{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{}}},
			{Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{
				ParticipantId: "p-2", AudioMuted: true, VideoMuted: true, Reason: "noise"}}},
			{Message: &pb.ClientMessage_UnmuteRequest{UnmuteRequest: &pb.UnmuteRequest{RequestAudio: true}}},
			{Message: &pb.ClientMessage_UnmuteResponse{UnmuteResponse: &pb.UnmuteResponse{ParticipantId: "p-1", AudioApproved: true}}},
			{Message: &pb.ClientMessage_MediaConnectionUpdate{MediaConnectionUpdate: &pb.MediaConnectionUpdate{Statuses: []*pb.MhConnectionStatus{
				{MhUrl: "https://mh-1/", State: pb.ConnectionState_CONNECTION_STATE_FAILED, FailureReason: proto.String("ICE ✗"), FailureCode: proto.String("E1"),
					ObservedAt: &timestamppb.Timestamp{Seconds: 1764150000, Nanos: 5}},
				{MhUrl: "https://mh-2/", State: pb.ConnectionState_CONNECTION_STATE_CONNECTED},
			}}}, TraceParent: "00-def"},
		}
		if len(frames) != len(want) {
			t.Fatalf("%d frames", len(frames))
		}
		for i, f := range frames {
			b, err := base64.StdEncoding.DecodeString(f)
			if err != nil || len(b) < 4 || int(binary.BigEndian.Uint32(b)) != len(b)-4 {
				t.Fatalf("frame %d: bad framing %x", i, b)
			}
			var got pb.ClientMessage
			if err := proto.Unmarshal(b[4:], &got); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !proto.Equal(&got, want[i]) {
				t.Errorf("frame %d: Go decoded %v, want %v", i, &got, want[i])
			}
		}
	})

	t.Run("media handler connect", func(t *testing.T) {
		b64 := eval[string](t, ctx, `toB64(proto.encodeMhClientMessage({connectRequest: {joinToken: 'tok'}, traceParent: '00-x'}))`)
		b, _ := base64.StdEncoding.DecodeString(b64)
		var got pb.MhClientMessage
		if err := proto.Unmarshal(b, &got); err != nil || got.GetConnectRequest().GetJoinToken() != "tok" || got.TraceParent != "00-x" {
			t.Errorf("Go decoded %v, %v", &got, err)
		}
	})

	t.Run("framing", func(t *testing.T) {
		got := eval[[]any](t, ctx, `(() => {
			const r = new proto.FrameReader();
			const stream = new Uint8Array([...proto.frame(new Uint8Array([1])), ...proto.frame(new Uint8Array(0)),
				...proto.frame(new Uint8Array([2, 3]))]);
			const out = [];
			for (const b of stream) for (const f of r.push(Uint8Array.of(b))) out.push(Array.from(f));
			let oversize = '';
			try { new proto.FrameReader().push(new Uint8Array([0, 1, 0, 1])); } catch (e) { oversize = e.message; }
			let exact = 0;
			exact = new proto.FrameReader().push(new Uint8Array([0, 1, 0, 0])).length; // 65536 announced, not yet complete
			return [out, oversize, exact];
		})()`)
		if fmt.Sprint(got) != "[[[1] [] [2 3]] frame too large 0]" {
			t.Errorf("framing: %v", got)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		inputs := [][]byte{
			{0x08, 0x80},                   // truncated varint
			{0x0a, 0x05, 0x01},             // truncated length-delimited
			{0x0b},                         // group wire type
			{0x00, 0x00},                   // field number 0
			{0x3a, 0x03, 0x12, 0x01, 0xff}, // error.message is not UTF-8
			{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // varint over 10 bytes
		}
		rng := rand.New(rand.NewPCG(1, 2))
		valid, _ := proto.Marshal(&pb.ServerMessage{Message: &pb.ServerMessage_JoinResponse{JoinResponse: &pb.JoinResponse{
			ParticipantId: "p", ExistingParticipants: []*pb.Participant{{ParticipantId: "q", Name: "n"}}}}})
		for range 300 {
			b := make([]byte, rng.IntN(40))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			inputs = append(inputs, b)
			m := append([]byte(nil), valid...)
			m[rng.IntN(len(m))] = byte(rng.IntN(256))
			inputs = append(inputs, m[:rng.IntN(len(m)+1)])
		}
		enc := make([]string, len(inputs))
		for i, b := range inputs {
			enc[i] = base64.StdEncoding.EncodeToString(b)
		}
		js, _ := json.Marshal(enc)
		got := eval[[]string](t, ctx, fmt.Sprintf(`%s.map((s) => {
			try { proto.decodeServerMessage(fromB64(s)); return 'ok'; }
			catch (e) { return e instanceof Error ? 'error' : 'odd: ' + String(e); }
		})`, js))
		for i, r := range got {
			if i < 6 && r != "error" {
				t.Errorf("malformed input %x decoded without error", inputs[i])
			}
			if r != "ok" && r != "error" {
				t.Errorf("input %x: %s", inputs[i], r)
			}
		}
	})
}
