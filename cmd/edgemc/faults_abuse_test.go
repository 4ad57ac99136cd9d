package main

// Attacks on the real binary, each against one listener or path: call
// headers without bodies and connection floods on gRPC, a fan-out burst in a
// meeting, sessions that never join, floods of refused joins, and abuse of
// the status server. Each asserts a bound while the attack runs (RSS,
// goroutines, log growth, other participants connected, a real call or join
// still served) and that the appliance recovers when it stops. Plain `go
// test` runs them small; `make faults` (EDGEMC_FAULTS=long) at full size.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// assignMethod is the gRPC method the GC calls.
const assignMethod = "/dark_tower.internal.v1.MeetingControllerService/AssignMeetingWithMh"

// logBytes is the size of everything edgemc has logged so far.
func (p *edgemcProc) logBytes() int {
	n := 0
	for _, l := range p.Logs() {
		n += len(l.Raw) + 1
	}
	return n
}

// peakWatch samples a metric of edgemc while an attack runs.
type peakWatch struct {
	stop chan struct{}
	done chan float64
}

// watchPeak samples name every 50 ms until stopped; stopPeak returns the
// highest value seen.
func watchPeak(mc *faultMC, name string) *peakWatch {
	w := &peakWatch{stop: make(chan struct{}), done: make(chan float64, 1)}
	go func() {
		peak := 0.0
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, ok := mc.tryMetric(name); ok {
				peak = max(peak, v)
			}
			select {
			case <-w.stop:
				w.done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *peakWatch) stopPeak() float64 {
	close(w.stop)
	return <-w.done
}

// metricOr0 is a sample of /metrics, 0 while it is not there (a counter
// with labels appears with its first event).
func (mc *faultMC) metricOr0(name string) float64 {
	v, _ := mc.tryMetric(name)
	return v
}

// msgIs matches log lines with message msg.
func msgIs(msg string) func(logLine) bool {
	return func(l logLine) bool { return l.Msg() == msg }
}

// sampledBound is the most lines one kind of refusal may log in d: the first
// 10 and a summary per 10 s interval begun.
func sampledBound(d time.Duration) int {
	return 11 * (int(d/(10*time.Second)) + 1)
}

// openFDs is the number of file descriptors pid has open.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestFaultGRPCHeaderFlood opens calls on the gRPC listener by their
// headers alone, without a token and without bodies, on two connections
// (100,000 of them held 1.16 GB and 100,243 goroutines before the token was
// checked at the headers). Every call is refused as its headers arrive:
// the goroutines and RSS stay flat, every refusal is counted, the log grows
// by the sampled lines only, and the GC's calls are served throughout. The
// same calls with a deadline of thousands of years (which grpc-go would
// keep a timer for) are let in at most grpc-max-streams per connection and
// ended after grpc-request-timeout.
func TestFaultGRPCHeaderFlood(t *testing.T) {
	s := faultSettings(t)
	streams := pick(s, 10_000, 100_000)
	mc := startFaultMC(t, "", devissuer.NewIssuer(), "--log-level=info", "--grpc-request-timeout=1s")
	mc.mustAssign(t, "m-before")
	baseRSS := procStatusKiB(t, mc.Pid(), "VmRSS")
	baseG := mc.metric(t, "go_goroutines")
	logSize := mc.logBytes()

	// flood sends streams calls with headers on two connections, a GC
	// assignment meanwhile, and waits until every call has ended; it
	// returns the calls that got a status and the peak goroutines.
	flood := func(what string, headers map[string]string) (answered int64, peakG float64) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*waitTimeout)
		defer cancel()
		goroutines := watchPeak(mc, "go_goroutines")
		start := time.Now()
		var floods []*gctest.Flood
		for range 2 {
			f, err := gctest.DialFlood(ctx, mc.grpc, net.IPv4(127, 0, 0, 2))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			floods = append(floods, f)
		}
		var wg sync.WaitGroup
		for _, f := range floods {
			wg.Go(func() {
				for sent := 0; sent < streams/2; sent += 1000 {
					if err := f.Open(1000, assignMethod, headers); err != nil {
						t.Errorf("flood: %v", err)
						return
					}
				}
			})
		}
		// The GC is served while the flood runs.
		assignStart := time.Now()
		mc.mustAssign(t, "m-during-"+what)
		assignTook := time.Since(assignStart)
		wg.Wait()
		for _, f := range floods {
			waitCond(t, "every flooded call ended", func() bool { return f.Ended() == int64(streams/2) })
			answered += f.Answered()
		}
		peakG = goroutines.stopPeak()
		t.Logf("%d calls without a token %s on 2 connections in %v: %d ended with a status, peak %v goroutines (%v before), peak RSS +%d KiB; an assignment meanwhile took %v",
			streams, what, time.Since(start), answered, peakG, baseG, procStatusKiB(t, mc.Pid(), "VmHWM")-baseRSS, assignTook)
		if assignTook > 5*time.Second {
			t.Errorf("an assignment during the flood took %v, bound 5s", assignTook)
		}
		for _, f := range floods {
			f.Close()
		}
		return answered, peakG
	}

	start := time.Now()
	answered, peakG := flood("and no deadline", nil)
	// The calls cost no goroutine (a few serve the two connections and the
	// metrics reads).
	if answered != int64(streams) || peakG > baseG+40 {
		t.Errorf("%d of %d calls answered, peak %v goroutines; want all, and at most %v goroutines", answered, streams, peakG, baseG+40)
	}
	// Let in: grpc-max-streams (32) per connection, each for a goroutine.
	lateAnswered, peakG := flood("with a deadline of 99999999 h", map[string]string{"grpc-timeout": "99999999H"})
	if peakG > baseG+2*32+40 {
		t.Errorf("peak %v goroutines, bound %v", peakG, baseG+2*32+40)
	}
	took := time.Since(start)
	hwm := procStatusKiB(t, mc.Pid(), "VmHWM")
	grew := mc.logBytes() - logSize
	lines := mc.countLogs(msgIs("refused gRPC call"))
	t.Logf("log +%d bytes (%d refusal lines) in %v", grew, lines, took)

	// RSS grows by what the connections' buffers and the runtime take, not
	// per call; the log by sampled lines; every refusal is counted.
	if bound := int64(32 << 10); hwm-baseRSS > bound {
		t.Errorf("peak RSS grew by %d KiB, bound %d KiB", hwm-baseRSS, bound)
	}
	if n, want := mc.metric(t, `mc_grpc_refused_total{reason="missing_token"}`), float64(int64(streams)+lateAnswered); n != want {
		t.Errorf("mc_grpc_refused_total{reason=\"missing_token\"} = %v, want every one of %v", n, want)
	}
	if bound := sampledBound(took + time.Second); lines > bound {
		t.Errorf("%d refusal lines logged in %v, bound %d", lines, took, bound)
	}
	if bound := 32 << 10; grew > bound {
		t.Errorf("the log grew by %d bytes, bound %d", grew, bound)
	}

	// Recovery: the flood's connections closed, the server is where it was.
	waitMetricAtMost(t, mc, "go_goroutines", baseG+5)
	mc.mustAssign(t, "m-after")
}

