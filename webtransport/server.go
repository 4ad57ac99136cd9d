package webtransport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	wt "github.com/quic-go/webtransport-go"
	"golang.org/x/sync/errgroup"

	"github.com/edgemc/edgemc/webtransport/netlimit"
)

// Handler serves one session. ctx ends when the session or the server ends.
// When ServeSession returns, the session is closed (code 0) if it is still
// open.
type Handler interface {
	ServeSession(ctx context.Context, s *Session)
}

// Observer is told about admissions and drops (metrics). A nil Observer is
// allowed. Its methods must not block.
type Observer interface {
	SessionAccepted()
	// SessionRefused reports a session refused by admission:
	// RefusedDraining or RefusedMaxSessions.
	SessionRefused(reason string)
	// SessionFailed reports a session that failed before it was accepted:
	// RefusedUpgrade or RefusedNoStream.
	SessionFailed(reason string)
	SlowClientDropped()
}

// Reasons passed to Observer.SessionRefused and Observer.SessionFailed.
const (
	RefusedDraining          = "draining"
	RefusedMaxSessions       = "max_sessions"
	RefusedMaxPending        = "max_pending"             // MaxPending sessions have not joined yet
	RefusedPendingPerAddress = "max_pending_per_address" // MaxPendingPerAddress of them from the client's address
	RefusedUpgrade           = "upgrade"                 // not a valid WebTransport CONNECT
	RefusedNoStream          = "no_stream"               // no bidirectional stream within FirstFrameTimeout
)

// ServerConfig configures a Server. Zero values take the documented defaults.
//
// A session is pending from its CONNECT until its handler calls
// Session.Joined (the client has proved who it is); pending sessions have
// their own budget, so that sessions that never join cannot lock out real
// clients. A new session is refused (HTTP 503, at once) when MaxSessions
// sessions have joined, when MaxPending sessions are pending, or when
// MaxPendingPerAddress of them come from the client's address (IPv4) or /64
// (IPv6). Sessions pending when the MaxSessions-th joins may still join, so
// joined sessions can exceed MaxSessions by up to MaxPending: the handler
// bounds what a joined session may hold (edgemc's participant limit).
type ServerConfig struct {
	Addr                 string        // UDP listen address, e.g. ":4433" or "127.0.0.1:0"
	TLSConfig            *tls.Config   // must provide certificates (GetCertificate is fine)
	FirstFrameTimeout    time.Duration // default 10s: stream opened and first frame read within it
	MaxSessions          int           // joined sessions; 0 = unlimited
	MaxPending           int           // sessions not joined yet, default 256
	MaxPendingPerAddress int           // of those, from one address or IPv6 /64; default 16
	Logger               *slog.Logger  // nil discards the server's log
	Observer             Observer

	// SlowClientTimeout is the longest a frame may wait to be written to
	// its client: a client that falls further behind is dropped as slow
	// (CodeSlowClient). Default 10s.
	SlowClientTimeout time.Duration
	// MaxQueueBytes bounds the frames queued for one session (each counted
	// with 64 bytes of overhead); a client whose queue would grow past it
	// is dropped as slow. Default 1 MiB.
	MaxQueueBytes int

	// CloseTimeout bounds a graceful Close: flushing queued frames and
	// waiting for the client to read them. Default 2s.
	CloseTimeout time.Duration
	// IdleTimeout closes a QUIC connection that has been silent this long
	// (a client lost without a close). Default 30s.
	IdleTimeout time.Duration
	// RetryAbove is how many unfinished QUIC handshakes make the server ask
	// new clients to prove their address with a Retry first. Default 128.
	RetryAbove int
	// CheckOrigin vets the Origin of a browser's CONNECT request. Default:
	// any origin, since clients are authenticated by their join token and
	// the meeting web app is not served from the MC's origin.
	CheckOrigin func(*http.Request) bool
	// StatelessResetKey, when set, lets the server answer a packet of a
	// connection it does not know with a stateless reset (RFC 9000, 10.3).
	// A key kept across restarts tells clients of the server's previous
	// process, crashed or killed, at their next packet that their
	// connection is gone, instead of at their idle timeout.
	StatelessResetKey *[32]byte
}

