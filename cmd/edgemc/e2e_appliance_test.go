package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// freePort returns a loopback TCP port that is free right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestE2EGCRegistrationAndHeartbeats runs the real binary against the fake
// GC: the gRPC server answers before the first RegisterMC arrives, both
// heartbeat kinds follow with real contents, and SIGTERM sends a last
// DRAINING heartbeat and exits 0.
func TestE2EGCRegistrationAndHeartbeats(t *testing.T) {
	gc := gctest.Start(t)
	gc.Accept(200*time.Millisecond, 400*time.Millisecond)
	issuer := devissuer.NewIssuer()
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	tokenFile := filepath.Join(t.TempDir(), "gc.token")
	os.WriteFile(tokenFile, []byte("mc-secret-token\n"), 0o600)
	p := startEdgemc(t, []string{"serve", writeJWTKey(t, issuer),
		"--id=mc-e2e", "--region=edge-1", "--gc-url=" + gc.Target(), "--gc-token-file=" + tokenFile,
		"--grpc-listen=" + grpcAddr, "--grpc-advertise=http://" + grpcAddr,
		"--webtransport-listen=127.0.0.1:0", "--webtransport-advertise=https://127.0.0.1:4433/",
		"--http-listen=127.0.0.1:0", "--max-meetings=50", "--max-participants=500",
	})
	ctx := testCtx(t)
	regs, err := gc.WaitRegistrations(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The MC's gRPC server must already answer the GC.
	resp, err := gctest.Assign(ctx, regs[0].Req.GrpcEndpoint, issuer.ServiceToken("gc", "global-controller"),
		&internalpb.AssignMeetingWithMhRequest{MeetingId: "m1", RequestingGcId: "gc"})
	if err != nil || !resp.Accepted {
		t.Fatalf("assignment right after registration: %v %v", resp, err)
	}
	r := regs[0].Req
	if r.Id != "mc-e2e" || r.Region != "edge-1" || r.GrpcEndpoint != "http://"+grpcAddr ||
		r.WebtransportEndpoint != "https://127.0.0.1:4433/" || r.MaxMeetings != 50 || r.MaxParticipants != 500 {
		t.Fatalf("RegisterMC %+v", r)
	}
	if regs[0].Token != "mc-secret-token" {
		t.Fatalf("RegisterMC bearer token %q", regs[0].Token)
	}
	fast, err := gc.WaitFast(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	f := fast[len(fast)-1].Req
	if f.ControllerId != "mc-e2e" || f.Health != internalpb.HealthStatus_HEALTHY ||
		f.Capacity.GetCurrentMeetings() != 1 || f.Capacity.GetMaxParticipants() != 500 {
		t.Fatalf("fast heartbeat %+v", f)
	}
	comp, err := gc.WaitComprehensive(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := comp[0].Req
	if c.CpuUsagePercent < 0 || c.CpuUsagePercent > 100 || c.MemoryUsagePercent <= 0 || c.MemoryUsagePercent > 100 {
		t.Fatalf("comprehensive heartbeat CPU %v%%, memory %v%%", c.CpuUsagePercent, c.MemoryUsagePercent)
	}
	// The last participant leaving ends the meeting, and the GC is told.
	a := &mc{p: p, issuer: issuer}
	a.ready()
	a.join(t, "m1", "alice", "", "").conn.Close()
	ended, err := gc.WaitMeetingsEnded(ctx, 1)
	if err != nil || ended[0].Req.MeetingId != "m1" || ended[0].Req.Region != "edge-1" {
		t.Fatalf("NotifyMeetingEnded: %v %v", ended, err)
	}
	n := len(gc.Fast())
	if code := p.Stop(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	last := gc.Fast()
	if len(last) <= n || last[len(last)-1].Req.Health != internalpb.HealthStatus_DRAINING {
		t.Fatal("no DRAINING heartbeat on shutdown")
	}
	for _, l := range p.Logs() {
		if strings.Contains(l.Raw, "mc-secret-token") {
			t.Fatalf("the GC token is in the logs: %s", l.Raw)
		}
	}
}

// participant is a signaling client of the real binary.
type participant struct {
	t    *testing.T
	conn *webtransport.ClientConn
	resp *pb.JoinResponse
}

type mc struct {
	p       *edgemcProc
	issuer  *devissuer.Issuer
	url     string
	http    string
	grpc    string
	certSum [32]byte
}

func (a *mc) ready() {
	r := a.p.WaitReady()
	a.url = "https://" + r.Str("webtransport") + "/"
	a.http, a.grpc = r.Str("http"), r.Str("grpc")
	sum, err := hex.DecodeString(r.Str("cert_sha256"))
	if err != nil || len(sum) != 32 {
		a.p.t.Fatalf("ready line cert hash %q", r.Str("cert_sha256"))
	}
	a.certSum = [32]byte(sum)
}

func (a *mc) assign(t *testing.T, id string) {
	resp, err := gctest.Assign(testCtx(t), a.grpc, a.issuer.ServiceToken("gc", "global-controller"),
		&internalpb.AssignMeetingWithMhRequest{MeetingId: id, RequestingGcId: "gc"})
	if err != nil || !resp.Accepted {
		t.Fatalf("assign %s: %v %v", id, resp, err)
	}
}

func (a *mc) join(t *testing.T, meeting, sub, correlation, binding string) *participant {
	t.Helper()
	conn, err := webtransport.Dial(testCtx(t), a.url, webtransport.DialOptions{CertHashes: [][32]byte{a.certSum}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	err = conn.Send(&pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: &pb.JoinRequest{
		MeetingId: meeting, JoinToken: a.issuer.MeetingToken(sub, meeting), ParticipantName: sub,
		CorrelationId: correlation, BindingToken: binding,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := conn.Recv(testCtx(t))
	if err != nil || m.GetJoinResponse() == nil {
		t.Fatalf("join: %v %v", m, err)
	}
	return &participant{t: t, conn: conn, resp: m.GetJoinResponse()}
}

func (a *mc) rejoin(t *testing.T, meeting, sub string, old *participant) *participant {
	return a.join(t, meeting, sub, old.resp.CorrelationId, old.resp.BindingToken)
}

// status reads /api/v1/status.
func (a *mc) status(t *testing.T) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + a.http + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func meetingGeneration(t *testing.T, s map[string]any) float64 {
	ms, _ := s["meetings"].([]any)
	if len(ms) != 1 {
		t.Fatalf("status lists %d meetings, want 1", len(ms))
	}
	return ms[0].(map[string]any)["generation"].(float64)
}

func startAppliance(t *testing.T, dir string, issuer *devissuer.Issuer, keyFlag string, extra ...string) *mc {
	args := append(append([]string{"serve", keyFlag, "--drain-timeout=10s"}, loopbackArgs()...), extra...)
	a := &mc{p: startEdgemcIn(t, dir, args), issuer: issuer}
	a.ready()
	return a
}

// startMeetingOfTwo runs edgemc with meeting m1 and participants alice and
// bob; restart starts another edgemc on the same data-dir and key.
func startMeetingOfTwo(t *testing.T) (a *mc, alice, bob *participant, restart func() *mc) {
	issuer := devissuer.NewIssuer()
	key := writeJWTKey(t, issuer)
	dir := t.TempDir()
	a = startAppliance(t, dir, issuer, key)
	a.assign(t, "m1")
	alice = a.join(t, "m1", "alice", "", "")
	bob = a.join(t, "m1", "bob", "", "")
	return a, alice, bob, func() *mc { return startAppliance(t, dir, issuer, key) }
}

// TestE2ERestartAfterSIGKILL: two participants, the process is killed, a new
// one on the same data-dir recovers the meeting under a new generation and
// both participants reconnect with their bindings to the same ids.
func TestE2ERestartAfterSIGKILL(t *testing.T) {
	a, alice, bob, restart := startMeetingOfTwo(t)
	gen := meetingGeneration(t, a.status(t))

	a.p.Signal(syscall.SIGKILL)
	a.p.Wait()

	b := restart()
	if g := meetingGeneration(t, b.status(t)); g <= gen {
		t.Fatalf("generation %v after restart, was %v", g, gen)
	}
	a2 := b.rejoin(t, "m1", "alice", alice)
	b2 := b.rejoin(t, "m1", "bob", bob)
	if a2.resp.ParticipantId != alice.resp.ParticipantId || b2.resp.ParticipantId != bob.resp.ParticipantId {
		t.Fatalf("ids after restart: %s %s, want %s %s", a2.resp.ParticipantId, b2.resp.ParticipantId,
			alice.resp.ParticipantId, bob.resp.ParticipantId)
	}
	if len(b2.resp.ExistingParticipants) != 1 || b2.resp.ExistingParticipants[0].ParticipantId != alice.resp.ParticipantId {
		t.Fatalf("roster after restart: %v", b2.resp.ExistingParticipants)
	}
}

// TestE2EKilledProcessResetByItsSuccessor: after a SIGKILL, the next process
// on the same address answers the first packet of a connection it never had
// with a QUIC stateless reset (its key comes from the binding secret, which
// both share), so the client learns at once that it must reconnect instead
// of waiting for its idle timeout.
func TestE2EKilledProcessResetByItsSuccessor(t *testing.T) {
	issuer := devissuer.NewIssuer()
	key := writeJWTKey(t, issuer)
	dir := t.TempDir()
	listen := "--webtransport-listen=" + freeUDPAddr(t)
	a := startAppliance(t, dir, issuer, key, listen, "--session-idle-timeout=1m")
	a.assign(t, "m1")
	alice := a.join(t, "m1", "alice", "", "")
	a.p.Signal(syscall.SIGKILL)
	a.p.Wait()
	startAppliance(t, dir, issuer, key, listen, "--session-idle-timeout=1m")

	// The first packet of the old connection reaches the new process; the
	// reset ends the connection, which the next read reports. quic-go
	// answers only packets over 42 bytes with a reset: the frame is bigger.
	_ = alice.conn.Send(&pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: &pb.JoinRequest{
		MeetingId: "m1", ParticipantName: strings.Repeat("a", 100),
	}}})
	_, err := alice.conn.Recv(testCtx(t))
	// HTTP/3 may be first to report the end, as its own error that names
	// the reset in its text rather than wrapping it.
	var reset *quic.StatelessResetError
	if !errors.As(err, &reset) && (err == nil || !strings.Contains(err.Error(), (&quic.StatelessResetError{}).Error())) {
		t.Fatalf("the old session ended with %v, want a stateless reset", err)
	}
}

// freeUDPAddr returns a loopback UDP address that is free right now.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// TestE2EDrainOnSIGTERM: clients see the going-away close, the process exits
// 0 within the drain time, and after a restart they recover their sessions.
func TestE2EDrainOnSIGTERM(t *testing.T) {
	a, alice, bob, restart := startMeetingOfTwo(t)

	start := time.Now()
	a.p.Signal(syscall.SIGTERM)
	for _, c := range []*participant{alice, bob} {
		var closed *webtransport.SessionClosedError
		for {
			_, err := c.conn.Recv(testCtx(t))
			if err == nil {
				continue
			}
			if !errors.As(err, &closed) {
				t.Fatalf("session ended with %v, want the server's close", err)
			}
			break
		}
		if closed.Code != 2 || closed.Reason != "server going away" {
			t.Fatalf("close %d %q", closed.Code, closed.Reason)
		}
	}
	if code := a.p.Wait(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("drain took %v, more than drain-timeout", d)
	}
	b := restart()
	if b.rejoin(t, "m1", "alice", alice).resp.ParticipantId != alice.resp.ParticipantId ||
		b.rejoin(t, "m1", "bob", bob).resp.ParticipantId != bob.resp.ParticipantId {
		t.Fatal("sessions not recovered after a drain and restart")
	}
}

// TestE2EClientJoin runs `edgemc client join` against `edgemc serve`: it
// prints the JoinResponse, then the server's close when the server drains;
// a refused join prints the error and the close.
func TestE2EClientJoin(t *testing.T) {
	issuer := devissuer.NewIssuer()
	// At debug level the appliance logs each participant that joins.
	args := append([]string{"serve", writeJWTKey(t, issuer), "--drain-timeout=10s", "--log-level=debug"}, loopbackArgs()...)
	a := &mc{p: startEdgemcIn(t, t.TempDir(), args), issuer: issuer}
	a.ready()
	a.assign(t, "m1")
	hash := hex.EncodeToString(a.certSum[:])

	code, out, _ := runEdgemc(t, []string{"client", "join", "--url=" + a.url, "--meeting=nope",
		"--token=" + issuer.MeetingToken("u", "nope"), "--cert-hash=" + hash})
	if code != 0 || !strings.Contains(out, `"code":"NOT_FOUND"`) || !strings.Contains(out, `"closed"`) {
		t.Fatalf("refused join: exit %d, output %q", code, out)
	}

	c := startEdgemc(t, []string{"client", "join", "--url=" + a.url, "--meeting=m1",
		"--token=" + issuer.MeetingToken("u1", "m1"), "--name=Operator", "--cert-hash=" + hash})
	a.p.WaitMsg("participant joined")
	if code := a.p.Stop(); code != 0 {
		t.Fatalf("server exit %d", code)
	}
	if code := c.Wait(); code != 0 {
		t.Fatalf("client exit %d", code)
	}
	out = c.Stdout()
	if !strings.Contains(out, `"join_response"`) || !strings.Contains(out, `"code":2`) || strings.Contains(out, "eyJ") {
		t.Fatalf("client output %q", out)
	}
}
