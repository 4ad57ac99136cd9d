package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// env is one running appliance on loopback (real QUIC, gRPC, HTTP and
// bbolt), with a token issuer whose JWKS it trusts.
type env struct {
	t      *testing.T
	cfg    Config
	a      *appliance
	issuer *devissuer.Issuer
	stop   func()
}

func testConfig(t *testing.T, issuer *devissuer.Issuer) Config {
	jwks := httptest.NewServer(issuer.JWKSHandler())
	t.Cleanup(jwks.Close)
	cfg := DefaultConfig()
	cfg.ID = "mc-test"
	cfg.DataDir = t.TempDir()
	cfg.WebTransportListen = "127.0.0.1:0"
	cfg.GRPCListen = "127.0.0.1:0"
	cfg.HTTPListen = "127.0.0.1:0"
	cfg.JWKSURL = jwks.URL + "/.well-known/jwks.json"
	cfg.DrainTimeout = 10 * time.Second
	cfg.FirstFrameTimeout = 2 * time.Second
	cfg.DisconnectGrace = 30 * time.Second
	cfg.SessionIdleTimeout = time.Second
	return cfg
}

// startEnv starts an appliance with cfg (see testConfig); it is stopped
// (drained) when the test ends unless stopped earlier.
func startEnv(t *testing.T, issuer *devissuer.Issuer, cfg Config) *env {
	t.Helper()
	return startEnvWith(t, issuer, cfg, RunOptions{})
}

// startEnvWith is startEnv with run options; a nil Logger logs to the test.
func startEnvWith(t *testing.T, issuer *devissuer.Issuer, cfg Config, opts RunOptions) *env {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts.Version = "test"
	a, err := newAppliance(cfg, opts)
	if err != nil {
		t.Fatalf("start appliance: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	select {
	case <-a.wt.Ready():
	case err := <-done:
		t.Fatalf("appliance stopped at start: %v", err)
	}
	e := &env{t: t, cfg: cfg, a: a, issuer: issuer}
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("appliance run: %v", err)
		}
		a.close()
	}
	t.Cleanup(e.stop)
	return e
}

func newEnv(t *testing.T, mods ...func(*Config)) *env {
	issuer := devissuer.NewIssuer()
	cfg := testConfig(t, issuer)
	for _, m := range mods {
		m(&cfg)
	}
	return startEnv(t, issuer, cfg)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// assign asks the appliance over real gRPC, as the GC does, to hold meetingID.
func (e *env) assign(meetingID string) *internalpb.AssignMeetingWithMhResponse {
	e.t.Helper()
	return e.assignMHs(meetingID, []*internalpb.MhAssignment{{MhId: "mh-1", WebtransportEndpoint: "https://mh-1.example:4434/", GrpcEndpoint: "http://127.0.0.1:1"}})
}

// assignMHs is assign with these media handlers.
func (e *env) assignMHs(meetingID string, mhs []*internalpb.MhAssignment) *internalpb.AssignMeetingWithMhResponse {
	e.t.Helper()
	conn, err := grpc.NewClient(e.a.grpcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.issuer.ServiceToken("gc-test", "global-controller"))
	resp, err := internalpb.NewMeetingControllerServiceClient(conn).AssignMeetingWithMh(ctx, &internalpb.AssignMeetingWithMhRequest{
		MeetingId:      meetingID,
		MhAssignments:  mhs,
		RequestingGcId: "gc-test",
	})
	if err != nil {
		e.t.Fatalf("assign %s: %v", meetingID, err)
	}
	return resp
}

func (e *env) url() string {
	return fmt.Sprintf("https://%s/", e.a.wt.Addr().String())
}

// client is a participant's WebTransport session in a test.
type client struct {
	t *testing.T
	*webtransport.ClientConn
	resp *pb.JoinResponse
}

func (e *env) dial() *client {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cert := e.a.certs.Current()
	conn, err := webtransport.Dial(ctx, e.url(), webtransport.DialOptions{CertHashes: [][32]byte{cert.SHA256}})
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return &client{t: e.t, ClientConn: conn}
}

func joinMsg(meetingID, token, name string) *pb.ClientMessage {
	return &pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: &pb.JoinRequest{
		MeetingId: meetingID, JoinToken: token, ParticipantName: name,
	}}}
}

// join dials and joins meetingID as user sub with role; it fails the test
// unless a JoinResponse comes back.
func (e *env) join(meetingID, sub, role string) *client {
	e.t.Helper()
	c := e.dial()
	c.send(joinMsg(meetingID, e.issuer.MeetingToken(sub, meetingID, devissuer.WithRole(role)), sub))
	c.resp = c.expect("join response").GetJoinResponse()
	if c.resp == nil {
		e.t.Fatal("first answer is not a JoinResponse")
	}
	return c
}

func (c *client) send(m *pb.ClientMessage) {
	c.t.Helper()
	if err := c.Send(m); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recv reads the next server message (10 s at most).
func (c *client) recv() (*pb.ServerMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Recv(ctx)
}

// expect returns the next server message or fails the test.
func (c *client) expect(what string) *pb.ServerMessage {
	c.t.Helper()
	m, err := c.recv()
	if err != nil {
		c.t.Fatalf("waiting for %s: %v", what, err)
	}
	return m
}

// until reads messages until one satisfies ok, and returns it.
func (c *client) until(what string, ok func(*pb.ServerMessage) bool) *pb.ServerMessage {
	c.t.Helper()
	for {
		if m := c.expect(what); ok(m) {
			return m
		}
	}
}

// expectError reads until an ErrorMessage and checks its code.
func (c *client) expectError(code pb.ErrorCode) *pb.ErrorMessage {
	c.t.Helper()
	m := c.until("error "+code.String(), func(m *pb.ServerMessage) bool { return m.GetError() != nil })
	if got := m.GetError().Code; got != code {
		c.t.Fatalf("error code %v (%q), want %v", got, m.GetError().Message, code)
	}
	return m.GetError()
}

// expectClosed reads until the server closes the session.
func (c *client) expectClosed() *webtransport.SessionClosedError {
	c.t.Helper()
	for {
		_, err := c.recv()
		if err == nil {
			continue
		}
		var closed *webtransport.SessionClosedError
		if !errors.As(err, &closed) {
			c.t.Fatalf("session ended with %v, want a close by the server", err)
		}
		return closed
	}
}
