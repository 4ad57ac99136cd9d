package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/webtransport"
)

// TestFaultHalfOpenFlood floods edgemc with QUIC handshakes that are never
// finished and then with WebTransport sessions that never send a join
// (past max-pending-sessions refused at once), while real clients join.
// Memory stays bounded (see the bound below), the flood's connections all
// go away (goroutines return to where they were: the heap in use follows
// the garbage collector, so it is only logged), and the real clients are
// never refused.
func TestFaultHalfOpenFlood(t *testing.T) {
	s := faultSettings(t)
	halfOpen := pick(s, 2000, 10000)
	silent := pick(s, 200, 2000)
	firstFrame := pick(s, 4*time.Second, 15*time.Second)
	mc := startFaultMC(t, "", devissuer.NewIssuer(), "--first-frame-timeout="+firstFrame.String())
	mc.mustAssign(t, "m-flood")
	mc.mustJoin(t, "m-flood", "host-1")
	baseRSS := procStatusKiB(t, mc.Pid(), "VmRSS")
	baseGoroutines := mc.metric(t, "go_goroutines")
	baseHeap := mc.metric(t, "go_memstats_heap_inuse_bytes")
	t.Logf("baseline: RSS %d KiB, %v goroutines, heap in use %.1f MiB", baseRSS, baseGoroutines, baseHeap/(1<<20))

	ctx, cancel := context.WithTimeout(context.Background(), 5*waitTimeout)
	defer cancel()
	start := time.Now()
	if err := sendHalfOpenHandshakes(ctx, mc.wtAddr, halfOpen); err != nil {
		t.Fatalf("half-open handshakes: %v", err)
	}
	t.Logf("%d half-open QUIC handshakes sent in %v", halfOpen, time.Since(start))
	probeJoin(t, mc, "user-during-handshakes")
	hwmHandshakes := procStatusKiB(t, mc.Pid(), "VmHWM")
	waitMetricAtMost(t, mc, "go_goroutines", baseGoroutines+20)
	t.Logf("after the handshake flood: peak RSS %d KiB (+%d KiB, %.1f KiB per handshake)", hwmHandshakes, hwmHandshakes-baseRSS, float64(hwmHandshakes-baseRSS)/float64(halfOpen))

	start = time.Now()
	closed := openSilentSessions(t, ctx, mc, silent)
	t.Logf("%d sessions that never join opened in %v", silent, time.Since(start))
	probeJoin(t, mc, "user-during-silent-sessions")
	admitted := 0
	for range silent {
		switch err := <-closed; {
		case err == nil:
			admitted++
		case !errors.Is(err, errRefusedAtOnce):
			t.Error(err)
		}
	}
	t.Logf("%d of the silent sessions admitted, %d refused at once (max-pending-sessions 256)", admitted, silent-admitted)
	waitMetricAtMost(t, mc, "go_goroutines", baseGoroutines+20)
	hwm := procStatusKiB(t, mc.Pid(), "VmHWM")
	heap := mc.metric(t, "go_memstats_heap_inuse_bytes")
	t.Logf("after the silent sessions: peak RSS %d KiB (+%d KiB), heap in use %.1f MiB", hwm, hwm-baseRSS, heap/(1<<20))
	probeJoin(t, mc, "user-after")

	// The bound, in KiB: once 128 handshakes are unfinished
	// (webtransport.ServerConfig.RetryAbove), a new client must answer a
	// QUIC Retry before the server keeps any state, so a half-open handshake
	// past those costs one packet: measured at ~6.5 KiB of peak RSS each
	// (packet buffers), budgeted 16. The first 128 are whole connections
	// (~65 KiB each, budgeted 96). A silent session is a whole WebTransport
	// session: the library floor (~126 KiB) plus 64 for edgemc's reader,
	// writer and queue. 64 MiB cover the runtime and what is not yet
	// returned to the system.
	bound := 128*96 + int64(halfOpen)*16 + int64(admitted)*(126+64) + 64<<10
	if grew := hwm - baseRSS; grew > bound {
		t.Errorf("peak RSS grew by %d KiB, bound %d KiB", grew, bound)
	}
}

// probeJoin is a real client joining during or after a flood: it must be
// admitted. It leaves at once, so that it holds nothing afterwards.
func probeJoin(t *testing.T, mc *faultMC, sub string) {
	t.Helper()
	conn, _ := mc.mustJoin(t, "m-flood", sub)
	conn.Close()
}

