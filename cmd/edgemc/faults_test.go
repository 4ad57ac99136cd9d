package main

// The fault suite runs the real binary (see e2e_test.go) through the faults
// an appliance meets in the field: a GC that goes away and comes back with
// no memory of it, a GC that hangs, SIGKILL under load, a full or read-only
// disk, floods of connections that never finish, and the attacks of
// faults_abuse_test.go. Plain `go test` runs
// every scenario small and quickly; `make faults` sets EDGEMC_FAULTS=long for
// the full sizes of the issue and EDGEMC_FAULTS_GC_OUTAGE for the length of
// the GC outage (two minutes there, five seconds by default).

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// faultScale is how big the fault scenarios are in this run.
type faultScale struct {
	// long is set by EDGEMC_FAULTS=long (make faults): full-size floods and
	// loads.
	long bool
	// gcOutage is how long the GC stays stopped (EDGEMC_FAULTS_GC_OUTAGE).
	gcOutage time.Duration
}

// defaultGCOutage keeps plain `go test` quick; make faults passes 2m.
const defaultGCOutage = 5 * time.Second

func faultSettings(t *testing.T) faultScale {
	t.Helper()
	s := faultScale{long: os.Getenv("EDGEMC_FAULTS") == "long", gcOutage: defaultGCOutage}
	if v := os.Getenv("EDGEMC_FAULTS_GC_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("EDGEMC_FAULTS_GC_OUTAGE=%q is not a positive duration", v)
		}
		s.gcOutage = d
	}
	return s
}

// pick returns short in a plain run and long under EDGEMC_FAULTS=long.
func pick[T any](s faultScale, short, long T) T {
	if s.long {
		return long
	}
	return short
}

// faultMC is a running edgemc with what a test needs to reach it.
type faultMC struct {
	*edgemcProc
	issuer   *devissuer.Issuer
	grpc     string // 127.0.0.1:port
	http     string // 127.0.0.1:port
	wtAddr   string // 127.0.0.1:port (UDP)
	wtURL    string // https://127.0.0.1:port/
	certHash [32]byte
}

// startFaultMC runs `edgemc serve` on loopback in dir ("" for a fresh one),
// trusting issuer's tokens, and waits until it is ready.
func startFaultMC(t *testing.T, dir string, issuer *devissuer.Issuer, args ...string) *faultMC {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	all := append([]string{"serve", writeJWTKey(t, issuer)}, loopbackArgs()...)
	p := startEdgemcIn(t, dir, append(all, args...))
	ready := p.WaitReady()
	mc := &faultMC{
		edgemcProc: p,
		issuer:     issuer,
		grpc:       ready.Str("grpc"),
		http:       ready.Str("http"),
		wtAddr:     ready.Str("webtransport"),
		wtURL:      "https://" + ready.Str("webtransport") + "/",
	}
	h, err := hex.DecodeString(ready.Str("cert_sha256"))
	if err != nil || len(h) != len(mc.certHash) {
		t.Fatalf("ready line cert_sha256 %q", ready.Str("cert_sha256"))
	}
	copy(mc.certHash[:], h)
	return mc
}

// Pid is the edgemc process id.
func (mc *faultMC) Pid() int { return mc.cmd.Process.Pid }

// assign asks edgemc, as the GC does, to hold meetingID.
func (mc *faultMC) assign(ctx context.Context, meetingID string) (*internalpb.AssignMeetingWithMhResponse, error) {
	return mc.assignMHs(ctx, meetingID, []*internalpb.MhAssignment{{MhId: "mh-1", WebtransportEndpoint: "https://mh-1.example:4434/", GrpcEndpoint: "http://127.0.0.1:1"}})
}

// assignMHs is assign with the given media handlers.
func (mc *faultMC) assignMHs(ctx context.Context, meetingID string, mhs []*internalpb.MhAssignment) (*internalpb.AssignMeetingWithMhResponse, error) {
	return gctest.Assign(ctx, mc.grpc, mc.issuer.ServiceToken("gc-faults", "global-controller"), &internalpb.AssignMeetingWithMhRequest{
		MeetingId: meetingID, MhAssignments: mhs, RequestingGcId: "gc-faults",
	})
}

// mustAssign is assign that fails the test unless the meeting is accepted.
func (mc *faultMC) mustAssign(t *testing.T, meetingID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resp, err := mc.assign(ctx, meetingID)
	if err != nil || !resp.GetAccepted() {
		t.Fatalf("assign %s: %v, %v", meetingID, resp, err)
	}
}

// dial opens a WebTransport session to edgemc.
func (mc *faultMC) dial(ctx context.Context) (*webtransport.ClientConn, error) {
	return webtransport.Dial(ctx, mc.wtURL, webtransport.DialOptions{CertHashes: [][32]byte{mc.certHash}})
}

