package gc

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/capacity"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
	"github.com/edgemc/edgemc/gc/internalpb"
)

// heldAssigner is a minimal appliance: it holds meetings, accepts a
// re-assignment of a held one, and otherwise applies CheckCapacity.
type heldAssigner struct {
	mu        sync.Mutex
	load      Load
	held      map[string][]MHAssignment
	err       error
	errReason internalpb.RejectionReason // returned with err
	caller    string
}

func (a *heldAssigner) AssignMeeting(ctx context.Context, id string, mhs []MHAssignment, _ string) (internalpb.RejectionReason, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := ServiceClaimsFromContext(ctx); ok {
		a.caller = c.Subject
	}
	if a.err != nil {
		return a.errReason, a.err
	}
	if _, ok := a.held[id]; ok {
		return internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED, nil
	}
	if r := CheckCapacity(a.load); r != internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED {
		return r, nil
	}
	a.held[id] = mhs
	a.load.CurrentMeetings++
	a.load.CurrentParticipants += capacity.ParticipantsPerMeeting
	return internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED, nil
}

func (a *heldAssigner) set(f func(*heldAssigner)) { a.mu.Lock(); f(a); a.mu.Unlock() }

type mhCoordination struct {
	internalpb.UnimplementedMediaCoordinationServiceServer
}

func (mhCoordination) NotifyParticipantConnected(context.Context, *internalpb.NotifyParticipantConnectedRequest) (*internalpb.NotifyParticipantConnectedResponse, error) {
	return &internalpb.NotifyParticipantConnectedResponse{Acknowledged: true}, nil
}

type serverEnv struct {
	addr   string
	conn   *grpc.ClientConn
	issuer *devissuer.Issuer
	gcTok  string
	a      *heldAssigner
}

func startServer(t testing.TB, v *auth.Verifier, iss *devissuer.Issuer) *serverEnv {
	t.Helper()
	return startServerConfig(t, ServerConfig{Verifier: v, Logger: slog.New(slog.DiscardHandler)}, iss)
}