func (c *ServerConfig) setDefaults() {
	if c.MaxPending <= 0 {
		c.MaxPending = 256
	}
	if c.MaxPendingPerAddress <= 0 {
		c.MaxPendingPerAddress = 16
	}
	if c.SlowClientTimeout <= 0 {
		c.SlowClientTimeout = 10 * time.Second
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 1 << 20
	}
	if c.FirstFrameTimeout <= 0 {
		c.FirstFrameTimeout = 10 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 2 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.RetryAbove <= 0 {
		c.RetryAbove = 128
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.CheckOrigin == nil {
		c.CheckOrigin = func(*http.Request) bool { return true }
	}
}

type nopObserver struct{}

func (nopObserver) SessionAccepted()      {}
func (nopObserver) SessionRefused(string) {}
func (nopObserver) SessionFailed(string)  {}
func (nopObserver) SlowClientDropped()    {}

// SignalingQUICConfig is the QUIC configuration for signaling connections:
// one small stream each way, so flow-control windows far below quic-go's
// defaults (512 KiB initial, up to 6/15 MiB), yet a whole maximum-size frame
// fits in the initial stream window.
func SignalingQUICConfig(idle time.Duration) *quic.Config {
	return &quic.Config{
		MaxIdleTimeout:                   idle,
		KeepAlivePeriod:                  idle / 2, // a silent browser stays connected; a lost one is noticed
		InitialStreamReceiveWindow:       80 << 10,
		MaxStreamReceiveWindow:           256 << 10,
		InitialConnectionReceiveWindow:   128 << 10,
		MaxConnectionReceiveWindow:       512 << 10,
		MaxIncomingStreams:               8, // CONNECT + the signaling stream, with slack
		MaxIncomingUniStreams:            8, // HTTP/3 control + QPACK, with slack
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true,
		// Signaling frames are small, so packets larger than quic-go's
		// initial 1,280 bytes would not pay for the search: path MTU
		// discovery sends 5 to 10 probes of up to 1,452 bytes per connection,
		// one with each of the first keep-alives of an idle session.
		DisablePathMTUDiscovery: true,
	}
}

// Server is edgemc's WebTransport endpoint. Sessions are accepted on any
// path.
type Server struct {
	cfg     ServerConfig
	h       Handler
	log     *slog.Logger
	obs     Observer
	ready   chan struct{}
	addr    net.Addr   // set before ready is closed
	wts     *wt.Server // set before ready is closed
	nextID  atomic.Uint64
	started atomic.Bool
	// handshaking counts QUIC connections accepted whose handshake has not
	// completed yet.
	handshaking atomic.Int64

	mu          sync.Mutex
	base        context.Context // parent of every session's context
	sessions    map[uint64]*Session
	joined      int              // admitted sessions that have joined
	pending     netlimit.Counter // admitted sessions that have not
	draining    bool
	drainCode   uint32
	drainReason string
	stopped     bool
	handlers    sync.WaitGroup
}

// NewServer checks cfg and returns a Server that serves sessions with h.
func NewServer(cfg ServerConfig, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("webtransport: nil handler")
	}
	if cfg.TLSConfig == nil || (len(cfg.TLSConfig.Certificates) == 0 && cfg.TLSConfig.GetCertificate == nil && cfg.TLSConfig.GetConfigForClient == nil) {
		return nil, errors.New("webtransport: TLSConfig must provide a certificate")
	}
	cfg.setDefaults()
	return &Server{
		cfg:      cfg,
		h:        h,
		log:      cfg.Logger,
		obs:      cfg.Observer,
		ready:    make(chan struct{}),
		sessions: make(map[uint64]*Session),
		pending:  netlimit.Counter{Max: cfg.MaxPending, PerAddress: cfg.MaxPendingPerAddress},
	}, nil
}

// Ready is closed once the server is listening.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound UDP address; valid once Ready is closed.
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.addr
}

// SessionCount is the number of open sessions.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// MaxQueued is the number of frames queued in the fullest outbound queue of
// the open sessions.
func (s *Server) MaxQueued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ss := range s.sessions {
		n = max(n, ss.queued())
	}
	return n
}

