// Package devmh is a DEVELOPMENT media handler (MH): it answers
// MediaHandlerService.RegisterMeeting from MCs, takes clients on a
// WebTransport endpoint (one stream, one framed MhClientMessage carrying the
// join token), and tells the meeting's MC about each client that connects
// and leaves (MediaCoordinationService), as Dark Tower's MH does. It relays
// no media.
//
// It is a development stand-in used by `edgemc lab` (inside the same
// process, on loopback) and by tests; `edgemc serve` never uses it. It keeps
// state in memory only and talks plaintext gRPC. Serve it on loopback only.
package devmh

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go/http3"
	wt "github.com/quic-go/webtransport-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/gc/tracectx"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// What an MH demands of an MC's token, as Dark Tower's MH does.
const (
	callerServiceType = "meeting-controller"
	callerScope       = "service.write.mh"
)

// Config configures the development MH. Zero values take defaults.
type Config struct {
	ID string // handler_id in notifications ("devmh")
	// Verifier checks MCs' service tokens and clients' join tokens
	// (required).
	Verifier *auth.Verifier
	// ServiceToken returns the token for calls to MCs (service_type
	// media-handler); nil sends none.
	ServiceToken func() string
	// RegisterWait is how long a client of a meeting no MC has registered
	// is held before it is dropped (15 s).
	RegisterWait time.Duration
	Logger       *slog.Logger // nil discards
}

// Status is a snapshot for tests and lab pages.
type Status struct {
	Meetings []string // registered meetings, sorted
	Clients  int      // clients connected now
}

// MH is the development media handler. It is safe for concurrent use.
type MH struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	meetings map[string]string // meeting id → MC gRPC endpoint
	changed  chan struct{}     // closed and replaced when a meeting registers
	clients  int
	mcConns  map[string]*grpc.ClientConn
}

// New returns a development MH; ServeGRPC and ServeWebTransport start it.
func New(cfg Config) *MH {
	if cfg.ID == "" {
		cfg.ID = "devmh"
	}
	if cfg.RegisterWait <= 0 {
		cfg.RegisterWait = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &MH{cfg: cfg, log: cfg.Logger, meetings: map[string]string{}, changed: make(chan struct{}), mcConns: map[string]*grpc.ClientConn{}}
}

// Status returns a snapshot.
func (m *MH) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Status{Clients: m.clients}
	for id := range m.meetings {
		s.Meetings = append(s.Meetings, id)
	}
	sort.Strings(s.Meetings)
	return s
}

// ServeGRPC serves MediaHandlerService on lis until ctx is done.
func (m *MH) ServeGRPC(ctx context.Context, lis net.Listener) error {
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(64 << 10))
	internalpb.RegisterMediaHandlerServiceServer(srv, service{m: m})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("devmh: serving gRPC: %w", err)
	case <-ctx.Done():
	}
	srv.Stop()
	<-errc
	m.mu.Lock()
	for ep, cc := range m.mcConns {
		cc.Close()
		delete(m.mcConns, ep)
	}
	m.mu.Unlock()
	return nil
}

type service struct {
	internalpb.UnimplementedMediaHandlerServiceServer
	m *MH
}

func (s service) RegisterMeeting(ctx context.Context, req *internalpb.RegisterMeetingRequest) (*internalpb.RegisterMeetingResponse, error) {
	m := s.m
	md, _ := metadata.FromIncomingContext(ctx)
	tok, _ := strings.CutPrefix(strings.Join(md.Get("authorization"), ""), "Bearer ")
	c, err := m.cfg.Verifier.VerifyService(ctx, tok, "")
	switch {
	case err != nil:
		return nil, status.Error(codes.Unauthenticated, "invalid service token")
	case c.ServiceType != callerServiceType || !c.HasScope(callerScope):
		return nil, status.Error(codes.PermissionDenied, "a meeting-controller token with scope service.write.mh is required")
	}
	if req.GetMeetingId() == "" || req.GetMcGrpcEndpoint() == "" {
		return &internalpb.RegisterMeetingResponse{Accepted: false}, nil
	}
	m.mu.Lock()
	m.meetings[req.GetMeetingId()] = req.GetMcGrpcEndpoint()
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	tracectx.Logger(tracectx.Incoming(ctx), m.log).Info("devmh: meeting registered", "meeting_id", req.GetMeetingId(), "mc_id", req.GetMcId())
	return &internalpb.RegisterMeetingResponse{Accepted: true}, nil
}

// ServeWebTransport serves clients on pc with tlsConf until ctx is done.
func (m *MH) ServeWebTransport(ctx context.Context, pc net.PacketConn, tlsConf *tls.Config) error {
	tc := tlsConf.Clone()
	tc.MinVersion = tls.VersionTLS13
	mux := http.NewServeMux()
	srv := &wt.Server{
		H3: &http3.Server{TLSConfig: http3.ConfigureTLSConfig(tc), Handler: mux, Logger: m.log},
		// Lab clients come from the lab page's origin.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		sess, err := srv.Upgrade(w, r)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		m.serveClient(ctx, sess)
	})
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(pc) }()
	select {
	case err := <-errc:
		return fmt.Errorf("devmh: serving WebTransport: %w", err)
	case <-ctx.Done():
	}
	srv.Close()
	<-errc
	return nil
}