// TestFaultGRPCConnectionFlood opens many gRPC connections from one address
// that never make a call with a token. Past grpc-max-connections-per-address
// they are closed at once (each counted), the ones held are closed when
// idle for grpc-idle-timeout, and the GC, from another address, is served
// throughout.
func TestFaultGRPCConnectionFlood(t *testing.T) {
	s := faultSettings(t)
	conns := pick(s, 200, 2000)
	const perAddress = 16
	mc := startFaultMC(t, "", devissuer.NewIssuer(), "--log-level=info", "--grpc-idle-timeout=2s")
	mc.mustAssign(t, "m-before")
	baseRSS := procStatusKiB(t, mc.Pid(), "VmRSS")
	baseFDs := openFDs(t, mc.Pid())
	logSize := mc.logBytes()

	ctx, cancel := context.WithTimeout(context.Background(), 5*waitTimeout)
	defer cancel()
	start := time.Now()
	var floods []*gctest.Flood
	for range conns {
		f, err := gctest.DialFlood(ctx, mc.grpc, net.IPv4(127, 0, 0, 2))
		if err != nil {
			continue // closed by the server before the preface was written
		}
		defer f.Close()
		_ = f.Open(1, assignMethod, map[string]string{"authorization": "Bearer not-a-token"}) // fails if already closed
		floods = append(floods, f)
	}
	mc.mustAssign(t, "m-during")
	fds := openFDs(t, mc.Pid())
	waitCond(t, "every connection refused or answered", func() bool {
		return mc.metricOr0(`mc_connections_refused_total{listener="grpc",reason="max_connections_per_address"}`)+
			mc.metricOr0(`mc_grpc_refused_total{reason="malformed"}`) == float64(conns)
	})
	refused := mc.metric(t, `mc_connections_refused_total{listener="grpc",reason="max_connections_per_address"}`)
	t.Logf("%d connections from one address in %v: %v closed at once, %d fds open (%d before), log +%d bytes",
		conns, time.Since(start), refused, fds, baseFDs, mc.logBytes()-logSize)
	if refused != float64(conns-perAddress) {
		t.Errorf("%v connections refused, want %d", refused, conns-perAddress)
	}
	if fds > baseFDs+perAddress+8 {
		t.Errorf("%d fds open during the flood, bound %d", fds, baseFDs+perAddress+8)
	}
	// The held connections made no authenticated call: closed when idle.
	for i, f := range floods {
		select {
		case <-f.Done():
		case <-time.After(waitTimeout):
			t.Fatalf("connection %d still open %v after the flood", i, waitTimeout)
		}
	}
	if grew := procStatusKiB(t, mc.Pid(), "VmHWM") - baseRSS; grew > 16<<10 {
		t.Errorf("peak RSS grew by %d KiB, bound 16 MiB", grew)
	}
	if grew := mc.logBytes() - logSize; grew > 32<<10 {
		t.Errorf("the log grew by %d bytes, bound 32 KiB", grew)
	}
	mc.mustAssign(t, "m-after")
}

