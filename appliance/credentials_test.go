package appliance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc"
	"github.com/edgemc/edgemc/gc/actest"
	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/gc/mh"
	"github.com/edgemc/edgemc/gc/mhtest"
	"github.com/edgemc/edgemc/gc/tracectx"
	"github.com/edgemc/edgemc/web"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// logCapture keeps every log line of an appliance and passes it to the test log.
type logCapture struct {
	t  *testing.T
	mu sync.Mutex
	b  bytes.Buffer
}

func captureLogs(t *testing.T) *logCapture { return &logCapture{t: t} }

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func (l *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logCapture) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// lines returns the log lines containing s.
func (l *logCapture) lines(s string) []string {
	var out []string
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// get fetches path from the appliance's HTTP listener.
func (e *env) get(path string) (int, []byte) {
	e.t.Helper()
	resp, err := http.Get("http://" + e.a.httpLis.Addr().String() + path)
	if err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// status is /api/v1/status.
func (e *env) status() web.Status {
	e.t.Helper()
	_, body := e.get("/api/v1/status")
	var s web.Status
	if err := json.Unmarshal(body, &s); err != nil {
		e.t.Fatalf("status JSON: %v\n%s", err, body)
	}
	return s
}

// ready is /health/ready's status code and reason.
func (e *env) ready() (int, string) {
	code, body := e.get("/health/ready")
	var r struct{ Reason string }
	json.Unmarshal(body, &r)
	return code, r.Reason
}

// sample is the value of one sample on /metrics, e.g.
// `mc_register_meeting_total{status="error"}`; 0 when absent.
func (e *env) sample(sample string) float64 {
	e.t.Helper()
	_, body := e.get("/metrics")
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func (e *env) meeting(id string) web.Meeting {
	e.t.Helper()
	for _, m := range e.status().Meetings {
		if m.ID == id {
			return m
		}
	}
	e.t.Fatalf("meeting %s not in the status", id)
	return web.Meeting{}
}

func participantOf(t *testing.T, m web.Meeting, id string) web.Participant {
	t.Helper()
	for _, p := range m.Participants {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("participant %s not in meeting %s", id, m.ID)
	return web.Participant{}
}

// acEnv runs an appliance whose credentials come from a fake AC, registered
// with a fake GC.
func acEnv(t *testing.T, ac *actest.AC, mod func(*Config), opts RunOptions) (*env, *gctest.GC) {
	t.Helper()
	g := gctest.Start(t)
	g.Accept(50*time.Millisecond, time.Second)
	issuer := devissuer.NewIssuer()
	cfg := testConfig(t, issuer)
	cfg.GCURL, cfg.ACURL, cfg.ClientID = g.Target(), ac.URL(), actest.ClientID
	cfg.ClientSecretFile = filepath.Join(t.TempDir(), "client-secret")
	if err := os.WriteFile(cfg.ClientSecretFile, []byte(actest.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.GCBackoffBase, cfg.GCBackoffMax = 5*time.Millisecond, 20*time.Millisecond
	if mod != nil {
		mod(&cfg)
	}
	return startEnvWith(t, issuer, cfg, opts), g
}

// acClaims verifies a token the fake AC issued.
func acClaims(t *testing.T, ac *actest.AC, tok string) *auth.ServiceClaims {
	t.Helper()
	c, err := auth.NewVerifier(auth.NewStaticKeys(ac.Issuer.PublicKey()), auth.VerifierOptions{}).VerifyService(context.Background(), tok, "")
	if err != nil {
		t.Fatalf("token not from the AC: %v", err)
	}
	return c
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The AC refuses the credentials, then is unavailable, for many attempts:
// edgemc keeps serving, says why it is not ready, tells the GC nothing, and
// registers as soon as a token arrives, with that token.
func TestServiceTokenFromAuthController(t *testing.T) {
	ac := actest.Start(t)
	ac.Refuse(http.StatusUnauthorized, -1)
	logs := captureLogs(t)
	e, g := acEnv(t, ac, nil, RunOptions{Logger: logs.logger()})

	waitFor(t, "not ready: credentials refused", func() bool {
		code, reason := e.ready()
		return code == http.StatusServiceUnavailable && reason == "waiting for a service token from the auth controller: credentials refused"
	})
	ac.Refuse(http.StatusServiceUnavailable, -1)
	waitFor(t, "not ready: AC unavailable", func() bool {
		_, reason := e.ready()
		return strings.HasSuffix(reason, "auth controller unavailable")
	})
	before := len(ac.Requests())
	waitFor(t, "20 more attempts", func() bool { return len(ac.Requests()) >= before+20 })
	if n := len(g.Registrations()); n != 0 {
		t.Fatalf("%d registrations with the GC without a token", n)
	}
	if code, _ := e.get("/health/live"); code != http.StatusOK {
		t.Fatalf("not live while the AC is down: %d", code)
	}
	st := e.status()
	if st.AC == nil || st.AC.HasToken || st.AC.ConsecutiveFailures < 20 || !st.GC.WaitingForToken || st.AC.LastErrorKind != "http" {
		t.Fatalf("status while waiting: %+v %+v", st.AC, st.GC)
	}

	ac.Grant(time.Hour)
	regs, err := g.WaitRegistrations(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	c := acClaims(t, ac, regs[0].Token)
	if c.ServiceType != "meeting-controller" || !c.HasScope("service.write.gc") {
		t.Fatalf("registered with claims %+v", c)
	}
	if _, ok := tracectx.Parse(regs[0].TraceParent, ""); !ok {
		t.Fatalf("registration traceparent %q", regs[0].TraceParent)
	}
	waitFor(t, "ready", func() bool { code, _ := e.ready(); return code == http.StatusOK })
	if st := e.status(); !st.AC.HasToken || st.AC.ClientID != actest.ClientID || st.AC.Scope == "" || st.AC.LastError != "" {
		t.Fatalf("AC status once granted: %+v", st.AC)
	}

	if n := len(logs.lines("credentials refused")); n != 1 {
		t.Errorf("credentials refused logged %d times, want once", n)
	}
	for what, text := range map[string]string{"log": logs.String(), "status": string(must(e.get("/api/v1/status"))), "metrics": string(must(e.get("/metrics")))} {
		if strings.Contains(text, actest.Secret) || strings.Contains(text, regs[0].Token) {
			t.Errorf("the client secret or the token is in the %s", what)
		}
	}
	if e.sample(`mc_token_refresh_failures_total{error_type="auth_rejected"}`) < 1 || e.sample(`mc_token_refresh_total{status="success"}`) != 1 {
		t.Error("token refresh metrics do not add up")
	}
}

func must(_ int, b []byte) []byte { return b }

// A short-lived token is refreshed before it expires, and the GC gets the
// new one.
func TestServiceTokenRefreshed(t *testing.T) {
	ac := actest.Start(t)
	ac.Grant(3 * time.Second)
	_, g := acEnv(t, ac, func(c *Config) { c.FastHeartbeat = 50 * time.Millisecond }, RunOptions{})
	reqs, err := ac.WaitRequests(waitCtx(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap >= 3*time.Second {
		t.Fatalf("refreshed %s after a 3 s token was issued", gap)
	}
	tokens := map[string]bool{}
	for n := 1; len(tokens) < 2; n++ {
		fast, err := g.WaitFast(waitCtx(t), n)
		if err != nil {
			t.Fatalf("the GC saw only %d token(s)", len(tokens))
		}
		tokens[fast[n-1].Token] = true
	}
}

// deadEndpoint is a loopback gRPC endpoint nothing listens on.
func deadEndpoint(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return "http://" + lis.Addr().String()
}

// fastMH shortens the media-handler client's timings for tests.
func fastMH(c *mh.Config) {
	c.Delays, c.ConnectTimeout, c.RPCTimeout = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}, 300*time.Millisecond, 5*time.Second
}

const clientTrace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

// The first join registers the meeting with both its media handlers, in
// the background: the join is answered while a handler still holds the
// call; one handler refuses once and then accepts, the other is down for
// good; the outcome is on the status page and in the metrics.
func TestRegisterMeetingWithMediaHandlers(t *testing.T) {
	ac := actest.Start(t)
	a := mhtest.Start(t, "mh-a")
	a.Hang()
	e, _ := acEnv(t, ac, nil, RunOptions{mhTune: fastMH})
	e.assignMHs("m1", []*internalpb.MhAssignment{
		{MhId: "mh-a", WebtransportEndpoint: "https://mh-a.example/", GrpcEndpoint: a.Endpoint()},
		{MhId: "mh-b", WebtransportEndpoint: "https://mh-b.example/", GrpcEndpoint: deadEndpoint(t)},
	})
	if st := e.meeting("m1").MHRegistrations; len(st) != 2 || st[0].State != web.MHPending {
		t.Fatalf("registrations before anyone joined: %+v", st)
	}

	c := e.dial()
	join := joinMsg("m1", e.issuer.MeetingToken("alice", "m1"), "alice")
	join.TraceParent = clientTrace
	c.send(join)
	if r := c.expect("join response").GetJoinResponse(); r == nil {
		t.Fatal("no join response")
	}
	calls, err := a.WaitCalls(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if calls[0].Accepted {
		t.Fatal("the media handler answered before the join response")
	}
	a.Refuse(1)
	a.Release()

	waitFor(t, "both outcomes", func() bool {
		r := e.meeting("m1").MHRegistrations
		return r[0].State == web.MHRegistered && r[1].State == web.MHFailed
	})
	regs := e.meeting("m1").MHRegistrations
	if regs[0].Attempts != 2 || regs[1].Attempts != 3 || regs[1].LastError == "" || regs[0].LastError != "" {
		t.Fatalf("registrations %+v", regs)
	}
	calls = a.Calls()
	if len(calls) != 2 {
		t.Fatalf("mh-a saw %d calls", len(calls))
	}
	want, _ := tracectx.Parse(clientTrace, "")
	for _, call := range calls {
		claims := acClaims(t, ac, call.Token)
		if claims.ServiceType != "meeting-controller" || !claims.HasScope("service.write.mh") {
			t.Fatalf("mh-a saw claims %+v", claims)
		}
		if call.Req.MeetingId != "m1" || call.Req.McId != "mc-test" || call.Req.McGrpcEndpoint != e.cfg.GRPCAdvertise {
			t.Fatalf("request %+v", call.Req)
		}
		if tr, ok := tracectx.Parse(call.TraceParent, ""); !ok || tr.TraceID != want.TraceID {
			t.Fatalf("mh-a saw traceparent %q, want the join's trace", call.TraceParent)
		}
	}
	if ok, bad := e.sample(`mc_register_meeting_total{status="success"}`), e.sample(`mc_register_meeting_total{status="error"}`); ok != 1 || bad != 4 {
		t.Fatalf("mc_register_meeting_total: %v success, %v error; want 1 and 4", ok, bad)
	}

	// A second participant does not register again.
	e.join("m1", "bob", "participant")
	if n := len(a.Calls()); n != 2 {
		t.Fatalf("a second join made %d calls", n-2)
	}
}

// A meeting that ends while its registration waits to retry stops it: no
// registration is left running, and connections no meeting uses are closed.
func TestMeetingEndsMidRegistration(t *testing.T) {
	ac := actest.Start(t)
	a := mhtest.Start(t, "mh-a")
	a.Refuse(-1)
	e, _ := acEnv(t, ac, nil, RunOptions{mhTune: func(c *mh.Config) { c.Delays = []time.Duration{time.Hour} }})
	e.assignMHs("m1", []*internalpb.MhAssignment{{MhId: "mh-a", WebtransportEndpoint: "https://mh-a.example/", GrpcEndpoint: a.Endpoint()}})
	alice := e.join("m1", "alice", "host")
	if _, err := a.WaitCalls(waitCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	if n := e.a.mh.c.Conns(); n != 1 {
		t.Fatalf("%d connections to media handlers during the registration", n)
	}
	alice.Close()
	waitFor(t, "the meeting to end", func() bool { return len(e.a.ctrl.Snapshots()) == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.a.mh.wait(ctx); err != nil {
		t.Fatal("a registration is still running after its meeting ended")
	}
	if n := e.a.mh.c.Conns(); n != 0 {
		t.Fatalf("%d connections to media handlers after the last meeting using them ended", n)
	}
	if n := len(a.Calls()); n != 1 {
		t.Fatalf("%d calls; the retry should have been cancelled", n)
	}
}

// mhClient is a media handler calling the appliance's MediaCoordinationService.
func (e *env) mhClient(token string) (internalpb.MediaCoordinationServiceClient, context.Context) {
	e.t.Helper()
	conn, err := grpc.NewClient(e.a.grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return internalpb.NewMediaCoordinationServiceClient(conn), metadata.AppendToOutgoingContext(waitCtx(e.t), "authorization", "Bearer "+token)
}

var twoMHs = []*internalpb.MhAssignment{
	{MhId: "mh-1", WebtransportEndpoint: "https://mh-1.example/", GrpcEndpoint: "http://127.0.0.1:1"},
	{MhId: "mh-2", WebtransportEndpoint: "https://mh-2.example/", GrpcEndpoint: "http://127.0.0.1:1"},
}

func TestMediaHandlerNotifications(t *testing.T) {
	issuer := devissuer.NewIssuer()
	// Info level: the flood below is logged at debug.
	quiet := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := startEnvWith(t, issuer, testConfig(t, issuer), RunOptions{Logger: quiet})
	e.assignMHs("m1", twoMHs)
	alice := e.join("m1", "alice", "host")
	pid := alice.resp.ParticipantId
	client, ctx := e.mhClient(e.issuer.ServiceToken("mh-1", "media-handler"))
	connect := func(meeting, sub, handler string) {
		t.Helper()
		r, err := client.NotifyParticipantConnected(ctx, &internalpb.NotifyParticipantConnectedRequest{MeetingId: meeting, ParticipantId: sub, HandlerId: handler})
		if err != nil || !r.Acknowledged {
			t.Fatalf("connected(%s, %s, %s): %v %v", meeting, sub, handler, r, err)
		}
	}

	gcClient, gcCtx := e.mhClient(e.issuer.ServiceToken("gc-1", "global-controller"))
	if _, err := gcClient.NotifyParticipantConnected(gcCtx, &internalpb.NotifyParticipantConnectedRequest{MeetingId: "m1", ParticipantId: "alice", HandlerId: "mh-1"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a GC token: %v, want PERMISSION_DENIED", err)
	}
	if _, err := client.NotifyParticipantConnected(ctx, &internalpb.NotifyParticipantConnectedRequest{MeetingId: "m1", ParticipantId: "", HandlerId: "mh-1"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("an empty participant id: %v, want INVALID_ARGUMENT", err)
	}

	connect("m1", "alice", "mh-1")
	connect("m1", "alice", "mh-2")
	media := participantOf(t, e.meeting("m1"), pid).Media
	if media == nil || media.Connected != 2 || media.Total != 2 || !media.Handlers[0].MHConnected || media.Handlers[0].MHSince.IsZero() {
		t.Fatalf("media after two connections: %+v", media)
	}
	r, err := client.NotifyParticipantDisconnected(ctx, &internalpb.NotifyParticipantDisconnectedRequest{
		MeetingId: "m1", ParticipantId: "alice", HandlerId: "mh-1", Reason: internalpb.DisconnectReason_DISCONNECT_REASON_TIMEOUT})
	if err != nil || !r.Acknowledged {
		t.Fatal(r, err)
	}
	if media := participantOf(t, e.meeting("m1"), pid).Media; media.Connected != 1 || media.Handlers[0].MHConnected || !media.Handlers[1].MHConnected {
		t.Fatalf("media after a disconnection: %+v", media)
	}

	// Unknown meetings, participants and handlers are acknowledged and not
	// kept, however many come: a few hundred over gRPC, the rest straight
	// into the controller (the gRPC service's only call), where the 10,000
	// would otherwise spend most of the run verifying tokens.
	connect("m-unknown", "alice", "mh-1")
	connect("m1", "alice", "mh-unknown")
	const flood, overGRPC = 10000, 200
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < overGRPC; i += 8 {
				if _, err := client.NotifyParticipantConnected(ctx, &internalpb.NotifyParticipantConnectedRequest{
					MeetingId: "m1", ParticipantId: fmt.Sprintf("stranger-%d", i), HandlerId: "mh-1"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := overGRPC; i < flood; i++ {
		e.a.ctrl.MediaEvent(context.Background(), gc.MediaEvent{MeetingID: "m1", ParticipantID: fmt.Sprintf("stranger-%d", i), HandlerID: "mh-1", Connected: true})
	}
	m := e.a.ctrl.lookup("m1")
	m.media.mu.Lock()
	parts, subs := len(m.media.parts), len(m.media.subs)
	links := len(m.media.parts[pid].mh)
	m.media.mu.Unlock()
	if parts != 1 || subs != 1 || links != 1 {
		t.Fatalf("after %d unknown notifications the meeting keeps %d participants, %d subjects, %d links", flood, parts, subs, links)
	}
	for sample, want := range map[string]float64{
		`mc_mh_notifications_unmatched_total{reason="unknown_participant"}`: flood,
		`mc_mh_notifications_unmatched_total{reason="unknown_meeting"}`:     1,
		`mc_mh_notifications_unmatched_total{reason="unknown_handler"}`:     1,
		`mc_mh_notifications_received_total{event_type="connected"}`:        flood + 4,
		`mc_mh_notifications_received_total{event_type="disconnected"}`:     1,
	} {
		if got := e.sample(sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}

	// Leaving clears it.
	alice.Close()
	waitFor(t, "the meeting to end", func() bool { return len(e.a.ctrl.Snapshots()) == 0 })
	m.media.mu.Lock()
	defer m.media.mu.Unlock()
	if len(m.media.parts) != 0 || len(m.media.subs) != 0 {
		t.Fatal("media state kept after the meeting ended")
	}
}

func TestMediaConnectionUpdate(t *testing.T) {
	logs := captureLogs(t)
	issuer := devissuer.NewIssuer()
	e := startEnvWith(t, issuer, testConfig(t, issuer), RunOptions{Logger: logs.logger()})
	e.assignMHs("m1", twoMHs)
	alice := e.join("m1", "alice", "host")
	pid := alice.resp.ParticipantId
	long := strings.Repeat("q", 64<<10-300)
	update := &pb.ClientMessage{Message: &pb.ClientMessage_MediaConnectionUpdate{MediaConnectionUpdate: &pb.MediaConnectionUpdate{
		Statuses: []*pb.MhConnectionStatus{
			{MhUrl: "https://mh-1.example/", State: pb.ConnectionState_CONNECTION_STATE_FAILED, FailureReason: &long},
			{MhUrl: "https://mh-2.example/", State: pb.ConnectionState_CONNECTION_STATE_CONNECTED},
			{MhUrl: "https://elsewhere.example/", State: pb.ConnectionState_CONNECTION_STATE_CONNECTED},
		},
	}}}
	alice.send(update)
	// The session goes on (no error): a mute comes back.
	alice.send(&pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: true}}})
	if m := alice.expect("mute update"); m.GetParticipantMuteUpdate() == nil {
		t.Fatalf("answer to a media connection update: %v", m)
	}

	media := participantOf(t, e.meeting("m1"), pid).Media
	h1, h2 := media.Handlers[0], media.Handlers[1]
	if h1.ClientState != "FAILED" || len(h1.ClientFailureReason) != maxClientString || h1.Disagree {
		t.Fatalf("mh-1 as the client reports it: %+v", h1)
	}
	if h2.ClientState != "CONNECTED" || !h2.Disagree {
		t.Fatalf("mh-2: the client says connected, the MH says nothing: %+v", h2)
	}
	for sample, want := range map[string]float64{
		`mc_participant_mh_status_total{state="failed"}`:               1,
		`mc_participant_mh_status_total{state="connected"}`:            1,
		`mc_participant_mh_status_ignored_total{reason="unknown_url"}`: 1,
	} {
		if got := e.sample(sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}
	failed := logs.lines("connection FAILED")
	if len(failed) != 1 || !strings.Contains(failed[0], "failure_reason="+strings.Repeat("q", maxClientString)+" ") {
		t.Fatalf("FAILED log lines: %q", failed)
	}
	if strings.Contains(logs.String(), strings.Repeat("q", maxClientString+1)) || strings.Contains(logs.String(), "elsewhere.example") {
		t.Fatal("a client string reached the log untruncated")
	}

	// The MH says connected while the client says FAILED: shown as such.
	client, ctx := e.mhClient(e.issuer.ServiceToken("mh-1", "media-handler"))
	if _, err := client.NotifyParticipantConnected(ctx, &internalpb.NotifyParticipantConnectedRequest{MeetingId: "m1", ParticipantId: "alice", HandlerId: "mh-1"}); err != nil {
		t.Fatal(err)
	}
	if h := participantOf(t, e.meeting("m1"), pid).Media.Handlers[0]; !h.MHConnected || h.ClientState != "FAILED" || !h.Disagree {
		t.Fatalf("mh-1: %+v", h)
	}
}

// A client's trace context comes back on the answers and is on the log
// records of the request; a malformed one is dropped.
func TestClientTraceContext(t *testing.T) {
	logs := captureLogs(t)
	issuer := devissuer.NewIssuer()
	e := startEnvWith(t, issuer, testConfig(t, issuer), RunOptions{Logger: logs.logger()})
	e.assign("m1")
	want, _ := tracectx.Parse(clientTrace, "")
	sameTrace := func(what, parent string) {
		t.Helper()
		tr, ok := tracectx.Parse(parent, "")
		if !ok || tr.TraceID != want.TraceID || tr.SpanID == want.SpanID {
			t.Fatalf("%s carries traceparent %q, want a span of trace %s", what, parent, want.TraceIDString())
		}
	}

	c := e.dial()
	join := joinMsg("m1", e.issuer.MeetingToken("alice", "m1", devissuer.WithRole("participant")), "alice")
	join.TraceParent, join.TraceState = clientTrace, "vendor=opaque"
	c.send(join)
	resp := c.expect("join response")
	sameTrace("the join response", resp.TraceParent)
	if resp.TraceState != "vendor=opaque" {
		t.Fatalf("trace_state %q", resp.TraceState)
	}
	// The join is logged just after its response is queued.
	waitFor(t, "the join's log line", func() bool { return len(logs.lines(`msg="participant joined"`)) > 0 })
	if joined := logs.lines(`msg="participant joined"`); len(joined) != 1 || !strings.Contains(joined[0], "trace_id="+want.TraceIDString()) {
		t.Fatalf("join log: %q", joined)
	}

	// A refused request's error carries its trace.
	hostMute := &pb.ClientMessage{TraceParent: clientTrace, Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{ParticipantId: "x", AudioMuted: true}}}
	c.send(hostMute)
	errMsg := c.until("error", func(m *pb.ServerMessage) bool { return m.GetError() != nil })
	sameTrace("the error", errMsg.TraceParent)

	// A mute with a malformed traceparent: answered without trace fields,
	// the value echoed nowhere.
	const bad = "00-NOT-A-TRACE-01"
	c.send(&pb.ClientMessage{TraceParent: bad, TraceState: "also=bad=", Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{VideoMuted: true}}})
	u := c.until("mute update", func(m *pb.ServerMessage) bool { return m.GetParticipantMuteUpdate() != nil })
	if u.TraceParent != "" || u.TraceState != "" {
		t.Fatalf("answer to a malformed trace carries %q %q", u.TraceParent, u.TraceState)
	}
	if strings.Contains(logs.String(), "NOT-A-TRACE") {
		t.Fatal("the malformed traceparent reached the log")
	}
}

// On a drain every client is told to reconnect (RedirectToMc) before its
// session is closed.
func TestDrainRedirectsClients(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	alice := e.join("m1", "alice", "host")
	stopped := make(chan struct{})
	go func() { e.stop(); close(stopped) }()
	defer func() { <-stopped }()
	m := alice.until("redirect", func(m *pb.ServerMessage) bool { return m.GetRedirectToMc() != nil }).GetRedirectToMc()
	if m.NewMcEndpoint != e.cfg.WebTransportAdvertise || m.MeetingId != "m1" || m.Reason != "migration" {
		t.Fatalf("redirect %+v", m)
	}
	if closed := alice.expectClosed(); closed.Code != closeGoingAway {
		t.Fatalf("closed with %d, want %d after the redirect", closed.Code, closeGoingAway)
	}
}