// ListenAndServe listens on cfg.Addr and serves until ctx is done. Then it
// closes every open session (CodeServerShutdown unless Drain came first),
// the QUIC connections and the socket, and waits for all handlers to return.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("webtransport: ListenAndServe called twice")
	}
	udpAddr, err := net.ResolveUDPAddr("udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("webtransport: listen %q: %w", s.cfg.Addr, err)
	}
	pc, err := net.ListenUDP("udp", udpAddr)
	if err != nil {
		return fmt.Errorf("webtransport: listen %q: %w", s.cfg.Addr, err)
	}
	defer pc.Close()

	tlsConf := s.cfg.TLSConfig.Clone()
	tlsConf.MinVersion = tls.VersionTLS13
	h3 := &http3.Server{
		TLSConfig:  http3.ConfigureTLSConfig(tlsConf),
		QUICConfig: SignalingQUICConfig(s.cfg.IdleTimeout),
		Handler:    http.HandlerFunc(s.serveHTTP),
		// A connection with no request open (no session: never one, or
		// refused) is closed after FirstFrameTimeout, however alive its
		// QUIC layer is kept.
		IdleTimeout: s.cfg.FirstFrameTimeout,
		Logger:      s.log,
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			return context.WithValue(ctx, quicConnKey{}, c)
		},
	}
	srv := &wt.Server{H3: h3, CheckOrigin: s.cfg.CheckOrigin}
	s.wts = srv

	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	s.mu.Lock()
	s.base = base
	s.mu.Unlock()
	s.addr = pc.LocalAddr()
	close(s.ready)
	s.log.Info("webtransport listening", "addr", s.addr.String())

	// edgemc runs the QUIC listener itself so that it can answer with a
	// Retry (proof of the source address, no state kept) while many
	// handshakes are unfinished: a flood of half-open handshakes then costs
	// one packet each instead of a connection's memory.
	tr := &quic.Transport{Conn: pc, VerifySourceAddress: func(net.Addr) bool {
		return s.handshaking.Load() >= int64(s.cfg.RetryAbove)
	}}
	if k := s.cfg.StatelessResetKey; k != nil {
		tr.StatelessResetKey = (*quic.StatelessResetKey)(k)
	}
	defer tr.Close()
	ln, err := tr.ListenEarly(h3.TLSConfig, h3.QUICConfig)
	if err != nil {
		return fmt.Errorf("webtransport: listen %q: %w", s.cfg.Addr, err)
	}
	defer ln.Close()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for {
			conn, err := ln.Accept(gctx)
			if err != nil {
				if gctx.Err() != nil || errors.Is(err, quic.ErrServerClosed) {
					return nil
				}
				return fmt.Errorf("webtransport: accept: %w", err)
			}
			s.handshaking.Add(1)
			go func() {
				select {
				case <-conn.HandshakeComplete():
				case <-conn.Context().Done():
				}
				s.handshaking.Add(-1)
			}()
			go func() {
				if err := srv.ServeQUICConn(conn); err != nil && !errors.Is(err, http.ErrServerClosed) {
					s.log.Debug("serving QUIC connection", "err", err)
				}
			}()
		}
	})
	g.Go(func() error {
		<-gctx.Done()
		s.Drain(CodeServerShutdown, "server shutting down")
		s.mu.Lock()
		s.stopped = true
		s.mu.Unlock()
		// Handlers end with their sessions; each waits (CloseTimeout at
		// most) for its client to close the connection, so that the close
		// codes arrive before srv.Close cuts every connection.
		cancelBase()
		s.handlers.Wait()
		err := srv.Close()
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Debug("closing http3 server", "err", err)
		}
		return nil
	})
	return g.Wait()
}

// Drain stops admitting sessions and closes every open one with code and
// reason, flushing what is queued. It returns when they have all ended
// (bounded by CloseTimeout). Later Drains are no-ops.
func (s *Server) Drain(code uint32, reason string) {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		return
	}
	s.draining, s.drainCode, s.drainReason = true, code, reason
	open := make([]*Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		open = append(open, ss)
	}
	s.mu.Unlock()
	s.log.Info("draining webtransport sessions", "sessions", len(open), "code", code)
	for _, ss := range open {
		ss.Close(code, reason)
	}
	for _, ss := range open {
		<-ss.done
	}
}

type quicConnKey struct{}