// waitCond polls cond, which reads counters another goroutine updates,
// until it holds.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitCondFor(t, what, 2*waitTimeout, cond)
}

// waitCondFor is waitCond with a given timeout.
func waitCondFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-timeout.C:
			t.Fatalf("no %s within %v", what, d)
		}
	}
}

// muteCounter reads a participant's session until it ends, counting the
// mute updates about the participants in from.
type muteCounter struct {
	conn  *webtransport.ClientConn
	n     atomic.Int64
	ended chan error // the error that ended the session
}

// countMutes starts reading once start is closed (nil: at once).
func countMutes(conn *webtransport.ClientConn, from map[string]bool, start <-chan struct{}) *muteCounter {
	c := &muteCounter{conn: conn, ended: make(chan error, 1)}
	go func() {
		if start != nil {
			<-start
		}
		for {
			m, err := conn.Recv(context.Background())
			if err != nil {
				c.ended <- err
				return
			}
			if from[m.GetParticipantMuteUpdate().GetParticipantId()] {
				c.n.Add(1)
			}
		}
	}()
	return c
}

// TestFaultFanOutBurst lets participants flood a meeting with mute changes,
// their message budget lifted, so that every other participant receives a
// burst of updates as fast as the meeting can make them (one participant's
// 50,000 requests evicted all 9 hosts in 0.7 s before, as "slow clients":
// a queue of 256 frames past the stream window). Every participant that
// reads stays connected and gets every update, one that pauses for 2 s at
// the start of the burst too (with its window full and hundreds of updates
// queued); only the one that stopped reading is
// dropped, once an update has waited slow-client-timeout for it.
func TestFaultFanOutBurst(t *testing.T) {
	s := faultSettings(t)
	// Short: 2,800 updates of ~45 bytes, past the 80 KiB stream window of
	// the participant that stops reading, so that it falls behind.
	senders, each := pick(s, 4, 10), pick(s, 700, 5000)
	const hosts = 9
	// The full burst keeps both cores busy for a minute: readers get the
	// default slow-client-timeout there.
	slowAfter := pick(s, "3s", "10s")
	mc := startFaultMC(t, "", devissuer.NewIssuer(), "--log-level=info",
		"--session-message-rate=1000000", "--session-message-burst=1000000", "--slow-client-timeout="+slowAfter)
	mc.mustAssign(t, "m-flood")
	var hostConns, senderConns []*webtransport.ClientConn
	senderIDs := map[string]bool{}
	for i := range hosts {
		conn, _ := mc.mustJoin(t, "m-flood", fmt.Sprintf("host-%d", i))
		hostConns = append(hostConns, conn)
	}
	stalled, _ := mc.mustJoin(t, "m-flood", "host-stalled") // never reads again
	pausing, _ := mc.mustJoin(t, "m-flood", "host-pausing")
	for i := range senders {
		conn, resp := mc.mustJoin(t, "m-flood", fmt.Sprintf("sender-%d", i))
		senderConns = append(senderConns, conn)
		senderIDs[resp.ParticipantId] = true
	}
	var readers []*muteCounter
	for _, c := range append(append([]*webtransport.ClientConn{}, hostConns...), senderConns...) {
		readers = append(readers, countMutes(c, senderIDs, nil))
	}
	resume := make(chan struct{})
	readers = append(readers, countMutes(pausing, senderIDs, resume))
	baseRSS := procStatusKiB(t, mc.Pid(), "VmRSS")

	start := time.Now()
	time.AfterFunc(2*time.Second, func() { close(resume) })
	var wg sync.WaitGroup
	for _, c := range senderConns {
		wg.Go(func() {
			for i := range each {
				m := &pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: i%2 == 0}}}
				if err := c.Send(m); err != nil {
					t.Errorf("sender: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := int64(senders * each)
	waitCondFor(t, "every update at every reading participant", pick(s, 2*waitTimeout, 10*time.Minute), func() bool {
		for _, r := range readers {
			select {
			case err := <-r.ended:
				t.Fatalf("a reading participant's session ended after %d updates: %v", r.n.Load(), err)
			default:
			}
			if r.n.Load() < want {
				return false
			}
		}
		return true
	})
	took := time.Since(start)
	// The participant that stopped reading falls behind once its stream
	// window is full; slow-client-timeout later it is dropped.
	waitCond(t, "the participant that stopped reading dropped", func() bool {
		return mc.metricOr0(`mc_messages_dropped_total{actor_type="connection"}`) >= 1
	})
	var closed *webtransport.SessionClosedError
	rctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		_, err := stalled.RecvFrame(rctx)
		if err == nil {
			continue
		}
		if !errors.As(err, &closed) || closed.Code != webtransport.CodeSlowClient {
			t.Fatalf("the participant that stopped reading: %v, want a close with code %#x", err, webtransport.CodeSlowClient)
		}
		break
	}
	dropped := mc.metric(t, `mc_messages_dropped_total{actor_type="connection"}`)
	hwm := procStatusKiB(t, mc.Pid(), "VmHWM")
	t.Logf("%d senders × %d mute changes: %d updates to each of %d reading participants in %v; slow clients dropped: %v; peak RSS +%d KiB",
		senders, each, want, len(readers), took, dropped, hwm-baseRSS)
	if dropped != 1 {
		t.Errorf("%v slow clients dropped, want only the one that stopped reading", dropped)
	}
	if grew := hwm - baseRSS; grew > 64<<10 {
		t.Errorf("peak RSS grew by %d KiB, bound 64 MiB", grew)
	}
	// Everyone who read is still there: a host-mute reaches them all.
	if err := hostConns[0].Send(&pb.ClientMessage{Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{
		ParticipantId: firstKey(senderIDs), VideoMuted: true,
	}}}); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "the host-mute at every reading participant", func() bool {
		for _, r := range readers {
			if r.n.Load() < want+1 {
				return false
			}
		}
		return true
	})
}

