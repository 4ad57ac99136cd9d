package webtransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	wt "github.com/quic-go/webtransport-go"

	"github.com/edgemc/edgemc/webtransport/signalingpb"
)

// Close codes the server itself uses. Handlers choose their own codes for
// Close and Drain; these are kept clear of small numbers on purpose.
const (
	CodeSlowClient        uint32 = 0x10 // the client did not keep up with its frames
	CodeFirstFrameTimeout uint32 = 0x11 // no stream or first frame within FirstFrameTimeout
	CodeServerShutdown    uint32 = 0x12 // ListenAndServe's context ended without a Drain
)

var (
	// ErrSlowClient is returned by Send and SendFrame when the client did
	// not keep up (see SendFrame); the session has been dropped.
	ErrSlowClient = errors.New("webtransport: slow client dropped")
	// ErrSessionClosed is returned once the session is closing or closed.
	ErrSessionClosed = errors.New("webtransport: session closed")
	// ErrFirstFrameTimeout is returned by Next when the client sent no frame
	// within FirstFrameTimeout; the session has been closed.
	ErrFirstFrameTimeout = errors.New("webtransport: no first frame in time")
)

// inbound is one result of the session's reader: a message or a non-fatal
// decode error.
type inbound struct {
	msg *signalingpb.ClientMessage
	err error
}

// Session is one participant's signaling session: one WebTransport session
// with its one bidirectional stream. Send, SendFrame and Close may be called
// from any goroutine; Next is meant for the session's handler.
type Session struct {
	id       uint64
	sess     *wt.Session
	conn     *quic.Conn // the session's QUIC connection; nil if unknown
	str      *wt.Stream
	log      *slog.Logger
	obs      Observer
	linger   time.Duration
	ctx      context.Context
	cancel   context.CancelFunc
	in       chan inbound
	readDone chan struct{} // closed when the reader stopped delivering; readErr is set
	readErr  error
	drained  chan struct{} // closed when the reader has stopped reading the stream
	closing  chan struct{} // closed by the first Close or drop
	done     chan struct{} // closed when the writer has finished and the session is closed

	// The outbound queue: frames wait here for the writer. An idle session
	// holds no buffer. qmu also orders the writer's per-frame write deadline
	// against the one a close sets.
	maxQueue  int           // bytes queued (frames plus frameOverhead each) at most
	slowAfter time.Duration // the longest a frame may wait to be written
	qmu       sync.Mutex
	queue     []queuedFrame
	qhead     int // queue[:qhead] is written
	qbytes    int
	wake      chan struct{} // tells the writer a frame was queued

	onDone      func() // called when the session has ended, before done closes
	onJoined    func() // tells the server the session has joined
	closeOnce   sync.Once
	closed      atomic.Bool // no more frames are accepted
	local       atomic.Bool // the server chose to close
	closeCode   uint32
	closeReason string
	flush       bool
}

