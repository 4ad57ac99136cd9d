// Package gctest is a fake Global Controller for tests: a real gRPC
// GlobalControllerService on 127.0.0.1, plaintext or TLS, whose behaviour a
// test sets while it runs (accept, reject, forget MCs, unavailable, slow,
// stopped), and which records every call it receives, with wait helpers
// built on channels.
package gctest

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/edgemc/edgemc/gc/devgc"
	"github.com/edgemc/edgemc/gc/internalpb"
)

// Mode is how the fake GC answers.
type Mode int

const (
	// ModeAccept accepts registrations and heartbeats of registered MCs
	// (NOT_FOUND for others).
	ModeAccept Mode = iota
	// ModeReject refuses registrations (accepted=false) with a message;
	// heartbeats are answered as in ModeAccept.
	ModeReject
	// ModeUnavailable answers every call with UNAVAILABLE (calls are still
	// recorded, with OK false). Stop makes the GC unreachable instead.
	ModeUnavailable
	// ModeSlow holds every call, unrecorded, until the caller gives up.
	ModeSlow
)

// Call is one recorded call.
type Call[T proto.Message] struct {
	Req   T
	At    time.Time
	Token string // bearer token sent, "" if none
	// TraceParent is the call's traceparent metadata, "" if none.
	TraceParent string
	// OK reports whether the call was answered with success (a
	// registration accepted, a heartbeat acknowledged).
	OK bool
}

// GC is the fake Global Controller. It is safe for concurrent use.
type GC struct {
	t    testing.TB
	addr string
	tls  *tls.Config // nil: plaintext

	mu        sync.Mutex
	srv       *grpc.Server
	mode      Mode
	rejectMsg string
	fastMS    uint64
	compMS    uint64
	known     map[string]bool
	regs      []Call[*internalpb.RegisterMCRequest]
	fasts     []Call[*internalpb.FastHeartbeatRequest]
	comps     []Call[*internalpb.ComprehensiveHeartbeatRequest]
	ended     []Call[*internalpb.NotifyMeetingEndedRequest]
	changed   chan struct{} // closed and replaced whenever a call is recorded
	stopping  chan struct{} // closed when the server stops, releasing slow calls
}

// Start serves a fake GC in ModeAccept (intervals left to the MC's
// defaults) on 127.0.0.1:0 until the test ends.
func Start(t testing.TB) *GC {
	t.Helper()
	return StartTLS(t, nil)
}

// StartTLS is Start serving TLS with cfg (nil serves plaintext). cfg may use
// GetCertificate to change certificates while the fake GC runs.
func StartTLS(t testing.TB, cfg *tls.Config) *GC {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gctest: listen: %v", err)
	}
	g := &GC{t: t, addr: lis.Addr().String(), tls: cfg, known: map[string]bool{}, changed: make(chan struct{})}
	g.serve(lis)
	t.Cleanup(g.Stop)
	return g
}

// Addr is the "127.0.0.1:port" the fake GC listens on.
func (g *GC) Addr() string { return g.addr }

// Target is Addr as a gc-url: "http://127.0.0.1:port", or https:// when the
// fake GC serves TLS.
func (g *GC) Target() string {
	if g.tls != nil {
		return "https://" + g.addr
	}
	return "http://" + g.addr
}

// Accept switches to ModeAccept, telling registering MCs these heartbeat
// intervals (0 leaves the MC's defaults).
func (g *GC) Accept(fast, comprehensive time.Duration) {
	g.mu.Lock()
	g.mode, g.fastMS, g.compMS = ModeAccept, uint64(fast.Milliseconds()), uint64(comprehensive.Milliseconds())
	g.mu.Unlock()
}

// Reject switches to ModeReject with the given message.
func (g *GC) Reject(message string) {
	g.mu.Lock()
	g.mode, g.rejectMsg = ModeReject, message
	g.mu.Unlock()
}

// Unavailable switches to ModeUnavailable.
func (g *GC) Unavailable() { g.setMode(ModeUnavailable) }

// Slow switches to ModeSlow.
func (g *GC) Slow() { g.setMode(ModeSlow) }

func (g *GC) setMode(m Mode) { g.mu.Lock(); g.mode = m; g.mu.Unlock() }

// Forget drops every registered MC, so their next heartbeats get NOT_FOUND
// (as from a restarted GC); registrations are still accepted in ModeAccept.
func (g *GC) Forget() { g.mu.Lock(); clear(g.known); g.mu.Unlock() }

