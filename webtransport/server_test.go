package webtransport_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

func TestEchoRoundTripOnAnyPath(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{}, h)
	for _, path := range []string{"/", "/meeting", "/a/b/c?x=1"} {
		t.Run(path, func(t *testing.T) {
			opts := ts.opts
			c, err := webtransport.Dial(context.Background(), "https://"+ts.srv.Addr().String()+path, opts)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Abort()
			for i := range 3 {
				id := fmt.Sprintf("m-%d", i)
				if err := c.Send(joinRequest(id)); err != nil {
					t.Fatal(err)
				}
				m, err := recv(t, c)
				if err != nil {
					t.Fatal(err)
				}
				if got := m.GetJoinResponse().GetParticipantId(); got != id {
					t.Fatalf("echo %q, want %q", got, id)
				}
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := waitEnded(t, h); !errors.Is(err, io.EOF) {
				t.Fatalf("handler ended with %v, want io.EOF after a clean close", err)
			}
		})
	}
	if got := ts.obs.accepted.Load(); got != 3 {
		t.Fatalf("accepted %d sessions, want 3", got)
	}
}

func TestLargestFrameAccepted(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{}, h)
	c := ts.dial(t)
	// Grow the token until the payload is exactly MaxFrameSize.
	msg := joinRequest("big")
	jr := msg.GetJoinRequest()
	jr.JoinToken = strings.Repeat("x", webtransport.MaxFrameSize-100)
	for {
		f, err := webtransport.AppendFrame(nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(f) - 4; n < webtransport.MaxFrameSize {
			jr.JoinToken += strings.Repeat("x", webtransport.MaxFrameSize-n)
			continue
		}
		if len(f)-4 != webtransport.MaxFrameSize {
			t.Fatalf("payload %d bytes", len(f)-4)
		}
		break
	}
	if err := c.Send(msg); err != nil {
		t.Fatal(err)
	}
	m, err := recv(t, c)
	if err != nil || m.GetJoinResponse().GetParticipantId() != "big" {
		t.Fatalf("Recv: %v %v", m, err)
	}
}

func TestOversizedFrameIsRefusedAndClosed(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{}, h)
	c := ts.dial(t)
	hdr := binary.BigEndian.AppendUint32(nil, webtransport.MaxFrameSize+1)
	if err := c.SendRaw(append(hdr, make([]byte, 1000)...)); err != nil {
		t.Fatal(err)
	}
	got := expectClosed(t, c, closeErrorCode, "frame too large")
	if len(got) != 1 || got[0].GetError().GetCode() != pb.ErrorCode_INVALID_REQUEST {
		t.Fatalf("before the close got %v, want one INVALID_REQUEST", got)
	}
	if err := waitEnded(t, h); !errors.Is(err, webtransport.ErrFrameTooLarge) {
		t.Fatalf("Next: %v, want ErrFrameTooLarge", err)
	}
}

func TestGarbageFrameKeepsSession(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{}, h)
	c := ts.dial(t)
	garbage := []byte{0xff, 0xff, 0xff, 0xff, 0x0f}
	if err := c.SendRaw(append(binary.BigEndian.AppendUint32(nil, uint32(len(garbage))), garbage...)); err != nil {
		t.Fatal(err)
	}
	m, err := recv(t, c)
	if err != nil || m.GetError().GetCode() != pb.ErrorCode_INVALID_REQUEST {
		t.Fatalf("Recv: %v %v, want INVALID_REQUEST", m, err)
	}
	if err := c.Send(joinRequest("after")); err != nil {
		t.Fatal(err)
	}
	if m, err := recv(t, c); err != nil || m.GetJoinResponse().GetParticipantId() != "after" {
		t.Fatalf("Recv after garbage: %v %v", m, err)
	}
}

func TestFirstFrameTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	t.Run("no stream", func(t *testing.T) {
		h := newEchoHandler()
		ts := startServer(t, webtransport.ServerConfig{FirstFrameTimeout: timeout}, h)
		c := ts.dial(t) // the stream reaches the server only with its first bytes
		expectClosed(t, c, webtransport.CodeFirstFrameTimeout, "no stream opened in time")
		if n := ts.obs.failedCount(webtransport.RefusedNoStream); n != 1 {
			t.Fatalf("failed(no_stream) = %d, want 1", n)
		}
	})
	t.Run("partial frame", func(t *testing.T) {
		h := newEchoHandler()
		ts := startServer(t, webtransport.ServerConfig{FirstFrameTimeout: timeout}, h)
		c := ts.dial(t)
		if err := c.SendRaw([]byte{0, 0}); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c, webtransport.CodeFirstFrameTimeout, "no join request in time")
		if err := waitEnded(t, h); !errors.Is(err, webtransport.ErrFirstFrameTimeout) {
			t.Fatalf("Next: %v, want ErrFirstFrameTimeout", err)
		}
	})
}

func TestSlowClientDroppedOthersKeepReceiving(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{QueueDepth: 4}, h)
	slow, fast := ts.dial(t), ts.dial(t)
	join := func(c *webtransport.ClientConn) *webtransport.Session {
		if err := c.Send(joinRequest("m")); err != nil {
			t.Fatal(err)
		}
		if _, err := recv(t, c); err != nil {
			t.Fatal(err)
		}
		return <-h.sessions
	}
	slowS, fastS := join(slow), join(fast)

	big, err := webtransport.EncodeServerMessage(joinResponse(strings.Repeat("p", 16<<10)))
	if err != nil {
		t.Fatal(err)
	}
	// The fast client reads everything and acknowledges each frame, so the
	// test never outruns it; the slow client reads nothing.
	fastGot := make(chan struct{}, 16)
	fastEnd := make(chan error, 1)
	go func() {
		for {
			if _, err := fast.RecvFrame(context.Background()); err != nil {
				fastEnd <- err
				return
			}
			fastGot <- struct{}{}
		}
	}()
	sendFast := func() {
		t.Helper()
		if err := fastS.SendFrame(big); err != nil {
			t.Fatalf("fast client: %v", err)
		}
		select {
		case <-fastGot:
		case <-time.After(5 * time.Second):
			t.Fatal("fast client stopped receiving")
		}
	}
	sent, peak := 0, 0
	for ; sent < 10000; sent++ {
		sendFast()
		if err := slowS.SendFrame(big); errors.Is(err, webtransport.ErrSlowClient) {
			break
		} else if err != nil {
			t.Fatalf("slow client: %v", err)
		}
		peak = max(peak, ts.srv.MaxQueued())
	}
	if sent == 10000 {
		t.Fatal("the slow client's queue never overflowed")
	}
	if peak != 4 {
		t.Fatalf("MaxQueued before the overflow = %d, want the queue depth 4", peak)
	}
	if err := slowS.SendFrame(big); !errors.Is(err, webtransport.ErrSessionClosed) {
		t.Fatalf("SendFrame after the drop: %v, want ErrSessionClosed", err)
	}
	if got := ts.obs.dropped.Load(); got != 1 {
		t.Fatalf("dropped = %d, want 1", got)
	}
	<-slowS.Context().Done()
	expectClosed(t, slow, webtransport.CodeSlowClient, "slow client")

	// The fast client keeps receiving after the drop.
	for range 10 {
		sendFast()
	}
	if n := ts.srv.SessionCount(); n != 1 {
		t.Fatalf("SessionCount = %d, want 1", n)
	}
}

func TestDrainClosesWithCodeAndReason(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{}, h)
	var clients []*webtransport.ClientConn
	for range 3 {
		c := ts.dial(t)
		if err := c.Send(joinRequest("m")); err != nil {
			t.Fatal(err)
		}
		if _, err := recv(t, c); err != nil {
			t.Fatal(err)
		}
		s := <-h.sessions
		// Queued just before the drain: must still reach the client.
		if err := s.Send(joinResponse("last words")); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	drained := make(chan struct{})
	go func() { ts.srv.Drain(2, "server going away"); close(drained) }()
	for _, c := range clients {
		got := expectClosed(t, c, 2, "server going away")
		if len(got) != 1 || got[0].GetJoinResponse().GetParticipantId() != "last words" {
			t.Fatalf("before the close got %v, want the queued frame", got)
		}
	}
	<-drained
	if n := ts.srv.SessionCount(); n != 0 {
		t.Fatalf("SessionCount after Drain = %d", n)
	}
	if _, err := webtransport.Dial(context.Background(), ts.url, ts.opts); err == nil {
		t.Fatal("Dial succeeded while draining")
	}
	if n := ts.obs.refusedCount(webtransport.RefusedDraining); n != 1 {
		t.Fatalf("refused(draining) = %d, want 1", n)
	}
}