// join dials and sends req with a fresh join token for sub; it returns the
// open connection and the first answer, which must be a JoinResponse.
func (mc *faultMC) join(ctx context.Context, sub string, req *pb.JoinRequest) (*webtransport.ClientConn, *pb.JoinResponse, error) {
	conn, m, err := mc.joinAnswer(ctx, sub, req)
	if err != nil {
		return nil, nil, err
	}
	resp := m.GetJoinResponse()
	if resp == nil {
		conn.Abort()
		return nil, nil, fmt.Errorf("join %s as %s: answered %v", req.MeetingId, sub, m)
	}
	return conn, resp, nil
}

// joinAnswer is join returning whatever the first answer is.
func (mc *faultMC) joinAnswer(ctx context.Context, sub string, req *pb.JoinRequest) (*webtransport.ClientConn, *pb.ServerMessage, error) {
	conn, err := mc.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	req.JoinToken = mc.issuer.MeetingToken(sub, req.MeetingId, devissuer.WithRole(roleOf(sub)))
	if req.ParticipantName == "" {
		req.ParticipantName = sub
	}
	if err := conn.Send(&pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: req}}); err != nil {
		conn.Abort()
		return nil, nil, err
	}
	m, err := conn.Recv(ctx)
	if err != nil {
		conn.Abort()
		return nil, nil, fmt.Errorf("join %s as %s: %w", req.MeetingId, sub, err)
	}
	return conn, m, nil
}

// roleOf makes users whose name starts with "host" hosts.
func roleOf(sub string) string {
	if strings.HasPrefix(sub, "host") {
		return "host"
	}
	return "participant"
}

// mustJoin is join that fails the test on error; the connection is closed
// when the test ends.
func (mc *faultMC) mustJoin(t *testing.T, meetingID, sub string) (*webtransport.ClientConn, *pb.JoinResponse) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, resp, err := mc.join(ctx, sub, &pb.JoinRequest{MeetingId: meetingID})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Abort() })
	return conn, resp
}

// ready fetches /health/ready: its status code and reason.
func (mc *faultMC) ready(t *testing.T) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + mc.http + "/health/ready")
	if err != nil {
		t.Fatalf("GET /health/ready: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Reason string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /health/ready: %v", err)
	}
	return resp.StatusCode, body.Reason
}

// liveCode is the status code of /health/live.
func (mc *faultMC) liveCode(t *testing.T) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + mc.http + "/health/live")
	if err != nil {
		t.Fatalf("GET /health/live: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metric reads one sample from /metrics: a name, with its labels if it
// has any (`mc_x_total{reason="y"}`, labels as edgemc writes them).
func (mc *faultMC) metric(t *testing.T, name string) float64 {
	t.Helper()
	v, err := mc.readMetric(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// tryMetric is metric for goroutines other than the test's: false on any
// failure.
func (mc *faultMC) tryMetric(name string) (float64, bool) {
	v, err := mc.readMetric(name)
	return v, err == nil
}

func (mc *faultMC) readMetric(name string) (float64, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + mc.http + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("metric %s: %w", name, err)
			}
			return f, nil
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// procStatusKiB reads a "Vm…: N kB" line of /proc/pid/status.
func procStatusKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", field, err)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// logTime is the time a log line was written.
func logTime(l logLine) time.Time {
	ts, _ := time.Parse(time.RFC3339Nano, l.Str("time"))
	return ts
}

// countLogs counts lines for which match is true.
func (p *edgemcProc) countLogs(match func(logLine) bool) int {
	n := 0
	for _, l := range p.Logs() {
		if match(l) {
			n++
		}
	}
	return n
}

// reader collects what a client receives until its session ends.
type reader struct {
	conn *webtransport.ClientConn
	msgs chan *pb.ServerMessage
	done chan error
}

// startReader reads conn in a goroutine until the session ends or ctx does.
func startReader(ctx context.Context, conn *webtransport.ClientConn) *reader {
	r := &reader{conn: conn, msgs: make(chan *pb.ServerMessage, 1024), done: make(chan error, 1)}
	go func() {
		for {
			m, err := conn.Recv(ctx)
			if err != nil {
				r.done <- err
				return
			}
			r.msgs <- m
		}
	}()
	return r
}

// until waits for a message for which ok is true; messages before it are
// passed to seen (may be nil).
func (r *reader) until(t *testing.T, what string, ok func(*pb.ServerMessage) bool, seen func(*pb.ServerMessage)) *pb.ServerMessage {
	t.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		select {
		case m := <-r.msgs:
			if ok(m) {
				return m
			}
			if seen != nil {
				seen(m)
			}
		case err := <-r.done:
			t.Fatalf("session ended while waiting for %s: %v", what, err)
		case <-timeout.C:
			t.Fatalf("no %s within %v", what, waitTimeout)
		}
	}
}