// Stop stops serving (connections are refused); Restart serves again.
func (g *GC) Stop() {
	g.mu.Lock()
	srv := g.srv
	g.srv = nil
	if srv != nil {
		close(g.stopping)
	}
	g.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// Restart serves again on the same address after Stop, having forgotten
// every MC, as a restarted GC would.
func (g *GC) Restart() {
	g.t.Helper()
	lis, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatalf("gctest: re-listen on %s: %v", g.addr, err)
	}
	g.Forget()
	g.serve(lis)
}

func (g *GC) serve(lis net.Listener) {
	var opts []grpc.ServerOption
	if g.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(g.tls)))
	}
	srv := grpc.NewServer(opts...)
	internalpb.RegisterGlobalControllerServiceServer(srv, service{g: g})
	g.mu.Lock()
	g.srv, g.stopping = srv, make(chan struct{})
	g.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
}

// Registrations returns the recorded RegisterMC calls.
func (g *GC) Registrations() []Call[*internalpb.RegisterMCRequest] { return snapshot(g, &g.regs) }

// Fast returns the recorded FastHeartbeat calls.
func (g *GC) Fast() []Call[*internalpb.FastHeartbeatRequest] { return snapshot(g, &g.fasts) }

// Comprehensive returns the recorded ComprehensiveHeartbeat calls.
func (g *GC) Comprehensive() []Call[*internalpb.ComprehensiveHeartbeatRequest] {
	return snapshot(g, &g.comps)
}

// MeetingsEnded returns the recorded NotifyMeetingEnded calls.
func (g *GC) MeetingsEnded() []Call[*internalpb.NotifyMeetingEndedRequest] {
	return snapshot(g, &g.ended)
}

// WaitRegistrations waits until n RegisterMC calls were recorded.
func (g *GC) WaitRegistrations(ctx context.Context, n int) ([]Call[*internalpb.RegisterMCRequest], error) {
	return waitN(ctx, g, &g.regs, n)
}

// WaitFast waits until n FastHeartbeat calls were recorded.
func (g *GC) WaitFast(ctx context.Context, n int) ([]Call[*internalpb.FastHeartbeatRequest], error) {
	return waitN(ctx, g, &g.fasts, n)
}

// WaitComprehensive waits until n ComprehensiveHeartbeat calls were recorded.
func (g *GC) WaitComprehensive(ctx context.Context, n int) ([]Call[*internalpb.ComprehensiveHeartbeatRequest], error) {
	return waitN(ctx, g, &g.comps, n)
}

// WaitMeetingsEnded waits until n NotifyMeetingEnded calls were recorded.
func (g *GC) WaitMeetingsEnded(ctx context.Context, n int) ([]Call[*internalpb.NotifyMeetingEndedRequest], error) {
	return waitN(ctx, g, &g.ended, n)
}

func snapshot[T proto.Message](g *GC, calls *[]Call[T]) []Call[T] {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Call[T](nil), (*calls)...)
}

func waitN[T proto.Message](ctx context.Context, g *GC, calls *[]Call[T], n int) ([]Call[T], error) {
	for {
		g.mu.Lock()
		got, changed := len(*calls), g.changed
		g.mu.Unlock()
		if got >= n {
			return snapshot(g, calls), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return snapshot(g, calls), ctx.Err()
		}
	}
}

// record appends a call under g.mu and wakes the waiters.
func record[T proto.Message](g *GC, calls *[]Call[T], c Call[T]) {
	*calls = append(*calls, c)
	close(g.changed)
	g.changed = make(chan struct{})
}

// Assign calls AssignMeetingWithMh on the MC at mcAddr with a service token
// ("" sends none).
func Assign(ctx context.Context, mcAddr, token string, req *internalpb.AssignMeetingWithMhRequest) (*internalpb.AssignMeetingWithMhResponse, error) {
	return devgc.Assign(ctx, mcAddr, token, req)
}

