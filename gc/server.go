package gc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/internalpb"
)

// Authorisation rules of the contract.
const (
	ScopeWriteMC            = "service.write.mc"
	ServiceTypeGC           = "global-controller"
	ServiceTypeMediaHandler = "media-handler"
)

// Request limits enforced by the server.
const (
	MaxMeetingIDBytes = 256
	MaxMHAssignments  = 64
	maxIDBytes        = 256
	maxEndpointBytes  = 1024
	// maxMediaServerBytes bounds the WebTransport endpoints of one meeting
	// together, so that a JoinResponse carrying them fits one 64 KiB frame.
	maxMediaServerBytes = 32 << 10
	// maxRequestBytes caps an inbound message; a maximal valid assignment
	// is far smaller.
	maxRequestBytes = 64 << 10
)

// MHAssignment is one media handler of an assigned meeting.
type MHAssignment struct {
	MHID, WebTransportEndpoint, GRPCEndpoint string
}

// Assigner takes meetings assigned by the GC; the appliance implements it.
type Assigner interface {
	// AssignMeeting returns REJECTION_REASON_UNSPECIFIED and nil to accept,
	// a non-zero reason to refuse, or an error: with a non-zero reason the GC
	// is answered accepted=false with that reason (the error is logged), with
	// none it gets an Internal error. Assigning a meeting already held must be
	// accepted once it is held.
	AssignMeeting(ctx context.Context, meetingID string, mhs []MHAssignment, gcID string) (internalpb.RejectionReason, error)
}

// ServerConfig configures NewServer. A nil Verifier refuses every call.
type ServerConfig struct {
	Verifier *auth.Verifier
	Logger   *slog.Logger // nil discards the server's log
	Limits   Limits
	// Refusals counts refused calls (metrics); nil is allowed.
	Refusals RefusalCounter
}

// RefusalCounter is told about every refused call with its reason: "missing"
// (no bearer token), a token refusal reason of auth.TokenError,
// "unknown_method", "wrong_service_type" or "missing_scope". It must not
// block.
type RefusalCounter interface {
	GRPCRefused(reason string)
}

// NewServer returns a gRPC server with MeetingControllerService registered
// and every call, unary or streaming, behind the service-token check:
// MeetingControllerService needs a "global-controller" token,
// MediaCoordinationService (which the caller may register on the returned
// server) a "media-handler" token, both with scope "service.write.mc".
// Any other method is refused with PERMISSION_DENIED; a missing or invalid
// token with UNAUTHENTICATED. The token is checked as soon as a call's
// headers arrive, before any work is spent on the call, and the server
// applies cfg.Limits.
func NewServer(cfg ServerConfig, a Assigner) *grpc.Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &guard{verifier: cfg.Verifier, log: log, limits: cfg.Limits.withDefaults(), refusals: cfg.Refusals}
	opts := append(g.limits.serverOptions(g),
		grpc.ChainUnaryInterceptor(g.unary),
		grpc.ChainStreamInterceptor(g.stream),
		grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
			return status.Error(codes.PermissionDenied, "unknown service")
		}),
		grpc.MaxRecvMsgSize(maxRequestBytes),
	)
	srv := grpc.NewServer(opts...)
	internalpb.RegisterMeetingControllerServiceServer(srv, &assignService{assigner: a, log: log})
	return srv
}

type claimsKey struct{}

// ServiceClaimsFromContext returns the verified caller of a call served by
// a NewServer server.
func ServiceClaimsFromContext(ctx context.Context) (*auth.ServiceClaims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*auth.ServiceClaims)
	return c, ok
}

// requiredServiceType is the service_type allowed to call fullMethod.
func requiredServiceType(fullMethod string) (string, bool) {
	service, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	switch service {
	case internalpb.MeetingControllerService_ServiceDesc.ServiceName:
		return ServiceTypeGC, true
	case internalpb.MediaCoordinationService_ServiceDesc.ServiceName:
		return ServiceTypeMediaHandler, true
	}
	return "", false
}

type guard struct {
	verifier *auth.Verifier
	log      *slog.Logger
	limits   Limits
	refusals RefusalCounter
}

