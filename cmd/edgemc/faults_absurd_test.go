package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// rawCodec sends request bytes as they are, so a test can send what no
// generated client would: unknown fields, unknown enum numbers, garbage.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }

func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// TestFaultAbsurdGRPC sends edgemc gRPC requests with absurd values: each
// gets a clean status (never Unknown, never a hang or a crash), and edgemc
// still assigns meetings afterwards.
func TestFaultAbsurdGRPC(t *testing.T) {
	t.Parallel()
	issuer := devissuer.NewIssuer()
	mc := startFaultMC(t, "", issuer)
	conn, err := grpc.NewClient(mc.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	gcCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+issuer.ServiceToken("gc-1", "global-controller"))
	mhCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+issuer.ServiceToken("mh-1", "media-handler"))
	const (
		assignMethod       = "/dark_tower.internal.v1.MeetingControllerService/AssignMeetingWithMh"
		disconnectedMethod = "/dark_tower.internal.v1.MediaCoordinationService/NotifyParticipantDisconnected"
	)
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tenMB := strings.Repeat("x", 10<<20)
	mh := &internalpb.MhAssignment{MhId: "mh-1", WebtransportEndpoint: "https://mh-1.example/", GrpcEndpoint: "http://127.0.0.1:1"}
	// A valid assignment, then an MH assignment carrying its reserved
	// field 3, and an unknown field 99 with an absurd varint.
	withUnknown := marshal(&internalpb.AssignMeetingWithMhRequest{MeetingId: "m-unknown-fields", RequestingGcId: "gc-1"})
	mhRaw := protowire.AppendVarint(protowire.AppendTag(marshal(mh), 3, protowire.VarintType), 1<<63)
	withUnknown = protowire.AppendBytes(protowire.AppendTag(withUnknown, 2, protowire.BytesType), mhRaw)
	withUnknown = protowire.AppendVarint(protowire.AppendTag(withUnknown, 99, protowire.VarintType), 1<<64-1)
	// reason is field 4 of NotifyParticipantDisconnectedRequest; 12345 is
	// no DisconnectReason.
	unknownEnum := protowire.AppendVarint(protowire.AppendTag(
		marshal(&internalpb.NotifyParticipantDisconnectedRequest{MeetingId: "m", ParticipantId: "p", HandlerId: "mh-1"}),
		4, protowire.VarintType), 12345)

	for _, tc := range []struct {
		name   string
		ctx    context.Context
		method string
		req    []byte
		want   codes.Code
	}{
		{"empty request", gcCtx, assignMethod, nil, codes.InvalidArgument},
		{"empty meeting id", gcCtx, assignMethod, marshal(&internalpb.AssignMeetingWithMhRequest{MhAssignments: []*internalpb.MhAssignment{mh}}), codes.InvalidArgument},
		{"empty mh id", gcCtx, assignMethod, marshal(&internalpb.AssignMeetingWithMhRequest{MeetingId: "m", MhAssignments: []*internalpb.MhAssignment{{}}}), codes.InvalidArgument},
		{"10 MB meeting id", gcCtx, assignMethod, marshal(&internalpb.AssignMeetingWithMhRequest{MeetingId: tenMB}), codes.ResourceExhausted},
		{"10 MB gc id", gcCtx, assignMethod, marshal(&internalpb.AssignMeetingWithMhRequest{MeetingId: "m", RequestingGcId: tenMB}), codes.ResourceExhausted},
		{"not protobuf", gcCtx, assignMethod, []byte{0xff, 0xff, 0xff, 0xff}, codes.Internal},
		{"unknown fields and a reserved one", gcCtx, assignMethod, withUnknown, codes.OK},
		{"unknown enum number, acknowledged", mhCtx, disconnectedMethod, unknownEnum, codes.OK},
		{"unknown enum number, wrong caller", gcCtx, disconnectedMethod, unknownEnum, codes.PermissionDenied},
		{"unknown method", gcCtx, "/dark_tower.internal.v1.MeetingControllerService/Nope", nil, codes.PermissionDenied},
		// edgemc advertises 16 KiB of headers at most: the client does
		// not even send it.
		{"1 MiB bearer token", metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tenMB[:1<<20]), assignMethod, nil, codes.Internal},
		{"12 KiB bearer token", metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tenMB[:12<<10]), assignMethod, nil, codes.Unauthenticated},
	} {
		var resp []byte
		err := conn.Invoke(tc.ctx, tc.method, &tc.req, &resp, grpc.ForceCodec(rawCodec{}))
		if got := status.Code(err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	mc.mustAssign(t, "m-after-absurd")
	mc.mustJoin(t, "m-after-absurd", "user-1")
	assertNoCrash(t, mc.edgemcProc)
}

// TestFaultAbsurdSignaling sends absurd first frames: each is refused with
// INVALID_REQUEST (or UNAUTHORIZED for a token that is no token) and the
// session closed, and real clients still join.
func TestFaultAbsurdSignaling(t *testing.T) {
	t.Parallel()
	mc := startFaultMC(t, "", devissuer.NewIssuer())
	mc.mustAssign(t, "m-absurd")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	frame := func(m *pb.ClientMessage) []byte {
		b, err := webtransport.AppendFrame(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	join := func(r *pb.JoinRequest) []byte {
		return frame(&pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: r}})
	}
	token := mc.issuer.MeetingToken("u", "m-absurd")
	for _, tc := range []struct {
		name  string
		frame []byte
		want  pb.ErrorCode
	}{
		{"10 MB length prefix", binary.BigEndian.AppendUint32(nil, 10<<20), pb.ErrorCode_INVALID_REQUEST},
		{"empty frame", []byte{0, 0, 0, 0}, pb.ErrorCode_INVALID_REQUEST},
		{"not protobuf", []byte{0, 0, 0, 2, 0xff, 0xff}, pb.ErrorCode_INVALID_REQUEST},
		{"unknown enum number first", frame(&pb.ClientMessage{Message: &pb.ClientMessage_PublishStream{PublishStream: &pb.PublishStream{StreamType: pb.StreamType(12345)}}}), pb.ErrorCode_INVALID_REQUEST},
		{"empty join", join(&pb.JoinRequest{}), pb.ErrorCode_UNAUTHORIZED},
		{"64 KiB token", join(&pb.JoinRequest{MeetingId: "m-absurd", JoinToken: strings.Repeat("a.", 32<<10-16)}), pb.ErrorCode_UNAUTHORIZED},
		{"name over 256 bytes", join(&pb.JoinRequest{MeetingId: "m-absurd", JoinToken: token, ParticipantName: strings.Repeat("n", 257)}), pb.ErrorCode_INVALID_REQUEST},
		{"meeting id mismatch", join(&pb.JoinRequest{MeetingId: strings.Repeat("m", 60<<10), JoinToken: token}), pb.ErrorCode_UNAUTHORIZED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := mc.dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Abort()
			if err := conn.SendRaw(tc.frame); err != nil {
				t.Fatal(err)
			}
			m, err := conn.Recv(ctx)
			if err != nil || m.GetError().GetCode() != tc.want {
				t.Fatalf("answered %v (%v), want %v", m, err, tc.want)
			}
			_, err = conn.Recv(ctx)
			var closed *webtransport.SessionClosedError
			if !errors.As(err, &closed) {
				t.Errorf("after the error the session ended with %v, want a close", err)
			}
		})
	}
	for i := range 3 {
		mc.mustJoin(t, "m-absurd", fmt.Sprintf("user-%d", i))
	}
	assertNoCrash(t, mc.edgemcProc)
}