// AssignTLS is Assign over TLS with cfg, as a GC calling an MC whose
// gRPC server has a certificate (and, for mutual TLS, with cfg's client
// certificate).
func AssignTLS(ctx context.Context, mcAddr, token string, cfg *tls.Config, req *internalpb.AssignMeetingWithMhRequest) (*internalpb.AssignMeetingWithMhResponse, error) {
	conn, err := grpc.NewClient(strings.TrimPrefix(mcAddr, "https://"), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return internalpb.NewMeetingControllerServiceClient(conn).AssignMeetingWithMh(ctx, req)
}

type service struct {
	internalpb.UnimplementedGlobalControllerServiceServer
	g *GC
}

func traceParent(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("traceparent"); len(v) > 0 {
		return v[0]
	}
	return ""
}

func bearer(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok {
			return tok
		}
	}
	return ""
}

var errUnavailable = status.Error(codes.Unavailable, "gctest: unavailable")

// hold keeps a call waiting in ModeSlow until the caller gives up or the
// server stops.
func (s service) hold(ctx context.Context) error {
	g := s.g
	g.mu.Lock()
	slow, stopping := g.mode == ModeSlow, g.stopping
	g.mu.Unlock()
	if !slow {
		return nil
	}
	select {
	case <-ctx.Done():
	case <-stopping:
	}
	return status.Error(codes.DeadlineExceeded, "gctest: slow")
}

func (s service) RegisterMC(ctx context.Context, req *internalpb.RegisterMCRequest) (*internalpb.RegisterMCResponse, error) {
	if err := s.hold(ctx); err != nil {
		return nil, err
	}
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	accept := g.mode == ModeAccept
	record(g, &g.regs, Call[*internalpb.RegisterMCRequest]{Req: req, At: time.Now(), Token: bearer(ctx), TraceParent: traceParent(ctx), OK: accept})
	switch {
	case g.mode == ModeUnavailable:
		return nil, errUnavailable
	case !accept:
		return &internalpb.RegisterMCResponse{Accepted: false, Message: g.rejectMsg}, nil
	}
	g.known[req.GetId()] = true
	return &internalpb.RegisterMCResponse{
		Accepted: true, Message: "welcome",
		FastHeartbeatIntervalMs: g.fastMS, ComprehensiveHeartbeatIntervalMs: g.compMS,
	}, nil
}

// heartbeat records one heartbeat and answers it: UNAVAILABLE in that mode,
// NOT_FOUND for an MC not registered, else acknowledged.
func heartbeat[T proto.Message](ctx context.Context, s service, calls *[]Call[T], id string, req T) error {
	if err := s.hold(ctx); err != nil {
		return err
	}
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	known := g.known[id] && g.mode != ModeUnavailable
	record(g, calls, Call[T]{Req: req, At: time.Now(), Token: bearer(ctx), TraceParent: traceParent(ctx), OK: known})
	switch {
	case g.mode == ModeUnavailable:
		return errUnavailable
	case !known:
		return status.Error(codes.NotFound, "gctest: unknown MC")
	}
	return nil
}

func (s service) FastHeartbeat(ctx context.Context, req *internalpb.FastHeartbeatRequest) (*internalpb.FastHeartbeatResponse, error) {
	if err := heartbeat(ctx, s, &s.g.fasts, req.GetControllerId(), req); err != nil {
		return nil, err
	}
	return &internalpb.FastHeartbeatResponse{Acknowledged: true, Timestamp: uint64(time.Now().Unix())}, nil
}

func (s service) ComprehensiveHeartbeat(ctx context.Context, req *internalpb.ComprehensiveHeartbeatRequest) (*internalpb.ComprehensiveHeartbeatResponse, error) {
	if err := heartbeat(ctx, s, &s.g.comps, req.GetControllerId(), req); err != nil {
		return nil, err
	}
	return &internalpb.ComprehensiveHeartbeatResponse{Acknowledged: true, Timestamp: uint64(time.Now().Unix())}, nil
}

func (s service) NotifyMeetingEnded(ctx context.Context, req *internalpb.NotifyMeetingEndedRequest) (*internalpb.NotifyMeetingEndedResponse, error) {
	if err := s.hold(ctx); err != nil {
		return nil, err
	}
	g := s.g
	g.mu.Lock()
	defer g.mu.Unlock()
	ok := g.mode != ModeUnavailable
	record(g, &g.ended, Call[*internalpb.NotifyMeetingEndedRequest]{Req: req, At: time.Now(), Token: bearer(ctx), TraceParent: traceParent(ctx), OK: ok})
	if !ok {
		return nil, errUnavailable
	}
	return &internalpb.NotifyMeetingEndedResponse{Acknowledged: true}, nil
}
