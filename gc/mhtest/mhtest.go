// Package mhtest is a fake Dark Tower media handler for tests: a real gRPC
// MediaHandlerService on 127.0.0.1 whose answer to RegisterMeeting a test
// sets while it runs (accept, refuse, fail, hang), recording every call
// with its bearer token and trace context, with wait helpers built on
// channels.
package mhtest

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/internalpb"
)

// Call is one recorded RegisterMeeting.
type Call struct {
	Req         *internalpb.RegisterMeetingRequest
	At          time.Time
	Token       string // bearer token, "" if none
	TraceParent string
	Accepted    bool // what the fake answered (false also for errors and hangs)
}

// MH is the fake media handler. It is safe for concurrent use.
type MH struct {
	t    testing.TB
	ID   string
	addr string

	mu       sync.Mutex
	srv      *grpc.Server
	refuseN  int  // calls still to answer accepted=false (< 0: all)
	hang     bool // hold calls until the caller gives up or Release
	released chan struct{}
	calls    []Call
	changed  chan struct{}
}

// Start serves a fake MH that accepts every registration, until the test
// ends.
func Start(t testing.TB, id string) *MH {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("mhtest: listen: %v", err)
	}
	m := &MH{t: t, ID: id, addr: lis.Addr().String(), changed: make(chan struct{}), released: make(chan struct{})}
	m.serve(lis)
	t.Cleanup(m.Stop)
	return m
}

// Endpoint is the MH's gRPC endpoint as an assignment carries it.
func (m *MH) Endpoint() string { return "http://" + m.addr }

// Refuse answers the next n calls accepted=false (every call while n < 0).
func (m *MH) Refuse(n int) { m.mu.Lock(); m.refuseN = n; m.mu.Unlock() }

// Hang holds every call until its caller gives up or Release is called.
func (m *MH) Hang() { m.mu.Lock(); m.hang = true; m.mu.Unlock() }

// Release answers the held calls (as the other settings say) and stops
// holding new ones.
func (m *MH) Release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hang {
		m.hang = false
		close(m.released)
		m.released = make(chan struct{})
	}
}

// Stop stops serving (connections are refused).
func (m *MH) Stop() {
	m.mu.Lock()
	srv := m.srv
	m.srv = nil
	m.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

func (m *MH) serve(lis net.Listener) {
	srv := grpc.NewServer()
	internalpb.RegisterMediaHandlerServiceServer(srv, service{m: m})
	m.mu.Lock()
	m.srv = srv
	m.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
}

// Calls returns the recorded calls.
func (m *MH) Calls() []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Call(nil), m.calls...)
}

// WaitCalls waits until n calls were recorded.
func (m *MH) WaitCalls(ctx context.Context, n int) ([]Call, error) {
	for {
		m.mu.Lock()
		got, ch := len(m.calls), m.changed
		m.mu.Unlock()
		if got >= n {
			return m.Calls(), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return m.Calls(), ctx.Err()
		}
	}
}

type service struct {
	internalpb.UnimplementedMediaHandlerServiceServer
	m *MH
}

func (s service) RegisterMeeting(ctx context.Context, req *internalpb.RegisterMeetingRequest) (*internalpb.RegisterMeetingResponse, error) {
	m := s.m
	md, _ := metadata.FromIncomingContext(ctx)
	c := Call{Req: req, At: time.Now(), TraceParent: first(md.Get("traceparent"))}
	c.Token, _ = strings.CutPrefix(first(md.Get("authorization")), "Bearer ")
	m.mu.Lock()
	hang, released := m.hang, m.released
	m.mu.Unlock()
	record := func() {
		m.mu.Lock()
		m.calls = append(m.calls, c)
		close(m.changed)
		m.changed = make(chan struct{})
		m.mu.Unlock()
	}
	if hang {
		record() // seen, not yet answered
		select {
		case <-ctx.Done():
			return nil, status.Error(codes.DeadlineExceeded, "mhtest: held")
		case <-released:
		}
		return s.answer(), nil
	}
	resp := s.answer()
	c.Accepted = resp.Accepted
	record()
	return resp, nil
}

func (s service) answer() *internalpb.RegisterMeetingResponse {
	m := s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuseN != 0 {
		if m.refuseN > 0 {
			m.refuseN--
		}
		return &internalpb.RegisterMeetingResponse{Accepted: false}
	}
	return &internalpb.RegisterMeetingResponse{Accepted: true}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}