func TestMaxSessions(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{MaxSessions: 1}, h)
	c := ts.dial(t)
	if err := c.Send(joinRequest("m")); err != nil {
		t.Fatal(err)
	}
	if _, err := recv(t, c); err != nil {
		t.Fatal(err)
	}
	if _, err := webtransport.Dial(context.Background(), ts.url, ts.opts); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("second Dial: %v, want a 503 refusal", err)
	}
	if n := ts.obs.refusedCount(webtransport.RefusedMaxSessions); n != 1 {
		t.Fatalf("refused(max_sessions) = %d, want 1", n)
	}
	if n := ts.srv.SessionCount(); n != 1 {
		t.Fatalf("SessionCount = %d, want 1", n)
	}
}

// A request that is not a WebTransport CONNECT fails as "upgrade", and is
// not counted as a refusal by admission.
func TestPlainHTTP3RequestFails(t *testing.T) {
	ts := startServer(t, webtransport.ServerConfig{}, newEchoHandler())
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the test server's self-signed certificate
	defer tr.Close()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(ts.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("GET: %d, want 400", resp.StatusCode)
	}
	if n := ts.obs.failedCount(webtransport.RefusedUpgrade); n != 1 {
		t.Fatalf("failed(upgrade) = %d, want 1", n)
	}
	if n := ts.obs.refusedCount(webtransport.RefusedUpgrade); n != 0 {
		t.Fatalf("refused(upgrade) = %d, want 0", n)
	}
}

func TestAbortedClientEndsSessionAfterIdleTimeout(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{IdleTimeout: 300 * time.Millisecond}, h)
	c := ts.dial(t)
	if err := c.Send(joinRequest("m")); err != nil {
		t.Fatal(err)
	}
	if _, err := recv(t, c); err != nil {
		t.Fatal(err)
	}
	s := <-h.sessions
	if err := c.Abort(); err != nil {
		t.Fatal(err)
	}
	err := waitEnded(t, h)
	if err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Next after a network loss: %v, want a non-EOF error", err)
	}
	<-s.Context().Done()
}

func TestShutdownClosesSessions(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{}, h)
	c := ts.dial(t)
	if err := c.Send(joinRequest("m")); err != nil {
		t.Fatal(err)
	}
	if _, err := recv(t, c); err != nil {
		t.Fatal(err)
	}
	<-h.sessions
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	expectClosed(t, c, webtransport.CodeServerShutdown, "server shutting down")
	if err := <-stopped; err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
	// ListenAndServe has waited for the handler.
	select {
	case err := <-h.ended:
		if !errors.Is(err, webtransport.ErrSessionClosed) {
			t.Fatalf("handler ended with %v, want ErrSessionClosed", err)
		}
	default:
		t.Fatal("ListenAndServe returned before the handler")
	}
}

// With Retry demanded from the first unfinished handshake on, concurrent
// clients still connect: they prove their address and carry on.
func TestClientsConnectThroughRetry(t *testing.T) {
	ts := startServer(t, webtransport.ServerConfig{RetryAbove: 1}, newEchoHandler())
	const n = 24
	errs := make(chan error, n)
	for i := range n {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := webtransport.Dial(ctx, ts.url, ts.opts)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			id := fmt.Sprintf("m%d", i)
			if err := c.Send(joinRequest(id)); err != nil {
				errs <- err
				return
			}
			m, err := c.Recv(ctx)
			if err == nil && m.GetJoinResponse().GetParticipantId() != id {
				err = fmt.Errorf("answer %v, want %s", m, id)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
