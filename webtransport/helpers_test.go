package webtransport_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

const closeErrorCode uint32 = 1

// testServer is a running Server plus what a client needs to reach it.
type testServer struct {
	srv  *webtransport.Server
	url  string
	opts webtransport.DialOptions
	obs  *countingObserver
	stop func() error // cancels ListenAndServe's context and returns its result
}

type countingObserver struct {
	accepted, dropped atomic.Int64
	mu                sync.Mutex
	refused, failed   map[string]int
}

func (o *countingObserver) SessionAccepted()             { o.accepted.Add(1) }
func (o *countingObserver) SlowClientDropped()           { o.dropped.Add(1) }
func (o *countingObserver) SessionRefused(reason string) { o.count(&o.refused, reason) }
func (o *countingObserver) SessionFailed(reason string)  { o.count(&o.failed, reason) }

func (o *countingObserver) count(m *map[string]int, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[reason]++
}

func (o *countingObserver) refusedCount(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.refused[reason]
}

func (o *countingObserver) failedCount(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failed[reason]
}

// startServer runs a Server on 127.0.0.1:0 until the test ends.
func startServer(t testing.TB, cfg webtransport.ServerConfig, h webtransport.Handler) *testServer {
	t.Helper()
	if cfg.TLSConfig == nil {
		ci, err := webtransport.LoadOrCreateSelfSigned(t.TempDir(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ci.Certificate}}
	}
	hash := sha256.Sum256(cfg.TLSConfig.Certificates[0].Certificate[0])
	cfg.Addr = "127.0.0.1:0"
	obs := &countingObserver{}
	cfg.Observer = obs
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = 300 * time.Millisecond
	}
	srv, err := webtransport.NewServer(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("ListenAndServe: %v", err)
	}
	stop := sync.OnceValue(func() error { cancel(); return <-done })
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	})
	return &testServer{
		srv:  srv,
		url:  fmt.Sprintf("https://%s/meeting", srv.Addr()),
		opts: webtransport.DialOptions{CertHashes: [][32]byte{hash}, Timeout: 5 * time.Second},
		obs:  obs,
		stop: stop,
	}
}

func (ts *testServer) dial(t testing.TB) *webtransport.ClientConn {
	t.Helper()
	c, err := webtransport.Dial(context.Background(), ts.url, ts.opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Abort() })
	return c
}

// echoHandler answers every ClientMessage with a JoinResponse naming the
// message's meeting id (a join request with the token "token" joins the
// session), answers undecodable frames with INVALID_REQUEST and
// carries on, and closes after an oversized frame. It publishes each session
// and the error that ended it.
type echoHandler struct {
	sessions chan *webtransport.Session
	ended    chan error
}

func newEchoHandler() *echoHandler {
	return &echoHandler{sessions: make(chan *webtransport.Session, 64), ended: make(chan error, 64)}
}

func (h *echoHandler) ServeSession(ctx context.Context, s *webtransport.Session) {
	h.sessions <- s
	for {
		m, err := s.Next(ctx)
		var de *webtransport.DecodeError
		switch {
		case errors.As(err, &de):
			_ = s.Send(errorMsg(pb.ErrorCode_INVALID_REQUEST, "undecodable message"))
			continue
		case errors.Is(err, webtransport.ErrFrameTooLarge):
			_ = s.Send(errorMsg(pb.ErrorCode_INVALID_REQUEST, "frame larger than 64 KiB"))
			s.Close(closeErrorCode, "frame too large")
		}
		if err != nil {
			h.ended <- err
			return
		}
		if m.GetJoinRequest().GetJoinToken() == "token" {
			s.Joined()
		}
		_ = s.Send(joinResponse(m.GetJoinRequest().GetMeetingId()))
	}
}

func errorMsg(code pb.ErrorCode, msg string) *pb.ServerMessage {
	return &pb.ServerMessage{Message: &pb.ServerMessage_Error{Error: &pb.ErrorMessage{Code: code, Message: msg}}}
}

func joinResponse(pid string) *pb.ServerMessage {
	return &pb.ServerMessage{Message: &pb.ServerMessage_JoinResponse{JoinResponse: &pb.JoinResponse{ParticipantId: pid}}}
}

func joinRequest(meeting string) *pb.ClientMessage {
	return &pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: &pb.JoinRequest{MeetingId: meeting, JoinToken: "token"}}}
}

// recv reads one message with a test-sized deadline.
func recv(t testing.TB, c *webtransport.ClientConn) (*pb.ServerMessage, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Recv(ctx)
}

// expectClosed reads until the session closes and checks code and reason.
// Frames still arriving before the close are returned.
func expectClosed(t testing.TB, c *webtransport.ClientConn, code uint32, reason string) []*pb.ServerMessage {
	t.Helper()
	var got []*pb.ServerMessage
	for {
		m, err := recv(t, c)
		if err == nil {
			got = append(got, m)
			continue
		}
		var ce *webtransport.SessionClosedError
		if !errors.As(err, &ce) {
			t.Fatalf("Recv: %v, want *SessionClosedError", err)
		}
		if ce.Code != code || ce.Reason != reason {
			t.Fatalf("closed with (%d, %q), want (%d, %q)", ce.Code, ce.Reason, code, reason)
		}
		return got
	}
}

func waitEnded(t testing.TB, h *echoHandler) error {
	t.Helper()
	select {
	case err := <-h.ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not end")
		return io.ErrNoProgress
	}
}