// admission is one admitted session's place in the server's counts.
type admission struct {
	from   netip.Prefix // the client's address (see netlimit.Key)
	joined bool
}

// admit reserves room for a new pending session from the client at remote,
// or says why not.
func (s *Server) admit(remote string) (*admission, string) {
	from := netlimit.Key(remote)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.draining || s.stopped:
		return nil, RefusedDraining
	case s.cfg.MaxSessions > 0 && s.joined >= s.cfg.MaxSessions:
		return nil, RefusedMaxSessions
	}
	switch s.pending.Take(from) {
	case netlimit.Total:
		return nil, RefusedMaxPending
	case netlimit.PerAddress:
		return nil, RefusedPendingPerAddress
	}
	s.handlers.Add(1)
	return &admission{from: from}, ""
}

// join moves an admitted session from the pending counts to the joined.
func (s *Server) join(a *admission) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !a.joined {
		a.joined = true
		s.pending.Release(a.from)
		s.joined++
	}
}

// register turns a reservation into an open session. During a drain the
// session is closed straight away with the drain's code and reason.
func (s *Server) register(ss *Session, a *admission) {
	ss.onDone = func() {
		s.mu.Lock()
		delete(s.sessions, ss.id)
		s.mu.Unlock()
	}
	ss.onJoined = func() { s.join(a) }
	s.mu.Lock()
	s.sessions[ss.id] = ss
	draining, code, reason := s.draining, s.drainCode, s.drainReason
	s.mu.Unlock()
	if draining {
		ss.Close(code, reason)
	}
}

// release ends a handler and frees its session's place.
func (s *Server) release(a *admission) {
	s.mu.Lock()
	if a.joined {
		s.joined--
	} else {
		s.pending.Release(a.from)
	}
	s.mu.Unlock()
	s.handlers.Done()
}

func (s *Server) refuse(w http.ResponseWriter, reason string, status int) {
	s.log.Debug("session refused", "refused", reason)
	w.WriteHeader(status)
}

// serveHTTP runs one session from CONNECT to close.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	adm, reason := s.admit(r.RemoteAddr)
	if reason != "" {
		s.obs.SessionRefused(reason)
		s.refuse(w, reason, http.StatusServiceUnavailable)
		return
	}
	defer s.release(adm)
	deadline := time.Now().Add(s.cfg.FirstFrameTimeout)
	sess, err := s.wts.Upgrade(w, r)
	if err != nil {
		s.log.Debug("upgrade failed", "refused", RefusedUpgrade, "err", err)
		s.obs.SessionFailed(RefusedUpgrade)
		s.refuse(w, RefusedUpgrade, http.StatusBadRequest)
		return
	}
	conn, _ := r.Context().Value(quicConnKey{}).(*quic.Conn)
	localClose := true
	defer func() { s.closeConn(conn, localClose) }()
	actx, cancel := context.WithDeadline(s.base, deadline)
	str, err := sess.AcceptStream(actx)
	cancel()
	if err != nil {
		s.obs.SessionFailed(RefusedNoStream)
		s.log.Debug("no stream opened in time", "refused", RefusedNoStream, "remote", sess.RemoteAddr().String())
		_ = sess.CloseWithError(wt.SessionErrorCode(CodeFirstFrameTimeout), "no stream opened in time")
		return
	}
	ss := newSession(s.nextID.Add(1), sess, conn, str, &s.cfg, s.base)
	s.register(ss, adm)
	s.obs.SessionAccepted()
	ss.start(deadline)
	s.h.ServeSession(ss.ctx, ss)
	ss.Close(0, "")
	<-ss.done
	localClose = ss.local.Load()
}

// closeConn closes the QUIC connection of a finished session, so that
// abandoned connections do not linger until their idle timeout. When the
// server closed the session, the client first gets CloseTimeout to close the
// connection itself: closing it at once could overtake the session's close
// code on its way to the client.
func (s *Server) closeConn(c *quic.Conn, localClose bool) {
	if c == nil {
		return
	}
	if !localClose {
		_ = c.CloseWithError(0, "")
		return
	}
	t := time.NewTimer(s.cfg.CloseTimeout)
	defer t.Stop()
	select {
	case <-c.Context().Done():
	case <-t.C:
		_ = c.CloseWithError(0, "")
	}
}