// waitMetricAtMost polls /metrics until name is at most limit.
func waitMetricAtMost(t *testing.T, mc *faultMC, name string, limit float64) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(2 * waitTimeout)
	defer timeout.Stop()
	for {
		v := mc.metric(t, name)
		if v <= limit {
			return
		}
		select {
		case <-tick.C:
		case <-timeout.C:
			t.Fatalf("%s is %v after %v, want at most %v", name, v, 2*waitTimeout, limit)
		}
	}
}

// errRefusedAtOnce is the outcome of a session refused with 503: past
// max-pending-sessions.
var errRefusedAtOnce = errors.New("refused at once (503)")

// openSilentSessions opens n WebTransport sessions (with their stream) that
// never send anything, from 200 addresses in turn (127.0.0.2 on), so that no
// address reaches max-pending-sessions-per-address. Each one's outcome
// arrives on the returned channel: nil when edgemc closed it for not sending
// a join in time, errRefusedAtOnce when it was refused at once.
func openSilentSessions(t *testing.T, ctx context.Context, mc *faultMC, n int) <-chan error {
	t.Helper()
	closed := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			conn, err := mc.dialFrom(ctx, net.IPv4(127, 0, 0, byte(2+i%200)))
			<-sem
			if err != nil && strings.Contains(err.Error(), "503") {
				closed <- errRefusedAtOnce
				return
			}
			if err != nil {
				closed <- fmt.Errorf("silent session %d: %w", i, err)
				return
			}
			defer conn.Abort()
			_, err = conn.Recv(ctx)
			var sc *webtransport.SessionClosedError
			if !errors.As(err, &sc) || sc.Code != webtransport.CodeFirstFrameTimeout {
				err = fmt.Errorf("silent session %d ended with %v, want a close with code %#x", i, err, webtransport.CodeFirstFrameTimeout)
			} else {
				err = nil
			}
			closed <- err
		})
	}
	wg.Wait()
	return closed
}

// sendHalfOpenHandshakes starts n QUIC handshakes with edgemc at addr and
// never finishes them: each is a real ClientHello (a fresh quic-go dial, so
// the server does all its work: keys, certificate, first flight), and
// nothing after it is sent. The server holds each until its handshake
// timeout.
func sendHalfOpenHandshakes(ctx context.Context, addr string, n int) error {
	server, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return err
	}
	out, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer out.Close()
	tlsConf := &tls.Config{
		InsecureSkipVerify: true, // the handshake never gets that far
		NextProtos:         []string{http3.NextProtoH3},
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519}, // a ClientHello that fits one packet
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := halfOpenHandshake(ctx, out, server, tlsConf); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// halfOpenHandshake sends one ClientHello to server through out and stops.
func halfOpenHandshake(ctx context.Context, out net.PacketConn, server net.Addr, tlsConf *tls.Config) error {
	pc := &firstPacketConn{out: out, sent: make(chan error, 1), closed: make(chan struct{})}
	tr := &quic.Transport{Conn: pc}
	defer tr.Close()
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dialed := make(chan struct{})
	go func() {
		defer close(dialed)
		if c, err := tr.Dial(dctx, server, tlsConf, &quic.Config{}); err == nil {
			c.CloseWithError(0, "")
		}
	}()
	defer func() { cancel(); <-dialed }()
	select {
	case err := <-pc.sent:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// firstPacketConn is the socket of one half-open dial: it lets only the
// first datagram (the ClientHello) out through the shared socket, drops the
// rest (so not even a close reaches the server) and reads nothing.
type firstPacketConn struct {
	out       net.PacketConn
	first     sync.Once
	sent      chan error
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *firstPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.first.Do(func() {
		_, err := c.out.WriteTo(b, addr)
		c.sent <- err
	})
	return len(b), nil
}

func (c *firstPacketConn) ReadFrom([]byte) (int, net.Addr, error) {
	<-c.closed
	return 0, nil, net.ErrClosed
}

func (c *firstPacketConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

// SetReadDeadline with a time past is how quic.Transport.Close stops a
// connection it did not create: reading ends for good.
func (c *firstPacketConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && !t.After(time.Now()) {
		c.Close()
	}
	return nil
}

func (c *firstPacketConn) LocalAddr() net.Addr              { return c.out.LocalAddr() }
func (c *firstPacketConn) SetDeadline(t time.Time) error    { return c.SetReadDeadline(t) }
func (c *firstPacketConn) SetWriteDeadline(time.Time) error { return nil }
