package gc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/gc/tracectx"
)

// Authorisation rules of the contract.
const (
	ScopeWriteMC            = "service.write.mc"
	ServiceTypeGC           = "global-controller"
	ServiceTypeMediaHandler = "media-handler"
	ServiceTypeMC           = "meeting-controller"
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

// ServerObserver is told about refused callers, e.g. for metrics. Its
// method must not block.
type ServerObserver interface {
	// CallerTypeRejected reports a call to grpcService (the service's
	// short name, e.g. "MeetingControllerService") refused because the
	// caller's valid token has service_type actualType (one of the
	// ServiceType constants or "other") instead of expectedType.
	CallerTypeRejected(grpcService, expectedType, actualType string)
}

type nopServerObserver struct{}

func (nopServerObserver) CallerTypeRejected(string, string, string) {}

// ServerConfig configures NewServer. A nil Verifier refuses every call.
type ServerConfig struct {
	Verifier *auth.Verifier
	Logger   *slog.Logger // nil discards the server's log
	Observer ServerObserver
	// TLS, when set, is the TLS configuration served (a tlsfiles.Server's,
	// so that a renewed certificate is used without a restart); nil serves
	// plaintext.
	TLS *tls.Config
	// Media, when set, takes the media handlers' MediaCoordinationService
	// notifications (see media.go).
	Media  MediaCoordinator
	Limits Limits
	// Refusals counts refused calls (metrics); nil is allowed.
	Refusals RefusalCounter
}

// RefusalCounter is told about every refused call with its reason: a token
// refusal reason of auth.TokenError ("missing_token" for no bearer token,
// "scope_mismatch", …), "unknown_method" or "wrong_service_type". It must
// not block.
type RefusalCounter interface {
	GRPCRefused(reason string)
}

// NewServer returns a gRPC server with MeetingControllerService registered
// and every call, unary or streaming, behind the service-token check:
// MeetingControllerService needs a "global-controller" token,
// MediaCoordinationService (served when cfg.Media is set) a
// "media-handler" token, both with scope "service.write.mc".
// Any other method is refused with PERMISSION_DENIED; a missing or invalid
// token with UNAUTHENTICATED. The token is checked as soon as a call's
// headers arrive, before any work is spent on the call, and the server
// applies cfg.Limits.
func NewServer(cfg ServerConfig, a Assigner) *grpc.Server {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	obs := cfg.Observer
	if obs == nil {
		obs = nopServerObserver{}
	}
	g := &guard{verifier: cfg.Verifier, log: log, obs: obs, limits: cfg.Limits.withDefaults(), refusals: cfg.Refusals}
	opts := append(g.limits.serverOptions(g),
		grpc.ChainUnaryInterceptor(tracectx.UnaryServerInterceptor(), g.unary),
		grpc.ChainStreamInterceptor(g.stream),
		grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
			return status.Error(codes.PermissionDenied, "unknown service")
		}),
		grpc.MaxRecvMsgSize(maxRequestBytes),
	)
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	srv := grpc.NewServer(opts...)
	internalpb.RegisterMeetingControllerServiceServer(srv, &assignService{assigner: a, log: log})
	if cfg.Media != nil {
		internalpb.RegisterMediaCoordinationServiceServer(srv, &mediaService{media: cfg.Media, log: log})
	}
	return srv
}

type claimsKey struct{}

// ServiceClaimsFromContext returns the verified caller of a call served by
// a NewServer server.
func ServiceClaimsFromContext(ctx context.Context) (*auth.ServiceClaims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*auth.ServiceClaims)
	return c, ok
}

// requiredServiceType is the service_type allowed to call fullMethod, and
// the short name of its service.
func requiredServiceType(fullMethod string) (serviceType, service string, ok bool) {
	full, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	switch full {
	case internalpb.MeetingControllerService_ServiceDesc.ServiceName:
		serviceType = ServiceTypeGC
	case internalpb.MediaCoordinationService_ServiceDesc.ServiceName:
		serviceType = ServiceTypeMediaHandler
	default:
		return "", "", false
	}
	return serviceType, full[strings.LastIndex(full, ".")+1:], true
}

// knownServiceType is s when it is a Dark Tower service type, else "other",
// so that what a token claims cannot grow a metric's label values.
func knownServiceType(s string) string {
	switch s {
	case ServiceTypeGC, ServiceTypeMediaHandler, ServiceTypeMC:
		return s
	}
	return "other"
}

type guard struct {
	verifier *auth.Verifier
	log      *slog.Logger
	obs      ServerObserver
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
	// An absent or malformed header gives "", which the verifier refuses
	// (and counts) as a missing token.
	claims, err := g.verifier.VerifyService(ctx, bearerToken(ctx), ScopeWriteMC)
	if err != nil {
		reason := "invalid"
		if te := (*auth.TokenError)(nil); errors.As(err, &te) {
			reason = te.Reason
		}
		g.refuse(ctx, fullMethod, reason, err)
		switch reason {
		case auth.ReasonMissing:
			return nil, status.Error(codes.Unauthenticated, "missing or malformed bearer token")
		case auth.ReasonScope:
			return nil, status.Errorf(codes.PermissionDenied, "scope %s required", ScopeWriteMC)
		}
		return nil, status.Error(codes.Unauthenticated, "invalid service token")
	}
	want, service, known := requiredServiceType(fullMethod)
	switch {
	case !known:
		g.refuse(ctx, fullMethod, "unknown_method", nil)
		return nil, status.Error(codes.PermissionDenied, "method not allowed")
	case claims.ServiceType != want:
		g.obs.CallerTypeRejected(service, want, knownServiceType(claims.ServiceType))
		g.refuse(ctx, fullMethod, "wrong_service_type", nil, "service_type", claims.ServiceType, "sub", claims.Subject)
		return nil, status.Errorf(codes.PermissionDenied, "service type not allowed")
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
	g.log.WarnContext(ctx, "refused gRPC call", attrs...)
}

// truncate shortens a peer-chosen string for a log line.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

var errNoBearer = errors.New("no bearer token")

// bearerToken is the token of the single "authorization: Bearer" header, or
// "" when there is none, it is malformed, or several make it ambiguous.
func bearerToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return ""
	}
	tok, _ := parseBearer(vals[0])
	return tok
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
		s.log.ErrorContext(ctx, "meeting assignment failed", "meeting_id", req.GetMeetingId(), "gc_id", req.GetRequestingGcId(),
			"rejection_reason", reason.String(), "error", err)
		if reason == internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED {
			return nil, status.Error(codes.Internal, "assignment failed")
		}
		return &internalpb.AssignMeetingWithMhResponse{Accepted: false, RejectionReason: reason}, nil
	}
	accepted := reason == internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED
	s.log.InfoContext(ctx, "meeting assignment", "meeting_id", req.GetMeetingId(), "gc_id", req.GetRequestingGcId(),
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
