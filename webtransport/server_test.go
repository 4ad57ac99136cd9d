package webtransport_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
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

// A QUIC connection that opens no session is closed after
// FirstFrameTimeout, however alive its client keeps it; one with a session
// stays, silent or not.
func TestConnectionWithoutSessionClosed(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{FirstFrameTimeout: timeout}, h)
	joined := ts.dial(t)
	s := joinSession(t, h, joined)

	u, err := url.Parse(ts.url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, u.Host, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}},
		&quic.Config{KeepAlivePeriod: timeout / 4})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	start := time.Now()
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
		t.Fatal("a connection without a session was never closed")
	}
	if d := time.Since(start); d < timeout/2 {
		t.Fatalf("closed after %v, before FirstFrameTimeout (%v)", d, timeout)
	}
	// The joined session, silent all this while, is still served.
	if err := s.Send(joinResponse("still here")); err != nil {
		t.Fatal(err)
	}
	if m, err := recv(t, joined); err != nil || m.GetJoinResponse().GetParticipantId() != "still here" {
		t.Fatalf("the silent session: %v, %v", m, err)
	}
}

// joinSession sends a join on c and returns the server's side of it.
func joinSession(t *testing.T, h *echoHandler, c *webtransport.ClientConn) *webtransport.Session {
	t.Helper()
	if err := c.Send(joinRequest("m")); err != nil {
		t.Fatal(err)
	}
	if _, err := recv(t, c); err != nil {
		t.Fatal(err)
	}
	return <-h.sessions
}

func TestSlowClientDroppedOthersKeepReceiving(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{SlowClientTimeout: 300 * time.Millisecond}, h)
	slow, fast := ts.dial(t), ts.dial(t)
	slowS, fastS := joinSession(t, h, slow), joinSession(t, h, fast)

	big, err := webtransport.EncodeServerMessage(joinResponse(strings.Repeat("p", 16<<10)))
	if err != nil {
		t.Fatal(err)
	}
	// The fast client reads everything and acknowledges each frame, so the
	// test never outruns it; the slow client reads nothing.
	fastGot := make(chan struct{}, 16)
	go func() {
		for {
			if _, err := fast.RecvFrame(context.Background()); err != nil {
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
	// Past its flow-control window the slow client's frames wait; the
	// oldest waits longer than SlowClientTimeout and it is dropped, with
	// or without further frames. 32 frames of 16 KiB are far from
	// MaxQueueBytes: the drop is for the time.
	for range 32 {
		sendFast()
		if err := slowS.SendFrame(big); err != nil && !errors.Is(err, webtransport.ErrSessionClosed) {
			t.Fatalf("slow client: %v, want it dropped for its frames' wait", err)
		}
	}
	select {
	case <-slowS.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the slow client was never dropped")
	}
	if err := slowS.SendFrame(big); !errors.Is(err, webtransport.ErrSessionClosed) {
		t.Fatalf("SendFrame after the drop: %v, want ErrSessionClosed", err)
	}
	if got := ts.obs.dropped.Load(); got != 1 {
		t.Fatalf("dropped = %d, want 1", got)
	}
	expectClosed(t, slow, webtransport.CodeSlowClient, "slow client")

	// The fast client keeps receiving after the drop.
	for range 10 {
		sendFast()
	}
	if n := ts.srv.SessionCount(); n != 1 {
		t.Fatalf("SessionCount = %d, want 1", n)
	}
}

// A burst far larger than any frame count a queue used to hold reaches a
// client that reads it; only the byte bound stops a client that does not.
func TestBurstDropsNobodyWhoReads(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{MaxQueueBytes: 256 << 10}, h)
	reader, stalled := ts.dial(t), ts.dial(t)
	readerS, stalledS := joinSession(t, h, reader), joinSession(t, h, stalled)

	frame, err := webtransport.EncodeServerMessage(joinResponse("update"))
	if err != nil {
		t.Fatal(err)
	}
	const burst = 2000 // (len+64 bytes) × 2000 ≈ 160 KiB: within the bound
	for i := range burst {
		if err := readerS.SendFrame(frame); err != nil {
			t.Fatalf("frame %d of the burst: %v", i, err)
		}
	}
	for i := range burst {
		if _, err := recv(t, reader); err != nil {
			t.Fatalf("frame %d of the burst: %v", i, err)
		}
	}
	// The stalled client's queue passes 256 KiB: dropped at once.
	sent := 0
	for ; sent < 1e6; sent++ {
		if err := stalledS.SendFrame(frame); errors.Is(err, webtransport.ErrSlowClient) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if max := (256<<10)/(len(frame)+64) + 2048; sent > max { // + what the flow-control window took
		t.Fatalf("%d frames queued before the drop, want at most %d", sent, max)
	}
	expectClosedAfter(t, stalled, webtransport.CodeSlowClient)
	if err := readerS.SendFrame(frame); err != nil {
		t.Fatalf("the reading client after the other's drop: %v", err)
	}
}

// expectClosedAfter reads whatever was queued until the session closes with
// code.
func expectClosedAfter(t *testing.T, c *webtransport.ClientConn, code uint32) {
	t.Helper()
	for {
		_, err := c.RecvFrame(context.Background())
		if err == nil {
			continue
		}
		var ce *webtransport.SessionClosedError
		if !errors.As(err, &ce) || ce.Code != code {
			t.Fatalf("Recv: %v, want a close with code %d", err, code)
		}
		return
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
	joinSession(t, h, ts.dial(t))
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

// Sessions that have not joined have a budget of their own, in all and per
// client address: past it new sessions are refused at once, while joined
// sessions and clients from other addresses are not affected.
func TestPendingSessionBudget(t *testing.T) {
	h := newEchoHandler()
	ts := startServer(t, webtransport.ServerConfig{MaxSessions: 10, MaxPending: 3, MaxPendingPerAddress: 2, FirstFrameTimeout: time.Minute}, h)
	from := func(ip string) webtransport.DialOptions {
		o := ts.opts
		o.LocalAddr = &net.UDPAddr{IP: net.ParseIP(ip)}
		return o
	}
	dial := func(ip string) (*webtransport.ClientConn, error) {
		c, err := webtransport.Dial(context.Background(), ts.url, from(ip))
		if err == nil {
			t.Cleanup(func() { _ = c.Abort() })
		}
		return c, err
	}
	// Joined sessions do not count against the pending budget.
	for range 4 {
		c, err := dial("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		joinSession(t, h, c)
	}
	// Two sessions from 127.0.0.1 that never join: the third is refused.
	for range 2 {
		if _, err := dial("127.0.0.1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dial("127.0.0.1"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("third pending session from one address: %v, want a 503 refusal", err)
	}
	// Another address may open one more: the global budget is 3.
	other, err := dial("127.0.0.2")
	if err != nil {
		t.Fatalf("a pending session from another address: %v", err)
	}
	if _, err := dial("127.0.0.3"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a fourth pending session: %v, want a 503 refusal", err)
	}
	if a, g := ts.obs.refusedCount(webtransport.RefusedPendingPerAddress), ts.obs.refusedCount(webtransport.RefusedMaxPending); a != 1 || g != 1 {
		t.Fatalf("refused per address %d, in all %d; want 1 and 1", a, g)
	}
	// A pending session that joins frees its place in the budget.
	joinSession(t, h, other)
	c, err := dial("127.0.0.3")
	if err != nil {
		t.Fatalf("after a pending session joined: %v", err)
	}
	joinSession(t, h, c)
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
	const n = 24
	ts := startServer(t, webtransport.ServerConfig{RetryAbove: 1, MaxPendingPerAddress: n}, newEchoHandler())
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