func startServerConfig(t testing.TB, cfg ServerConfig, iss *devissuer.Issuer) *serverEnv {
	t.Helper()
	a := &heldAssigner{
		load: Load{MaxMeetings: 2, MaxParticipants: 100, Health: internalpb.HealthStatus_HEALTHY},
		held: map[string][]MHAssignment{},
	}
	srv := NewServer(cfg, a)
	internalpb.RegisterMediaCoordinationServiceServer(srv, mhCoordination{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &serverEnv{addr: lis.Addr().String(), conn: conn, issuer: iss, a: a,
		gcTok: iss.ServiceToken("gc-1", ServiceTypeGC)}
}

func newServerEnv(t testing.TB) *serverEnv {
	iss := devissuer.NewIssuer()
	v := auth.NewVerifier(auth.NewStaticKeys(iss.PublicKey()), auth.VerifierOptions{})
	return startServer(t, v, iss)
}

func withToken(ctx context.Context, tok string) context.Context {
	if tok == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func assignReq(id string) *internalpb.AssignMeetingWithMhRequest {
	return &internalpb.AssignMeetingWithMhRequest{
		MeetingId:      id,
		RequestingGcId: "gc-1",
		MhAssignments:  []*internalpb.MhAssignment{{MhId: "mh-1", WebtransportEndpoint: "https://mh:4433", GrpcEndpoint: "http://mh:50052"}},
	}
}

func TestServerAuthentication(t *testing.T) {
	ctx := testCtx(t)
	e := newServerEnv(t)
	iss := e.issuer
	stranger := devissuer.NewIssuer()
	now := time.Now()
	const mcMethod = "/dark_tower.internal.v1.MeetingControllerService/AssignMeetingWithMh"
	const mhMethod = "/dark_tower.internal.v1.MediaCoordinationService/NotifyParticipantConnected"

	tests := []struct {
		name, method, token string
		header              string // raw authorization header, overrides token
		want                codes.Code
	}{
		{"valid GC token", mcMethod, e.gcTok, "", codes.OK},
		{"missing token", mcMethod, "", "", codes.Unauthenticated},
		{"not bearer", mcMethod, "", "Basic Zm9vOmJhcg==", codes.Unauthenticated},
		{"malformed", mcMethod, "not.a.jwt", "", codes.Unauthenticated},
		{"bad signature", mcMethod, stranger.ServiceToken("gc-1", ServiceTypeGC, devissuer.WithKID(iss.KID())), "", codes.Unauthenticated},
		{"expired", mcMethod, iss.ServiceToken("gc-1", ServiceTypeGC, devissuer.WithIssuedAt(now.Add(-2*time.Hour)), devissuer.WithTTL(time.Hour)), "", codes.Unauthenticated},
		{"iat in future", mcMethod, iss.ServiceToken("gc-1", ServiceTypeGC, devissuer.WithIssuedAt(now.Add(10*time.Minute))), "", codes.Unauthenticated},
		{"join token", mcMethod, iss.MeetingToken("u", "m"), "", codes.Unauthenticated},
		{"wrong scope", mcMethod, iss.ServiceToken("gc-1", ServiceTypeGC, devissuer.WithScopes("service.read.mc")), "", codes.PermissionDenied},
		{"no scope", mcMethod, iss.ServiceToken("gc-1", ServiceTypeGC, devissuer.WithoutClaim("scope")), "", codes.PermissionDenied},
		{"wrong service_type", mcMethod, iss.ServiceToken("mh-1", ServiceTypeMediaHandler), "", codes.PermissionDenied},
		{"MH token on MH service", mhMethod, iss.ServiceToken("mh-1", ServiceTypeMediaHandler), "", codes.OK},
		{"GC token on MH service", mhMethod, e.gcTok, "", codes.PermissionDenied},
		{"unknown service", "/dark_tower.internal.v1.Admin/Shutdown", e.gcTok, "", codes.PermissionDenied},
		{"unknown method of a known service", "/dark_tower.internal.v1.MeetingControllerService/Drop", e.gcTok, "", codes.PermissionDenied},
		{"GC service path on the MC", "/dark_tower.internal.v1.GlobalControllerService/RegisterMC", e.gcTok, "", codes.PermissionDenied},
		{"unknown service without token", "/x.Y/Z", "", "", codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cctx := withToken(ctx, tt.token)
			if tt.header != "" {
				cctx = metadata.AppendToOutgoingContext(ctx, "authorization", tt.header)
			}
			var req, resp any = assignReq("m-auth"), new(internalpb.AssignMeetingWithMhResponse)
			if strings.Contains(tt.method, "MediaCoordination") {
				req, resp = &internalpb.NotifyParticipantConnectedRequest{MeetingId: "m"}, new(internalpb.NotifyParticipantConnectedResponse)
			}
			err := e.conn.Invoke(cctx, tt.method, req, resp)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.want)
			}
		})
	}
}

// recorder is a ServerObserver and an auth.Observer that records what it is
// told.
type recorder struct {
	mu  sync.Mutex
	got []string
}

func (r *recorder) add(s string) { r.mu.Lock(); r.got = append(r.got, s); r.mu.Unlock() }

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func (r *recorder) CallerTypeRejected(service, expected, actual string) {
	r.add("caller " + service + " " + expected + " " + actual)
}

func (r *recorder) TokenChecked(tokenType, reason string) { r.add("token " + tokenType + "/" + reason) }