func firstKey(m map[string]bool) string {
	for k := range m {
		return k
	}
	return ""
}

// dialFrom opens a WebTransport session to edgemc from the address ip.
func (mc *faultMC) dialFrom(ctx context.Context, ip net.IP) (*webtransport.ClientConn, error) {
	return webtransport.Dial(ctx, mc.wtURL, webtransport.DialOptions{
		CertHashes: [][32]byte{mc.certHash}, LocalAddr: &net.UDPAddr{IP: ip}, Timeout: 10 * time.Second,
	})
}

// TestFaultUnjoinedSessions opens sessions that never send a join from one
// address, as fast as they are admitted and again as they are closed (173
// of them locked every real client out with max-participants 100 before).
// Past max-pending-sessions-per-address they are refused at once (503);
// the participants in the meeting stay connected, and real clients from
// another address join up to max-participants, each within a bound.
func TestFaultUnjoinedSessions(t *testing.T) {
	s := faultSettings(t)
	// The attack runs while the real clients join, and at least this long.
	attack := pick(s, 3*time.Second, 20*time.Second)
	maxParticipants, dials := pick(s, 30, 100), pick(s, 8, 32)
	const perAddress = 16
	mc := startFaultMC(t, "", devissuer.NewIssuer(), "--log-level=info",
		fmt.Sprintf("--max-participants=%d", maxParticipants), "--first-frame-timeout=2s")
	mc.mustAssign(t, "m-flood")
	host, resp := mc.mustJoin(t, "m-flood", "host-1")
	joinedSeen := countJoins(host, resp.ParticipantId)
	baseRSS := procStatusKiB(t, mc.Pid(), "VmRSS")
	baseG := mc.metric(t, "go_goroutines")
	logSize := mc.logBytes()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var open, maxOpen, refused, admitted, attempts atomic.Int64
	attacker := make(chan struct{})
	attackStart := time.Now()
	go func() {
		defer close(attacker)
		var wg sync.WaitGroup
		sem := make(chan struct{}, dials)
		for ctx.Err() == nil {
			sem <- struct{}{}
			attempts.Add(1)
			wg.Go(func() {
				conn, err := mc.dialFrom(context.WithoutCancel(ctx), net.IPv4(127, 0, 0, 2))
				<-sem // dials are bounded, held sessions are not
				if err != nil {
					if strings.Contains(err.Error(), "503") {
						refused.Add(1)
					}
					return
				}
				admitted.Add(1)
				n := open.Add(1)
				for m := maxOpen.Load(); n > m && !maxOpen.CompareAndSwap(m, n); m = maxOpen.Load() {
				}
				_, _ = conn.Recv(context.Background()) // held until edgemc closes it
				open.Add(-1)
				conn.Abort()
			})
		}
		wg.Wait()
	}()

	// Real clients join from 127.0.0.1 while the attack runs, up to
	// max-participants (the host is one).
	goroutines := watchPeak(mc, "go_goroutines")
	var slowest time.Duration
	real := maxParticipants - 1
	for i := range real {
		start := time.Now()
		mc.mustJoin(t, "m-flood", fmt.Sprintf("user-%d", i)) // held until the test ends
		slowest = max(slowest, time.Since(start))
	}
	select {
	case <-time.After(time.Until(attackStart.Add(attack))):
	case <-attacker:
	}
	cancel()
	<-attacker
	peakG := goroutines.stopPeak()
	hwm := procStatusKiB(t, mc.Pid(), "VmHWM")
	t.Logf("%v of sessions that never join from one address: %d attempts, %d admitted (at most %d at once), %d refused with 503; %d real joins, the slowest in %v; peak %v goroutines (%v before), peak RSS +%d KiB, log +%d bytes",
		time.Since(attackStart).Round(time.Millisecond), attempts.Load(), admitted.Load(), maxOpen.Load(), refused.Load(), real, slowest, peakG, baseG, hwm-baseRSS, mc.logBytes()-logSize)

	if maxOpen.Load() > perAddress {
		t.Errorf("%d sessions that never joined held at once from one address, bound %d", maxOpen.Load(), perAddress)
	}
	if refused.Load()+admitted.Load() != attempts.Load() {
		t.Errorf("%d of %d attempts neither admitted nor refused with 503", attempts.Load()-refused.Load()-admitted.Load(), attempts.Load())
	}
	if n := mc.metric(t, `mc_webtransport_connections_refused_total{reason="max_pending_per_address"}`); n != float64(refused.Load()) {
		t.Errorf("mc_webtransport_connections_refused_total{reason=\"max_pending_per_address\"} = %v, want %d", n, refused.Load())
	}
	if slowest > 5*time.Second {
		t.Errorf("the slowest real join took %v, bound 5s", slowest)
	}
	// About 14 goroutines per session (QUIC, HTTP/3, WebTransport and
	// edgemc's reader, writer and handler), for the participants and the
	// sessions held.
	if bound := baseG + float64(14*(real+perAddress+dials)); peakG > bound {
		t.Errorf("peak %v goroutines, bound %v", peakG, bound)
	}
	if grew := hwm - baseRSS; grew > 64<<10 {
		t.Errorf("peak RSS grew by %d KiB, bound 64 MiB", grew)
	}
	if grew := mc.logBytes() - logSize; grew > 64<<10 {
		t.Errorf("the log grew by %d bytes, bound 64 KiB", grew)
	}
	// The participant in the meeting saw every real join.
	waitCond(t, "the host saw every join", func() bool { return joinedSeen.Load() >= int64(real) })
	// Full: a further join is refused for capacity, not for the attack.
	ctx2, cancel2 := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel2()
	if conn, m, err := mc.joinAnswer(ctx2, "user-last", &pb.JoinRequest{MeetingId: "m-flood"}); err != nil || m.GetError().GetCode() != pb.ErrorCode_CAPACITY_EXCEEDED {
		t.Errorf("join 101: %v, %v; want CAPACITY_EXCEEDED", m, err)
	} else {
		conn.Abort()
	}
}

