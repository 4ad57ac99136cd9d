// Package devgc is a DEVELOPMENT Global Controller: it accepts every MC
// registration, takes heartbeats, records meeting-ended notifications and can
// assign a demo meeting to an MC.
//
// It is a development stand-in for Dark Tower's Global Controller, used by
// `edgemc lab` (inside the same process, on loopback), by the load generator
// and bench tools, and by tests; `edgemc serve` never uses it on its
// production path. It keeps state in memory only, trusts every caller (no
// token is checked) and talks plaintext gRPC. Serve it on loopback only.
package devgc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/internalpb"
)

// Config configures the development GC. Zero values select defaults.
type Config struct {
	ID                                  string        // requesting_gc_id of assignments ("gcdev")
	FastInterval, ComprehensiveInterval time.Duration // told to MCs (10 s, 30 s)
	RPCTimeout                          time.Duration // for calls to MCs (10 s)
	Logger                              *slog.Logger  // nil discards
	// MediaHandlers are assigned with the demo meeting (none by default).
	MediaHandlers []*internalpb.MhAssignment
}

// MC is what the development GC knows of one registered MC.
type MC struct {
	ID, Region, GRPCEndpoint, WebTransportEndpoint string
	MaxMeetings, MaxParticipants                   uint32
	CurrentMeetings, CurrentParticipants           uint32
	Health                                         string
	CPUPercent, MemoryPercent                      float32
	RegisteredAt, LastFast, LastComprehensive      time.Time
}

// Meeting is one meeting the development GC assigned.
type Meeting struct {
	ID, MCAddr       string
	Accepted         bool
	RejectionReason  string
	AssignedAt       time.Time
	Ended            bool
	LastAttemptError string
}

// Status is a snapshot for a status page.
type Status struct {
	ID       string
	MCs      []MC
	Meetings []Meeting
}

// GC is the development Global Controller. It is safe for concurrent use.
type GC struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	mcs      map[string]*MC
	meetings map[string]*Meeting
}

// New returns a development GC; Serve starts it.
func New(cfg Config) *GC {
	if cfg.ID == "" {
		cfg.ID = "gcdev"
	}
	if cfg.FastInterval <= 0 {
		cfg.FastInterval = 10 * time.Second
	}
	if cfg.ComprehensiveInterval <= 0 {
		cfg.ComprehensiveInterval = 30 * time.Second
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &GC{cfg: cfg, log: cfg.Logger, mcs: map[string]*MC{}, meetings: map[string]*Meeting{}}
}

// Serve serves GlobalControllerService on lis until ctx is done, then stops
// gracefully and returns nil.
func (g *GC) Serve(ctx context.Context, lis net.Listener) error {
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 10))
	internalpb.RegisterGlobalControllerServiceServer(srv, service{g: g})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("devgc: serving: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	<-errc
	return nil
}

// Status returns a snapshot, MCs and meetings sorted by id.
func (g *GC) Status() Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := Status{ID: g.cfg.ID}
	for _, mc := range g.mcs {
		s.MCs = append(s.MCs, *mc)
	}
	for _, m := range g.meetings {
		s.Meetings = append(s.Meetings, *m)
	}
	sort.Slice(s.MCs, func(i, j int) bool { return s.MCs[i].ID < s.MCs[j].ID })
	sort.Slice(s.Meetings, func(i, j int) bool { return s.Meetings[i].ID < s.Meetings[j].ID })
	return s
}

// RejectedError is an MC's refusal of an assignment.
type RejectedError struct {
	Reason internalpb.RejectionReason
}

func (e *RejectedError) Error() string {
	return "devgc: assignment rejected: " + e.Reason.String()
}

// AssignDemo assigns meetingID (with Config.MediaHandlers) to the MC serving
// gRPC at mcGRPCAddr, authenticating with the service token. Calling it
// again for a held meeting is harmless: MCs accept re-assignment.
func (g *GC) AssignDemo(ctx context.Context, mcGRPCAddr, meetingID, token string) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RPCTimeout)
	defer cancel()
	resp, err := Assign(ctx, mcGRPCAddr, token, &internalpb.AssignMeetingWithMhRequest{
		MeetingId:      meetingID,
		MhAssignments:  g.cfg.MediaHandlers,
		RequestingGcId: g.cfg.ID,
	})
	if err == nil && !resp.GetAccepted() {
		err = &RejectedError{Reason: resp.GetRejectionReason()}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.meetings[meetingID]
	if m == nil {
		m = &Meeting{ID: meetingID}
		g.meetings[meetingID] = m
	}
	was := *m
	m.MCAddr, m.LastAttemptError = mcGRPCAddr, ""
	switch rej := (*RejectedError)(nil); {
	case errors.As(err, &rej):
		m.Accepted, m.RejectionReason = false, rej.Reason.String()
	case err != nil:
		m.LastAttemptError = err.Error()
		return err
	default:
		if !m.Accepted || m.Ended {
			m.AssignedAt = time.Now()
		}
		m.Accepted, m.Ended, m.RejectionReason = true, false, ""
	}
	if was.Accepted != m.Accepted || was.RejectionReason != m.RejectionReason || was.MCAddr != m.MCAddr {
		g.log.Info("devgc: meeting assignment", "meeting_id", meetingID, "mc", mcGRPCAddr,
			"accepted", m.Accepted, "rejection_reason", m.RejectionReason)
	}
	return err
}