// Every call's token check is observed once, and a caller of the wrong
// service type is reported with bounded labels.
func TestServerObservesChecks(t *testing.T) {
	ctx := testCtx(t)
	iss := devissuer.NewIssuer()
	rec := &recorder{}
	v := auth.NewVerifier(auth.NewStaticKeys(iss.PublicKey()), auth.VerifierOptions{Observer: rec})
	e := startServerConfig(t, ServerConfig{Verifier: v, Observer: rec}, iss)
	const mcMethod = "/dark_tower.internal.v1.MeetingControllerService/AssignMeetingWithMh"
	const mhMethod = "/dark_tower.internal.v1.MediaCoordinationService/NotifyParticipantConnected"
	for _, tt := range []struct {
		name, method, token string
		want                []string
	}{
		{"GC token", mcMethod, e.gcTok, []string{"token service/"}},
		{"no token", mcMethod, "", []string{"token service/missing_token"}},
		{"wrong scope", mcMethod, iss.ServiceToken("gc-1", ServiceTypeGC, devissuer.WithScopes("service.read.mc")), []string{"token service/scope_mismatch"}},
		{"MH token on the MC service", mcMethod, iss.ServiceToken("mh-1", ServiceTypeMediaHandler),
			[]string{"token service/", "caller MeetingControllerService global-controller media-handler"}},
		{"GC token on the MH service", mhMethod, e.gcTok,
			[]string{"token service/", "caller MediaCoordinationService media-handler global-controller"}},
		{"unknown service type", mcMethod, iss.ServiceToken("x", "build-bot-7f3a"),
			[]string{"token service/", "caller MeetingControllerService global-controller other"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var req, resp any = assignReq("m-obs"), new(internalpb.AssignMeetingWithMhResponse)
			if tt.method == mhMethod {
				req, resp = &internalpb.NotifyParticipantConnectedRequest{MeetingId: "m"}, new(internalpb.NotifyParticipantConnectedResponse)
			}
			_ = e.conn.Invoke(withToken(ctx, tt.token), tt.method, req, resp)
			if got := rec.take(); !slices.Equal(got, tt.want) {
				t.Fatalf("observed %q, want %q", got, tt.want)
			}
		})
	}
}

func TestServerUnknownKID(t *testing.T) {
	ctx := testCtx(t)
	iss := devissuer.NewIssuer()
	v := auth.NewVerifier(kidKeys{iss.KID(): iss}, auth.VerifierOptions{})
	e := startServer(t, v, iss)
	_, err := gctest.Assign(ctx, e.addr, iss.ServiceToken("gc", ServiceTypeGC, devissuer.WithKID("rotated-away")), assignReq("m"))
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("unknown kid: %v", err)
	}
	if _, err := gctest.Assign(ctx, e.addr, iss.ServiceToken("gc", ServiceTypeGC), assignReq("m")); err != nil {
		t.Fatalf("known kid: %v", err)
	}
}

type kidKeys map[string]*devissuer.Issuer

func (k kidKeys) Key(_ context.Context, kid string) (ed25519.PublicKey, error) {
	if iss, ok := k[kid]; ok {
		return iss.PublicKey(), nil
	}
	return nil, auth.ErrUnknownKey
}

func TestServerFailsClosedWithoutVerifier(t *testing.T) {
	iss := devissuer.NewIssuer()
	e := startServer(t, nil, iss)
	_, err := gctest.Assign(testCtx(t), e.addr, e.gcTok, assignReq("m"))
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no verifier: %v", err)
	}
}