func (g *guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	requestArrived(ctx)
	ctx, err := g.authorized(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g *guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := g.authorized(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }

// RecvMsg stops the request timer once a request has arrived.
func (s *authedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	requestArrived(s.ctx)
	return err
}

// authorized returns ctx carrying the caller's claims: those the tap
// checked, or, should a call come by without them, checked now. A call the
// tap refused (and let through) gets the tap's error.
func (g *guard) authorized(ctx context.Context, fullMethod string) (context.Context, error) {
	if err := tapRefusal(ctx); err != nil {
		return nil, err
	}
	if _, ok := ServiceClaimsFromContext(ctx); ok {
		return ctx, nil
	}
	claims, err := g.authorize(ctx, fullMethod)
	if err != nil {
		return nil, err
	}
	return context.WithValue(ctx, claimsKey{}, claims), nil
}

// authorize authenticates the caller's service token, then checks that its
// service_type and scope allow fullMethod. It fails closed.
func (g *guard) authorize(ctx context.Context, fullMethod string) (*auth.ServiceClaims, error) {
	token, err := bearerToken(ctx)
	if err != nil {
		g.refuse(ctx, fullMethod, "missing", err)
		return nil, status.Error(codes.Unauthenticated, "missing or malformed bearer token")
	}
	claims, err := g.verifier.VerifyService(ctx, token)
	if err != nil {
		reason := "invalid"
		if te := (*auth.TokenError)(nil); errors.As(err, &te) {
			reason = te.Reason
		}
		g.refuse(ctx, fullMethod, reason, err)
		return nil, status.Error(codes.Unauthenticated, "invalid service token")
	}
	want, known := requiredServiceType(fullMethod)
	switch {
	case !known:
		g.refuse(ctx, fullMethod, "unknown_method", nil)
		return nil, status.Error(codes.PermissionDenied, "method not allowed")
	case claims.ServiceType != want:
		g.refuse(ctx, fullMethod, "wrong_service_type", nil, "service_type", claims.ServiceType, "sub", claims.Subject)
		return nil, status.Errorf(codes.PermissionDenied, "service type not allowed")
	case !claims.HasScope(ScopeWriteMC):
		g.refuse(ctx, fullMethod, "missing_scope", nil, "sub", claims.Subject)
		return nil, status.Errorf(codes.PermissionDenied, "scope %s required", ScopeWriteMC)
	}
	return claims, nil
}

// refuse counts and logs a refused call. The log line is marked "refused"
// so that the appliance's logger samples a flood of them.
func (g *guard) refuse(ctx context.Context, method, reason string, err error, attrs ...any) {
	if g.refusals != nil {
		g.refusals.GRPCRefused(reason)
	}
	attrs = append(attrs, "refused", reason, "method", truncate(method, 128))
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		attrs = append(attrs, "peer", p.Addr.String())
	}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	g.log.Warn("refused gRPC call", attrs...)
}

// truncate shortens a peer-chosen string for a log line.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

var errNoBearer = errors.New("no bearer token")

// bearerToken extracts the token of the single "authorization: Bearer"
// header; several authorization headers are refused as ambiguous.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return "", fmt.Errorf("%w: %d authorization headers", errNoBearer, len(vals))
	}
	return parseBearer(vals[0])
}

func parseBearer(h string) (string, error) {
	scheme, tok, ok := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", errNoBearer
	}
	return tok, nil
}

type assignService struct {
	internalpb.UnimplementedMeetingControllerServiceServer
	assigner Assigner
	log      *slog.Logger
}

func (s *assignService) AssignMeetingWithMh(ctx context.Context, req *internalpb.AssignMeetingWithMhRequest) (*internalpb.AssignMeetingWithMhResponse, error) {
	if err := validateAssign(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	mhs := make([]MHAssignment, len(req.GetMhAssignments()))
	for i, m := range req.GetMhAssignments() {
		mhs[i] = MHAssignment{MHID: m.GetMhId(), WebTransportEndpoint: m.GetWebtransportEndpoint(), GRPCEndpoint: m.GetGrpcEndpoint()}
	}
	reason, err := s.assigner.AssignMeeting(ctx, req.GetMeetingId(), mhs, req.GetRequestingGcId())
	if err != nil {
		s.log.Error("meeting assignment failed", "meeting_id", req.GetMeetingId(), "gc_id", req.GetRequestingGcId(),
			"rejection_reason", reason.String(), "error", err)
		if reason == internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED {
			return nil, status.Error(codes.Internal, "assignment failed")
		}
		return &internalpb.AssignMeetingWithMhResponse{Accepted: false, RejectionReason: reason}, nil
	}
	accepted := reason == internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED
	s.log.Info("meeting assignment", "meeting_id", req.GetMeetingId(), "gc_id", req.GetRequestingGcId(),
		"media_handlers", len(mhs), "accepted", accepted, "rejection_reason", reason.String())
	return &internalpb.AssignMeetingWithMhResponse{Accepted: accepted, RejectionReason: reason}, nil
}

func validateAssign(req *internalpb.AssignMeetingWithMhRequest) error {
	switch id := req.GetMeetingId(); {
	case id == "":
		return errors.New("meeting_id is required")
	case len(id) > MaxMeetingIDBytes:
		return fmt.Errorf("meeting_id longer than %d bytes", MaxMeetingIDBytes)
	case len(req.GetRequestingGcId()) > maxIDBytes:
		return fmt.Errorf("requesting_gc_id longer than %d bytes", maxIDBytes)
	case len(req.GetMhAssignments()) > MaxMHAssignments:
		return fmt.Errorf("more than %d mh_assignments", MaxMHAssignments)
	}
	total := 0
	for i, m := range req.GetMhAssignments() {
		total += len(m.GetWebtransportEndpoint())
		switch {
		case m.GetMhId() == "" || len(m.GetMhId()) > maxIDBytes:
			return fmt.Errorf("mh_assignments[%d]: mh_id must be 1..%d bytes", i, maxIDBytes)
		case len(m.GetWebtransportEndpoint()) > maxEndpointBytes || len(m.GetGrpcEndpoint()) > maxEndpointBytes:
			return fmt.Errorf("mh_assignments[%d]: endpoint longer than %d bytes", i, maxEndpointBytes)
		case total > maxMediaServerBytes:
			return fmt.Errorf("webtransport endpoints longer than %d bytes together", maxMediaServerBytes)
		}
	}
	return nil
}