// maxConnectFrame bounds the client's one frame (a join token is at most
// 8 KiB).
const maxConnectFrame = 16 << 10

// serveClient reads the client's connect request, waits for its meeting to
// be registered, and reports the client to the meeting's MC for as long as
// the session lasts.
func (m *MH) serveClient(ctx context.Context, sess *wt.Session) {
	defer sess.CloseWithError(0, "")
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	str, err := sess.AcceptStream(actx)
	cancel()
	if err != nil {
		return
	}
	req, err := readConnect(str)
	if err != nil {
		sess.CloseWithError(1, "bad connect request")
		return
	}
	meetingID, sub, err := m.identify(ctx, req.GetConnectRequest().GetJoinToken())
	if err != nil {
		sess.CloseWithError(1, "invalid join token")
		return
	}
	ctx, _, _ = tracectx.Continue(ctx, req.GetTraceParent(), req.GetTraceState())
	log := tracectx.Logger(ctx, m.log).With("meeting_id", meetingID, "participant", sub)
	mc, ok := m.awaitMeeting(ctx, sess, meetingID)
	if !ok {
		log.Info("devmh: client dropped: meeting not registered in time", "wait", m.cfg.RegisterWait)
		sess.CloseWithError(2, "meeting not registered")
		return
	}
	m.count(1)
	defer m.count(-1)
	log.Info("devmh: client connected")
	m.notify(ctx, mc, meetingID, sub, true, log)
	// The client keeps its stream open; the session ends when it goes.
	_, _ = io.Copy(io.Discard, str)
	<-sess.Context().Done()
	log.Info("devmh: client disconnected")
	m.notify(context.WithoutCancel(ctx), mc, meetingID, sub, false, log)
}

func (m *MH) count(n int) { m.mu.Lock(); m.clients += n; m.mu.Unlock() }

// readConnect reads one length-prefixed MhClientMessage with a connect
// request.
func readConnect(r io.Reader) (*pb.MhClientMessage, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxConnectFrame {
		return nil, errors.New("frame too large")
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	msg := new(pb.MhClientMessage)
	if err := proto.Unmarshal(b, msg); err != nil || msg.GetConnectRequest() == nil {
		return nil, errors.New("not a connect request")
	}
	return msg, nil
}

// identify returns the meeting and subject of a join token.
func (m *MH) identify(ctx context.Context, token string) (meetingID, sub string, err error) {
	c, err := m.cfg.Verifier.VerifyJoin(ctx, token)
	if err != nil {
		return "", "", err
	}
	return c.MeetingID, c.Subject, nil
}

// awaitMeeting waits up to RegisterWait for an MC to register meetingID and
// returns that MC's endpoint.
func (m *MH) awaitMeeting(ctx context.Context, sess *wt.Session, meetingID string) (string, bool) {
	t := time.NewTimer(m.cfg.RegisterWait)
	defer t.Stop()
	for {
		m.mu.Lock()
		mc, ok := m.meetings[meetingID]
		ch := m.changed
		m.mu.Unlock()
		if ok {
			return mc, true
		}
		select {
		case <-ch:
		case <-t.C:
			return "", false
		case <-ctx.Done():
			return "", false
		case <-sess.Context().Done():
			return "", false
		}
	}
}

// notify tells the MC at endpoint that sub connected to or left this MH.
func (m *MH) notify(ctx context.Context, endpoint, meetingID, sub string, connected bool, log *slog.Logger) {
	cc, err := m.mcConn(endpoint)
	if err != nil {
		log.Warn("devmh: no client for the MC", "mc", endpoint, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if m.cfg.ServiceToken != nil {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+m.cfg.ServiceToken())
	}
	client := internalpb.NewMediaCoordinationServiceClient(cc)
	if connected {
		_, err = client.NotifyParticipantConnected(ctx, &internalpb.NotifyParticipantConnectedRequest{
			MeetingId: meetingID, ParticipantId: sub, HandlerId: m.cfg.ID})
	} else {
		_, err = client.NotifyParticipantDisconnected(ctx, &internalpb.NotifyParticipantDisconnectedRequest{
			MeetingId: meetingID, ParticipantId: sub, HandlerId: m.cfg.ID,
			Reason: internalpb.DisconnectReason_DISCONNECT_REASON_CLIENT_CLOSED})
	}
	if err != nil {
		log.Warn("devmh: notifying the MC failed", "mc", endpoint, "connected", connected, "err", err)
	}
}

func (m *MH) mcConn(endpoint string) (*grpc.ClientConn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cc := m.mcConns[endpoint]; cc != nil {
		return cc, nil
	}
	cc, err := grpc.NewClient(strings.TrimPrefix(endpoint, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(tracectx.UnaryClientInterceptor()))
	if err != nil {
		return nil, err
	}
	m.mcConns[endpoint] = cc
	return cc, nil
}
