package gc

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/gc/tracectx"
)

type mediaEvents struct {
	mu     sync.Mutex
	events []MediaEvent
	traces []string
}

func (m *mediaEvents) MediaEvent(ctx context.Context, e MediaEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events = append(m.events, e)
	id := ""
	if tr, ok := tracectx.From(ctx); ok {
		id = tr.TraceIDString()
	}
	m.traces = append(m.traces, id)
}

func startMediaServer(t *testing.T) (internalpb.MediaCoordinationServiceClient, *devissuer.Issuer, *mediaEvents) {
	t.Helper()
	iss := devissuer.NewIssuer()
	rec := &mediaEvents{}
	srv := NewServer(ServerConfig{
		Verifier: auth.NewVerifier(auth.NewStaticKeys(iss.PublicKey()), auth.VerifierOptions{}),
		Logger:   slog.New(slog.DiscardHandler),
		Media:    rec,
	}, &heldAssigner{held: map[string][]MHAssignment{}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return internalpb.NewMediaCoordinationServiceClient(conn), iss, rec
}

func TestMediaCoordination(t *testing.T) {
	client, iss, rec := startMediaServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mhTok := iss.ServiceToken("mh-1", ServiceTypeMediaHandler)

	// Only a media handler may call it.
	for name, tok := range map[string]string{
		"GC token":             iss.ServiceToken("gc-1", ServiceTypeGC),
		"MC token":             iss.ServiceToken("mc-2", "meeting-controller"),
		"media handler, scope": iss.ServiceToken("mh-1", ServiceTypeMediaHandler, devissuer.WithScopes("service.write.mh")),
	} {
		_, err := client.NotifyParticipantConnected(withToken(ctx, tok), &internalpb.NotifyParticipantConnectedRequest{MeetingId: "m", ParticipantId: "u", HandlerId: "mh-1"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PERMISSION_DENIED", name, err)
		}
	}
	if _, err := client.NotifyParticipantConnected(ctx, &internalpb.NotifyParticipantConnectedRequest{MeetingId: "m", ParticipantId: "u", HandlerId: "mh-1"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token: %v, want UNAUTHENTICATED", err)
	}

	// Ids are 1..256 bytes.
	long := strings.Repeat("x", 257)
	for _, req := range []*internalpb.NotifyParticipantConnectedRequest{
		{ParticipantId: "u", HandlerId: "mh-1"},
		{MeetingId: "m", HandlerId: "mh-1"},
		{MeetingId: "m", ParticipantId: "u"},
		{MeetingId: long, ParticipantId: "u", HandlerId: "mh-1"},
		{MeetingId: "m", ParticipantId: long, HandlerId: "mh-1"},
		{MeetingId: "m", ParticipantId: "u", HandlerId: long},
	} {
		if _, err := client.NotifyParticipantConnected(withToken(ctx, mhTok), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want INVALID_ARGUMENT", req, err)
		}
	}
	if _, err := client.NotifyParticipantDisconnected(withToken(ctx, mhTok), &internalpb.NotifyParticipantDisconnectedRequest{MeetingId: "m", HandlerId: "mh-1"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("disconnect without participant: %v", err)
	}
	if len(rec.events) != 0 {
		t.Fatalf("refused calls reached the coordinator: %+v", rec.events)
	}

	// Valid calls are acknowledged and passed on with their trace.
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tctx := metadata.AppendToOutgoingContext(withToken(ctx, mhTok), "traceparent", parent)
	r1, err := client.NotifyParticipantConnected(tctx, &internalpb.NotifyParticipantConnectedRequest{MeetingId: "m", ParticipantId: strings.Repeat("u", 256), HandlerId: "mh-1"})
	if err != nil || !r1.Acknowledged {
		t.Fatalf("connected: %v %v", r1, err)
	}
	r2, err := client.NotifyParticipantDisconnected(withToken(ctx, mhTok), &internalpb.NotifyParticipantDisconnectedRequest{
		MeetingId: "m", ParticipantId: "u", HandlerId: "mh-1", Reason: internalpb.DisconnectReason(99)})
	if err != nil || !r2.Acknowledged {
		t.Fatalf("disconnected: %v %v", r2, err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.events) != 2 || !rec.events[0].Connected || rec.events[1].Connected ||
		rec.events[1].Reason != internalpb.DisconnectReason_DISCONNECT_REASON_UNSPECIFIED {
		t.Fatalf("events %+v", rec.events)
	}
	if rec.traces[0] != "4bf92f3577b34da6a3ce929d0e0e4736" || rec.traces[1] != "" {
		t.Fatalf("traces %q", rec.traces)
	}
}