// countJoins counts the ParticipantJoined a participant's session receives
// about others.
func countJoins(conn *webtransport.ClientConn, self string) *atomic.Int64 {
	var n atomic.Int64
	go func() {
		for {
			m, err := conn.Recv(context.Background())
			if err != nil {
				return
			}
			if p := m.GetParticipantJoined().GetParticipant(); p != nil && p.GetParticipantId() != self {
				n.Add(1)
			}
		}
	}()
	return &n
}

// TestFaultRefusedJoinFlood sends joins with tokens edgemc does not trust
// (every refused join was an INFO line before). Every one is refused and
// counted, the log grows by the sampled lines only, and a real join is
// served during the flood.
func TestFaultRefusedJoinFlood(t *testing.T) {
	s := faultSettings(t)
	joins := pick(s, 150, 3000)
	mc := startFaultMC(t, "", devissuer.NewIssuer(), "--log-level=info")
	mc.mustAssign(t, "m-flood")
	mc.mustJoin(t, "m-flood", "host-1") // keeps the meeting while probes come and go
	stranger := devissuer.NewIssuer()
	logSize := mc.logBytes()

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			from := net.IPv4(127, 0, 0, byte(10+i))
			for next.Add(1) <= int64(joins) {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				err := refusedJoin(ctx, mc, from, stranger.MeetingToken("mallory", "m-flood"))
				cancel()
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	probeJoin(t, mc, "user-during")
	wg.Wait()
	took := time.Since(start)
	lines := mc.countLogs(msgIs("join refused: invalid token"))
	grew := mc.logBytes() - logSize
	t.Logf("%d joins with untrusted tokens in %v: %d refusal lines, log +%d bytes", joins, took, lines, grew)
	if n := mc.metric(t, `mc_session_join_failures_total{error_type="jwt_validation"}`); n != float64(joins) {
		t.Errorf("%v refused joins counted, want every one of %d", n, joins)
	}
	if bound := sampledBound(took + time.Second); lines > bound {
		t.Errorf("%d refusal lines logged in %v, bound %d", lines, took, bound)
	}
	if bound := 16 << 10; grew > bound {
		t.Errorf("the log grew by %d bytes, bound %d", grew, bound)
	}
	probeJoin(t, mc, "user-after")
}

// refusedJoin joins from the address with token and expects UNAUTHORIZED.
// It closes the session cleanly, so that edgemc can free it at once (a
// client that vanishes holds its place for close-timeout).
func refusedJoin(ctx context.Context, mc *faultMC, from net.IP, token string) error {
	conn, err := mc.dialFrom(ctx, from)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Send(&pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: &pb.JoinRequest{MeetingId: "m-flood", JoinToken: token}}}); err != nil {
		return err
	}
	m, err := conn.Recv(ctx)
	if err != nil || m.GetError().GetCode() != pb.ErrorCode_UNAUTHORIZED {
		return fmt.Errorf("a join with an untrusted token: %v, %v; want UNAUTHORIZED", m, err)
	}
	return nil
}