func newSession(id uint64, sess *wt.Session, conn *quic.Conn, str *wt.Stream, cfg *ServerConfig, parent context.Context) *Session {
	ctx, cancel := context.WithCancel(parent)
	context.AfterFunc(sess.Context(), cancel)
	return &Session{
		id:        id,
		sess:      sess,
		conn:      conn,
		str:       str,
		log:       cfg.Logger.With("session", id, "remote", sess.RemoteAddr().String()),
		obs:       cfg.Observer,
		linger:    cfg.CloseTimeout,
		ctx:       ctx,
		cancel:    cancel,
		maxQueue:  cfg.MaxQueueBytes,
		slowAfter: cfg.SlowClientTimeout,
		wake:      make(chan struct{}, 1),
		in:        make(chan inbound),
		readDone:  make(chan struct{}),
		drained:   make(chan struct{}),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// start runs the session's reader and writer. The first frame must have been
// read by firstDeadline.
func (s *Session) start(firstDeadline time.Time) {
	go s.readLoop(firstDeadline)
	go s.writeLoop()
}

// ID is the server-unique session id.
func (s *Session) ID() uint64 { return s.id }

// RemoteAddr is the client's UDP address.
func (s *Session) RemoteAddr() net.Addr { return s.sess.RemoteAddr() }

// Context is done when the session has ended.
func (s *Session) Context() context.Context { return s.ctx }

// Next returns the next client message. A *DecodeError is returned for a
// frame whose payload does not decode; the session continues after it. The
// first frame must arrive within FirstFrameTimeout (ErrFirstFrameTimeout).
// Next returns io.EOF when the client ended the session cleanly,
// ErrFrameTooLarge after an oversized frame, ErrSessionClosed after Close.
func (s *Session) Next(ctx context.Context) (*signalingpb.ClientMessage, error) {
	select {
	case r := <-s.in:
		return r.msg, r.err
	case <-s.readDone:
		return nil, s.readErr
	case <-ctx.Done():
		if s.ctx.Err() == nil {
			return nil, ctx.Err()
		}
		// The session itself ended: say how, which the reader knows as
		// soon as its stream read fails.
		<-s.readDone
		return nil, s.readErr
	}
}

// Send encodes m and queues it. It never blocks; see SendFrame.
func (s *Session) Send(m *signalingpb.ServerMessage) error {
	f, err := EncodeServerMessage(m)
	if err != nil {
		return err
	}
	return s.SendFrame(f)
}

// SendFrame queues a pre-encoded frame without blocking. A client that
// cannot keep up is dropped (close code CodeSlowClient): one that has a
// frame waiting longer than the server's SlowClientTimeout to be written,
// or whose queue would grow past MaxQueueBytes; SendFrame then returns
// ErrSlowClient if it found the queue full, ErrSessionClosed once the
// session is closing. A burst alone, however many frames, never drops a
// client that reads them in time.
func (s *Session) SendFrame(f Frame) error {
	if s.closed.Load() {
		return ErrSessionClosed
	}
	cost := len(f) + frameOverhead
	s.qmu.Lock()
	if s.qbytes > 0 && s.qbytes+cost > s.maxQueue {
		s.qmu.Unlock()
		s.dropSlow("queue full")
		return ErrSlowClient
	}
	if len(s.queue) == cap(s.queue) && s.qhead > 0 {
		s.compact()
	}
	s.queue = append(s.queue, queuedFrame{f: f, at: time.Now()})
	s.qbytes += cost
	s.qmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// frameOverhead is what a queued frame costs beside its bytes, so that a
// flood of tiny frames is bounded too.
const frameOverhead = 64

// queuedFrame is a frame and when it was queued.
type queuedFrame struct {
	f  Frame
	at time.Time
}

// compact moves the unwritten frames to the front of the queue. qmu held.
func (s *Session) compact() {
	n := copy(s.queue, s.queue[s.qhead:])
	clear(s.queue[n:])
	s.queue, s.qhead = s.queue[:n], 0
}

// take removes the oldest queued frame. qmu held.
func (s *Session) take() (queuedFrame, bool) {
	if s.qhead == len(s.queue) {
		return queuedFrame{}, false
	}
	q := s.queue[s.qhead]
	s.queue[s.qhead] = queuedFrame{}
	s.qhead++
	s.qbytes -= len(q.f) + frameOverhead
	switch {
	case s.qhead == len(s.queue) && cap(s.queue) > 64:
		s.queue, s.qhead = nil, 0 // idle again: let a burst's buffer go
	case s.qhead == len(s.queue):
		s.queue, s.qhead = s.queue[:0], 0
	}
	return q, true
}

// next hands the writer the oldest queued frame, with a write deadline of
// its queueing time plus SlowClientTimeout. Once the session is closing it
// returns false: finish writes what is left, if anything.
func (s *Session) next() (Frame, bool) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.closed.Load() {
		return nil, false
	}
	q, ok := s.take()
	if ok {
		_ = s.str.SetWriteDeadline(q.at.Add(s.slowAfter))
	}
	return q.f, ok
}

// dropSlow drops the session as a slow client.
func (s *Session) dropSlow(why string) {
	s.qmu.Lock()
	queued := s.qbytes
	s.qmu.Unlock()
	if s.shut(CodeSlowClient, "slow client", false) {
		s.obs.SlowClientDropped()
		s.log.Warn("slow client dropped", "refused", "slow_client", "why", why, "queued_bytes", queued)
	}
}

// Joined tells the server that the session's client has proved who it is
// (it sent a valid join): from now on the session counts against the
// server's MaxSessions instead of its budget of sessions not yet joined.
// Later calls do nothing.
func (s *Session) Joined() {
	s.onJoined() // the server ignores a repeat
}

// Close flushes the frames already queued (bounded by the server's
// CloseTimeout) and then closes the session with code and reason. It returns
// at once; Context is done when the session has ended. Only the first Close
// (or drop) counts.
func (s *Session) Close(code uint32, reason string) { s.shut(code, reason, true) }

// shut starts closing the session once; it reports whether this call did.
func (s *Session) shut(code uint32, reason string, flush bool) bool {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.local.Store(true)
		s.closeCode, s.closeReason, s.flush = code, reason, flush
		// Bound a Write that is blocked on a client not reading: at once
		// when dropping, after the flush budget when closing gracefully.
		deadline := time.Now()
		if flush {
			deadline = deadline.Add(s.linger)
		}
		s.qmu.Lock()
		s.closed.Store(true) // the writer sets no deadline of its own after this
		_ = s.str.SetWriteDeadline(deadline)
		s.qmu.Unlock()
		_ = s.str.SetReadDeadline(deadline)
		close(s.closing)
	})
	return first
}