// Assign calls MeetingControllerService.AssignMeetingWithMh on the MC at
// mcAddr ("host:port" or "http://host:port", plaintext), sending token as
// "authorization: Bearer <token>" unless it is empty.
func Assign(ctx context.Context, mcAddr, token string, req *internalpb.AssignMeetingWithMhRequest) (*internalpb.AssignMeetingWithMhResponse, error) {
	conn, err := grpc.NewClient(strings.TrimPrefix(mcAddr, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("devgc: MC client: %w", err)
	}
	defer conn.Close()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	resp, err := internalpb.NewMeetingControllerServiceClient(conn).AssignMeetingWithMh(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("devgc: AssignMeetingWithMh: %w", err)
	}
	return resp, nil
}

// service adapts GC to the generated server interface.
type service struct {
	internalpb.UnimplementedGlobalControllerServiceServer
	g *GC
}

func (s service) RegisterMC(_ context.Context, req *internalpb.RegisterMCRequest) (*internalpb.RegisterMCResponse, error) {
	if req.GetId() == "" {
		return &internalpb.RegisterMCResponse{Accepted: false, Message: "id is required"}, nil
	}
	g := s.g
	g.mu.Lock()
	_, again := g.mcs[req.GetId()]
	g.mcs[req.GetId()] = &MC{
		ID: req.GetId(), Region: req.GetRegion(),
		GRPCEndpoint: req.GetGrpcEndpoint(), WebTransportEndpoint: req.GetWebtransportEndpoint(),
		MaxMeetings: req.GetMaxMeetings(), MaxParticipants: req.GetMaxParticipants(),
		Health: internalpb.HealthStatus_PENDING.String(), RegisteredAt: time.Now(),
	}
	g.mu.Unlock()
	g.log.Info("devgc: MC registered", "mc_id", req.GetId(), "again", again,
		"grpc", req.GetGrpcEndpoint(), "webtransport", req.GetWebtransportEndpoint())
	return &internalpb.RegisterMCResponse{
		Accepted:                         true,
		Message:                          "registered with the development GC",
		FastHeartbeatIntervalMs:          uint64(g.cfg.FastInterval.Milliseconds()),
		ComprehensiveHeartbeatIntervalMs: uint64(g.cfg.ComprehensiveInterval.Milliseconds()),
	}, nil
}

// beat applies one heartbeat to a known MC, or answers NOT_FOUND.
func (s service) beat(id string, c *internalpb.ControllerCapacity, h internalpb.HealthStatus, f func(*MC)) error {
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	mc := g.mcs[id]
	if mc == nil {
		return status.Error(codes.NotFound, "MC not registered")
	}
	mc.CurrentMeetings, mc.CurrentParticipants = c.GetCurrentMeetings(), c.GetCurrentParticipants()
	mc.Health = h.String()
	f(mc)
	return nil
}

func (s service) FastHeartbeat(_ context.Context, req *internalpb.FastHeartbeatRequest) (*internalpb.FastHeartbeatResponse, error) {
	err := s.beat(req.GetControllerId(), req.GetCapacity(), req.GetHealth(), func(mc *MC) { mc.LastFast = time.Now() })
	if err != nil {
		return nil, err
	}
	return &internalpb.FastHeartbeatResponse{Acknowledged: true, Timestamp: uint64(time.Now().Unix())}, nil
}

func (s service) ComprehensiveHeartbeat(_ context.Context, req *internalpb.ComprehensiveHeartbeatRequest) (*internalpb.ComprehensiveHeartbeatResponse, error) {
	err := s.beat(req.GetControllerId(), req.GetCapacity(), req.GetHealth(), func(mc *MC) {
		mc.LastComprehensive = time.Now()
		mc.CPUPercent, mc.MemoryPercent = req.GetCpuUsagePercent(), req.GetMemoryUsagePercent()
	})
	if err != nil {
		return nil, err
	}
	return &internalpb.ComprehensiveHeartbeatResponse{Acknowledged: true, Timestamp: uint64(time.Now().Unix())}, nil
}

func (s service) NotifyMeetingEnded(_ context.Context, req *internalpb.NotifyMeetingEndedRequest) (*internalpb.NotifyMeetingEndedResponse, error) {
	g := s.g
	g.mu.Lock()
	if m := g.meetings[req.GetMeetingId()]; m != nil {
		m.Ended, m.Accepted = true, false
	}
	g.mu.Unlock()
	g.log.Info("devgc: meeting ended", "meeting_id", req.GetMeetingId())
	return &internalpb.NotifyMeetingEndedResponse{Acknowledged: true}, nil
}