func TestAssignment(t *testing.T) {
	ctx := testCtx(t)
	e := newServerEnv(t)
	assign := func(id string) (*internalpb.AssignMeetingWithMhResponse, error) {
		return gctest.Assign(ctx, e.addr, e.gcTok, assignReq(id))
	}
	accepted := func(id string) {
		t.Helper()
		resp, err := assign(id)
		if err != nil || !resp.GetAccepted() || resp.GetRejectionReason() != 0 {
			t.Fatalf("assign %s = %v, %v; want accepted", id, resp, err)
		}
	}
	rejected := func(id string, want internalpb.RejectionReason) {
		t.Helper()
		resp, err := assign(id)
		if err != nil || resp.GetAccepted() || resp.GetRejectionReason() != want {
			t.Fatalf("assign %s = %v, %v; want rejected %v", id, resp, err, want)
		}
	}

	accepted("m-1")
	e.a.mu.Lock()
	mhs, caller := e.a.held["m-1"], e.a.caller
	e.a.mu.Unlock()
	if len(mhs) != 1 || mhs[0] != (MHAssignment{MHID: "mh-1", WebTransportEndpoint: "https://mh:4433", GRPCEndpoint: "http://mh:50052"}) || caller != "gc-1" {
		t.Fatalf("assigner got %+v from %q", mhs, caller)
	}
	accepted("m-1") // idempotent
	accepted("m-2")
	rejected("m-3", internalpb.RejectionReason_REJECTION_REASON_AT_CAPACITY)
	accepted("m-2") // a held meeting is accepted even at capacity
	e.a.set(func(a *heldAssigner) { a.load.MaxMeetings = 10; a.load.Health = internalpb.HealthStatus_DRAINING })
	rejected("m-3", internalpb.RejectionReason_REJECTION_REASON_DRAINING)
	e.a.set(func(a *heldAssigner) { a.load.Health = internalpb.HealthStatus_UNHEALTHY })
	rejected("m-3", internalpb.RejectionReason_REJECTION_REASON_UNHEALTHY)

	e.a.set(func(a *heldAssigner) { a.err = errors.New("store: disk on fire at /var/lib/edgemc") })
	_, err := assign("m-4")
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "disk") {
		t.Fatalf("assigner error: %v (want Internal saying nothing more)", err)
	}
	// A store that could not hold the meeting: the GC is told it was not accepted, and why.
	e.a.set(func(a *heldAssigner) { a.errReason = internalpb.RejectionReason_REJECTION_REASON_UNHEALTHY })
	rejected("m-4", internalpb.RejectionReason_REJECTION_REASON_UNHEALTHY)
}

func TestAssignmentValidation(t *testing.T) {
	ctx := testCtx(t)
	e := newServerEnv(t)
	many := assignReq("m")
	for range MaxMHAssignments {
		many.MhAssignments = append(many.MhAssignments, &internalpb.MhAssignment{MhId: "mh"})
	}
	wide := assignReq("m")
	for range MaxMHAssignments {
		wide.MhAssignments = append(wide.MhAssignments, &internalpb.MhAssignment{MhId: "mh", WebtransportEndpoint: strings.Repeat("w", maxEndpointBytes)})
	}
	wide.MhAssignments = wide.MhAssignments[:MaxMHAssignments]
	tests := map[string]*internalpb.AssignMeetingWithMhRequest{
		"endpoints too long together": wide,
		"empty meeting id":            {},
		"long meeting id":             assignReq(strings.Repeat("m", MaxMeetingIDBytes+1)),
		"too many MHs":                many,
		"empty MH id":                 {MeetingId: "m", MhAssignments: []*internalpb.MhAssignment{{}}},
		"long endpoint":               {MeetingId: "m", MhAssignments: []*internalpb.MhAssignment{{MhId: "x", GrpcEndpoint: strings.Repeat("e", 2000)}}},
		"long gc id":                  {MeetingId: "m", RequestingGcId: strings.Repeat("g", 300)},
	}
	for name, req := range tests {
		if _, err := gctest.Assign(ctx, e.addr, e.gcTok, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	huge := assignReq("m")
	huge.MhAssignments[0].MhId = strings.Repeat("x", 100<<10)
	if _, err := gctest.Assign(ctx, e.addr, e.gcTok, huge); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized message: %v, want ResourceExhausted", err)
	}
	if _, err := gctest.Assign(ctx, e.addr, e.gcTok, assignReq(strings.Repeat("m", MaxMeetingIDBytes))); err != nil {
		t.Errorf("meeting id of exactly %d bytes: %v", MaxMeetingIDBytes, err)
	}
}

func TestParseBearer(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc":   "abc",
		"bearer abc":   "abc",
		"Bearer  abc ": "abc",
		"Bearer":       "",
		"Bearer ":      "",
		"Basic abc":    "",
		"Bearer a b":   "",
		"abc":          "",
	} {
		got, err := parseBearer(in)
		if got != want || (err == nil) != (want != "") {
			t.Errorf("parseBearer(%q) = %q, %v", in, got, err)
		}
	}
}

func FuzzParseBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b.c", "Basic x", "", "Bearer \t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		tok, err := parseBearer(in)
		if err == nil && (tok == "" || strings.ContainsAny(tok, " \t")) {
			t.Fatalf("parseBearer(%q) = %q", in, tok)
		}
	})
}