// readLoop delivers frames to Next until the stream ends, then keeps
// draining the stream so that a graceful close can see the client's FIN.
func (s *Session) readLoop(firstDeadline time.Time) {
	defer close(s.drained)
	s.readErr = s.readFrames(firstDeadline)
	if errors.Is(s.readErr, ErrFirstFrameTimeout) {
		s.shut(CodeFirstFrameTimeout, "no join request in time", false)
	}
	close(s.readDone)
	if errors.Is(s.readErr, ErrFrameTooLarge) || errors.Is(s.readErr, ErrSessionClosed) {
		_, _ = io.Copy(io.Discard, s.str)
	}
}

func (s *Session) readFrames(firstDeadline time.Time) error {
	_ = s.str.SetReadDeadline(firstDeadline)
	var buf []byte
	for first := true; ; first = false {
		b, err := ReadFrame(s.str, buf)
		if err != nil {
			return s.readError(err, first)
		}
		if first {
			_ = s.str.SetReadDeadline(time.Time{})
		}
		var r inbound
		r.msg, r.err = DecodeClientMessage(b)
		if cap(b) <= 4096 {
			buf = b // keep a small buffer; let a large one go
		} else {
			buf = nil
		}
		select {
		case s.in <- r:
		case <-s.closing:
			return s.undelivered()
		case <-s.ctx.Done():
			return s.undelivered()
		}
	}
}

// undelivered ends reading while a message waits for a Next that may never
// come. Closed by the server: ErrSessionClosed. Otherwise the stream says
// how the client's side ended.
func (s *Session) undelivered() error {
	if s.local.Load() {
		return ErrSessionClosed
	}
	for {
		if _, err := ReadFrame(s.str, nil); err != nil {
			return s.readError(err, false)
		}
	}
}

// readError maps a stream read failure to what Next reports.
func (s *Session) readError(err error, first bool) error {
	var se *wt.SessionError
	switch {
	case errors.Is(err, ErrFrameTooLarge):
		return err
	case s.local.Load():
		return ErrSessionClosed
	case errors.Is(err, io.EOF), errors.As(err, &se) && se.Remote && se.ErrorCode == 0, isCleanAppClose(err):
		// The client closed its stream, its session (code 0) or its
		// connection without an error: a clean end.
		return io.EOF
	case first && isTimeout(err):
		return ErrFirstFrameTimeout
	case s.connClosedCleanly():
		return io.EOF
	}
	return fmt.Errorf("webtransport: read: %w", err)
}

// writeLoop writes queued frames until the session closes, then finishes it.
func (s *Session) writeLoop() {
	defer close(s.done)
	defer s.onDone()
	defer s.cancel()
	for {
		if f, ok := s.next(); ok {
			_, err := s.str.Write(f)
			switch {
			case err == nil, s.closed.Load():
			case isTimeout(err):
				s.dropSlow("frame not written in time")
			default:
				s.log.Debug("write failed", "err", err)
				s.shut(0, "", false)
			}
			continue
		}
		select {
		case <-s.wake:
		case <-s.closing:
			s.finish()
			return
		case <-s.sess.Context().Done():
			s.closeOnce.Do(func() { // ended by the client or the network
				s.closed.Store(true)
				close(s.closing)
			})
			return
		}
	}
}

// finish writes what is still queued (when flushing), ends the stream, lets
// the client read it, and closes the session with the chosen code.
func (s *Session) finish() {
	if s.flush {
		for {
			s.qmu.Lock()
			q, ok := s.take()
			s.qmu.Unlock()
			if !ok {
				break
			}
			if _, err := s.str.Write(q.f); err != nil {
				break
			}
		}
		_ = s.str.Close()
		// The client answers our FIN with its own (or closes the session);
		// closing before that could discard frames it has not read yet.
		select {
		case <-s.drained:
		case <-s.sess.Context().Done():
		}
	}
	_ = s.sess.CloseWithError(wt.SessionErrorCode(s.closeCode), s.closeReason)
}

// connClosedCleanly reports whether the client closed the whole connection
// without an error. A browser closing a session often closes its connection
// right after; the stream then fails with whatever the session saw first.
func (s *Session) connClosedCleanly() bool {
	if s.conn == nil {
		return false
	}
	t := time.NewTimer(connCloseWait)
	defer t.Stop()
	select {
	case <-s.conn.Context().Done():
	case <-t.C:
		return false
	}
	return isCleanAppClose(context.Cause(s.conn.Context()))
}

// connCloseWait bounds how long a failed read waits to learn whether the
// connection is closing (it closes its streams just before its context).
const connCloseWait = 100 * time.Millisecond

func isCleanAppClose(err error) bool {
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ae.Remote &&
		(ae.ErrorCode == 0 || ae.ErrorCode == quic.ApplicationErrorCode(http3.ErrCodeNoError))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// queued is the number of frames waiting for the writer.
func (s *Session) queued() int {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return len(s.queue) - s.qhead
}