// TestFaultHTTPAbuse attacks the status server: more connections than file
// descriptors allow, idle ones, 1 MiB headers, live-update subscribers past
// count, and status reads (each held a process handle before). Connections
// past the bounds are closed at once, idle ones by the server's timeouts,
// big headers are refused, subscribers past the bound get 503, and the gRPC
// link and a probe from another address are served throughout.
func TestFaultHTTPAbuse(t *testing.T) {
	s := faultSettings(t)
	conns := pick(s, 300, 2000)
	const perAddress = 16
	mc := startFaultMC(t, "", devissuer.NewIssuer(), "--log-level=info")
	baseRSS := procStatusKiB(t, mc.Pid(), "VmRSS")
	baseFDs := openFDs(t, mc.Pid())
	logSize := mc.logBytes()
	attackers := []net.IP{net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3), net.IPv4(127, 0, 0, 4)}
	heldMax := perAddress * len(attackers)

	// Connections that never send a request, from three addresses: 16
	// from each are held.
	start := time.Now()
	var held []net.Conn
	for i := range conns {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: attackers[i%len(attackers)]}}
		c, err := d.Dial("tcp", mc.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	fds := openFDs(t, mc.Pid())
	// A probe from another address and the gRPC link are served.
	if mc.liveCode(t) != http.StatusOK {
		t.Error("/health/live does not answer during the flood")
	}
	mc.mustAssign(t, "m-during")
	if fds > baseFDs+heldMax+8 {
		t.Errorf("%d fds open with %d connections attempted, bound %d", fds, conns, baseFDs+heldMax+8)
	}
	// Every one is closed by the server: at once past the bounds, after
	// the read-header timeout (5 s) otherwise.
	for i, c := range held {
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("connection %d: %v, want it closed by edgemc", i, err)
		}
	}
	closedIn := time.Since(start)
	if n := mc.metric(t, `mc_connections_refused_total{listener="http",reason="max_connections_per_address"}`); n != float64(conns-heldMax) {
		t.Errorf("%v connections refused, want %d", n, conns-heldMax)
	}
	if mc.liveCode(t) != http.StatusOK {
		t.Error("/health/live does not answer after the flood")
	}

	// 1 MiB of headers: refused (431) after 64 KiB, on 50 connections at once.
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for i := range 50 {
		wg.Go(func() {
			codes <- bigHeaderRequest(t, mc.http, attackers[i%len(attackers)])
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusRequestHeaderFieldsTooLarge && c != 0 { // 0: refused at once
			t.Errorf("a request with 1 MiB of headers: %d, want 431", c)
		}
	}

	// Live updates: 8 streams, then 503.
	var streams []*http.Response
	for i := range 12 {
		resp, err := http.Get("http://" + mc.http + "/api/v1/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if want := http.StatusOK; i >= 8 {
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("live stream %d: %d, want 503", i+1, resp.StatusCode)
			}
		} else if resp.StatusCode != want {
			t.Fatalf("live stream %d: %d", i+1, resp.StatusCode)
		} else {
			streams = append(streams, resp)
		}
	}
	// After the whole document, a stream gets only what changes (the
	// status page's own figures change every 2 s).
	r := bufio.NewReader(streams[0].Body)
	first, err := readSSE(r)
	if err != nil || first.name != "status" {
		t.Fatalf("first live event %q: %v", first.name, err)
	}
	next, err := readSSE(r)
	if err != nil || next.name != "patch" || len(next.data) > len(first.data)/4 {
		t.Errorf("next live event %q of %d bytes (the document is %d): %v; want a patch far smaller", next.name, len(next.data), len(first.data), err)
	}

	// Status reads keep no handle open.
	fdsBefore := openFDs(t, mc.Pid())
	for range 300 {
		resp, err := http.Get("http://" + mc.http + "/api/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if fdsAfter := openFDs(t, mc.Pid()); fdsAfter > fdsBefore+4 {
		t.Errorf("%d fds open after 300 status reads, %d before", fdsAfter, fdsBefore)
	}

	hwm := procStatusKiB(t, mc.Pid(), "VmHWM")
	t.Logf("%d idle connections: %d fds held at most (%d before), all closed within %v; 50 requests with 1 MiB headers; 12 live streams, 8 served; peak RSS +%d KiB, log +%d bytes",
		conns, fds, baseFDs, closedIn.Round(time.Millisecond), hwm-baseRSS, mc.logBytes()-logSize)
	if grew := hwm - baseRSS; grew > 32<<10 {
		t.Errorf("peak RSS grew by %d KiB, bound 32 MiB", grew)
	}
	if grew := mc.logBytes() - logSize; grew > 16<<10 {
		t.Errorf("the log grew by %d bytes, bound 16 KiB", grew)
	}
	for _, resp := range streams {
		resp.Body.Close()
	}

	if s.long {
		// A keep-alive connection left idle is closed after a minute.
		c, err := net.Dial("tcp", mc.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /health/live HTTP/1.1\r\nHost: %s\r\n\r\n", mc.http)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		idleStart := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		if _, err := br.ReadByte(); err == nil || isTimeout(err) {
			t.Fatalf("an idle keep-alive connection: %v, want it closed", err)
		}
		if d := time.Since(idleStart); d < 50*time.Second || d > 70*time.Second {
			t.Errorf("an idle keep-alive connection closed after %v, want about 60 s", d)
		}
	}
}

// bigHeaderRequest sends a request with 1 MiB of headers from the address
// and returns the status code, 0 if the connection was closed first.
func bigHeaderRequest(t *testing.T, addr string, from net.IP) int {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	go func() {
		fmt.Fprintf(c, "GET /health/live HTTP/1.1\r\nHost: %s\r\n", addr)
		line := "X-Big: " + strings.Repeat("a", 1000) + "\r\n"
		for range 1 << 10 {
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
		io.WriteString(c, "\r\n")
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sseEvent is one server-sent event.
type sseEvent struct{ name, data string }

// readSSE reads the next event, skipping comments.
func readSSE(r *bufio.Reader) (sseEvent, error) {
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && ev.name != "":
			return ev, nil
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data += strings.TrimPrefix(line, "data: ")
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
