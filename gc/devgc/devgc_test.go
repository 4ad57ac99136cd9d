package devgc_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/edgemc/edgemc/gc/devgc"
	"github.com/edgemc/edgemc/gc/internalpb"
)

// mc is a bare MeetingControllerService that records the bearer token and
// accepts up to max meetings.
type mc struct {
	internalpb.UnimplementedMeetingControllerServiceServer
	max   int
	held  map[string]bool
	token chan string
}

func (m *mc) AssignMeetingWithMh(ctx context.Context, req *internalpb.AssignMeetingWithMhRequest) (*internalpb.AssignMeetingWithMhResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) == 1 {
		m.token <- v[0]
	}
	if !m.held[req.GetMeetingId()] && len(m.held) >= m.max {
		return &internalpb.AssignMeetingWithMhResponse{RejectionReason: internalpb.RejectionReason_REJECTION_REASON_AT_CAPACITY}, nil
	}
	m.held[req.GetMeetingId()] = true
	return &internalpb.AssignMeetingWithMhResponse{Accepted: true}, nil
}

func serve(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestDevGC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g := devgc.New(devgc.Config{FastInterval: time.Second, Logger: slog.New(slog.DiscardHandler)})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- g.Serve(serveCtx, lis) }()

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := internalpb.NewGlobalControllerServiceClient(conn)

	if _, err := client.FastHeartbeat(ctx, &internalpb.FastHeartbeatRequest{ControllerId: "mc-1"}); err == nil {
		t.Fatal("heartbeat before registration accepted")
	}
	resp, err := client.RegisterMC(ctx, &internalpb.RegisterMCRequest{Id: "mc-1", GrpcEndpoint: "http://127.0.0.1:1", MaxMeetings: 5})
	if err != nil || !resp.GetAccepted() || resp.GetFastHeartbeatIntervalMs() != 1000 || resp.GetComprehensiveHeartbeatIntervalMs() != 30000 {
		t.Fatalf("RegisterMC = %v, %v", resp, err)
	}
	if _, err := client.FastHeartbeat(ctx, &internalpb.FastHeartbeatRequest{
		ControllerId: "mc-1", Health: internalpb.HealthStatus_HEALTHY,
		Capacity: &internalpb.ControllerCapacity{CurrentMeetings: 2, CurrentParticipants: 9},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.ComprehensiveHeartbeat(ctx, &internalpb.ComprehensiveHeartbeatRequest{
		ControllerId: "mc-1", CpuUsagePercent: 12.5,
		Capacity: &internalpb.ControllerCapacity{CurrentMeetings: 2, CurrentParticipants: 9},
	}); err != nil {
		t.Fatal(err)
	}

	m := &mc{max: 1, held: map[string]bool{}, token: make(chan string, 10)}
	mcAddr := serve(t, func(s *grpc.Server) { internalpb.RegisterMeetingControllerServiceServer(s, m) })
	for range 2 { // the second assignment of the same meeting is accepted too
		if err := g.AssignDemo(ctx, "http://"+mcAddr, "demo", "service-token"); err != nil {
			t.Fatal(err)
		}
	}
	if tok := <-m.token; tok != "Bearer service-token" {
		t.Fatalf("authorization = %q", tok)
	}
	var rej *devgc.RejectedError
	if err := g.AssignDemo(ctx, mcAddr, "other", "service-token"); !errors.As(err, &rej) ||
		rej.Reason != internalpb.RejectionReason_REJECTION_REASON_AT_CAPACITY {
		t.Fatalf("assignment over capacity: %v", err)
	}
	if _, err := client.NotifyMeetingEnded(ctx, &internalpb.NotifyMeetingEndedRequest{MeetingId: "demo"}); err != nil {
		t.Fatal(err)
	}

	st := g.Status()
	if len(st.MCs) != 1 || st.MCs[0].ID != "mc-1" || st.MCs[0].CurrentParticipants != 9 || st.MCs[0].CPUPercent != 12.5 ||
		st.MCs[0].LastFast.IsZero() || st.MCs[0].LastComprehensive.IsZero() {
		t.Fatalf("MCs = %+v", st.MCs)
	}
	if len(st.Meetings) != 2 || st.Meetings[0].ID != "demo" || !st.Meetings[0].Ended ||
		st.Meetings[1].Accepted || st.Meetings[1].RejectionReason != "REJECTION_REASON_AT_CAPACITY" {
		t.Fatalf("meetings = %+v", st.Meetings)
	}

	stop()
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v", err)
	}
}
