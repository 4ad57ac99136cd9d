// Package wtbench holds the yardsticks edgemc's WebTransport benchmarks are
// measured against: a bare webtransport-go server that does the deliveries a
// signaling server does and nothing else (Bare), and a load driver that runs
// dial + one framed round trip + close against any server.
package wtbench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	wt "github.com/quic-go/webtransport-go"

	"github.com/edgemc/edgemc/webtransport"
	"github.com/edgemc/edgemc/webtransport/signalingpb"
)

// QueueDepth is the outbound queue of each of Bare's sessions, in frames
// (edgemc bounds its queues by bytes and by how long a frame waits instead).
const QueueDepth = 256

// Bare is the floor server: a bare webtransport-go server that makes the
// same deliveries as edgemc without any of its rules. It accepts a session
// and its one bidirectional stream and reads the first frame as a join: the
// session joins the group named by the request's meeting_id, gets the frame
// echoed as its answer, and every other session of the group gets one small
// frame (a fixed ParticipantJoined, encoded once at start). Every later frame
// is relayed to every other session of the group (a host-mute reaching the
// participants). Each session has an outbound queue of QueueDepth frames
// drained by its own writer goroutine, as edgemc's sessions have; a session
// whose queue is full is dropped. No tokens, store, encoding or state beyond
// the groups: its figures are what the library costs for the same work.
type Bare struct {
	pc     net.PacketConn
	srv    *wt.Server
	joined []byte // the frame the others of a group get when a session joins

	mu     sync.Mutex
	groups map[string]map[*peer]struct{}
	n      int
}

// peer is one session's outbound side.
type peer struct {
	out  chan []byte
	done chan struct{} // closed when the session ends
	str  *wt.Stream
	sess *wt.Session
	once sync.Once
}

// send queues f without blocking; a full queue drops the session.
func (p *peer) send(f []byte) {
	select {
	case p.out <- f:
	case <-p.done:
	default:
		p.drop()
	}
}

func (p *peer) drop() {
	p.once.Do(func() { _ = p.sess.CloseWithError(0x10, "slow client") })
}

// writeLoop writes queued frames until the session ends.
func (p *peer) writeLoop() {
	for {
		select {
		case f := <-p.out:
			if _, err := p.str.Write(f); err != nil {
				p.drop()
				return
			}
		case <-p.done:
			return
		}
	}
}

// NewBare listens on addr (UDP) with tlsConf's certificate and quic-go's
// default configuration.
func NewBare(addr string, tlsConf *tls.Config) (*Bare, error) {
	return NewBareWithQUIC(addr, tlsConf, nil)
}

// NewBareWithQUIC is NewBare with a QUIC configuration (nil: quic-go's
// defaults).
func NewBareWithQUIC(addr string, tlsConf *tls.Config, qconf *quic.Config) (*Bare, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	joined, err := webtransport.EncodeServerMessage(&signalingpb.ServerMessage{Message: &signalingpb.ServerMessage_ParticipantJoined{
		ParticipantJoined: &signalingpb.ParticipantJoined{Participant: &signalingpb.Participant{
			ParticipantId: "0190f5a2-7c3e-7d41-9b8a-3c1f2e4d5a6b", Name: "lg-1000", JoinedAt: uint64(time.Now().UnixMilli()),
		}},
	}})
	if err != nil {
		pc.Close()
		return nil, err
	}
	s := &Bare{pc: pc, joined: joined, groups: map[string]map[*peer]struct{}{}}
	s.srv = &wt.Server{
		H3: &http3.Server{
			TLSConfig:  http3.ConfigureTLSConfig(tlsConf),
			QUICConfig: qconf,
			Handler:    http.HandlerFunc(s.serve),
		},
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return s, nil
}

// Addr is the bound UDP address.
func (s *Bare) Addr() net.Addr { return s.pc.LocalAddr() }

// Sessions is the number of sessions past their first frame.
func (s *Bare) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Serve serves until ctx is done.
func (s *Bare) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = s.srv.Close() })
	defer stop()
	err := s.srv.Serve(s.pc)
	_ = s.pc.Close()
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, quic.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Bare) serve(w http.ResponseWriter, r *http.Request) {
	sess, err := s.srv.Upgrade(w, r)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	str, err := sess.AcceptStream(sess.Context())
	if err != nil {
		return
	}
	p := &peer{out: make(chan []byte, QueueDepth), done: make(chan struct{}), str: str, sess: sess}
	go p.writeLoop()
	defer close(p.done)
	var buf []byte
	group, joined := "", false
	for first := true; ; first = false {
		payload, err := webtransport.ReadFrame(str, buf)
		if err != nil {
			break
		}
		buf = payload
		frame := appendFrame(nil, payload)
		if first {
			m, _ := webtransport.DecodeClientMessage(payload) // a frame that is no join joins group ""
			group = m.GetJoinRequest().GetMeetingId()
			p.send(frame)
			s.join(group, p)
			joined = true
			continue
		}
		s.relay(group, p, frame)
	}
	if joined {
		s.leave(group, p)
	}
	_ = str.Close()
	<-sess.Context().Done()
}

// join adds p to its group and tells the others.
func (s *Bare) join(group string, p *peer) {
	s.mu.Lock()
	g := s.groups[group]
	if g == nil {
		g = map[*peer]struct{}{}
		s.groups[group] = g
	}
	g[p] = struct{}{}
	s.n++
	to := s.othersLocked(group, p)
	s.mu.Unlock()
	for _, q := range to {
		q.send(s.joined)
	}
}

func (s *Bare) leave(group string, p *peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[group]
	delete(g, p)
	s.n--
	if len(g) == 0 {
		delete(s.groups, group)
	}
}

// relay queues frame for every session of the group but from.
func (s *Bare) relay(group string, from *peer, frame []byte) {
	s.mu.Lock()
	to := s.othersLocked(group, from)
	s.mu.Unlock()
	for _, p := range to {
		p.send(frame)
	}
}

func (s *Bare) othersLocked(group string, p *peer) []*peer {
	g := s.groups[group]
	to := make([]*peer, 0, len(g))
	for q := range g {
		if q != p {
			to = append(to, q)
		}
	}
	return to
}

func appendFrame(dst, payload []byte) []byte {
	n := len(payload)
	return append(append(dst, byte(n>>24), byte(n>>16), byte(n>>8), byte(n)), payload...)
}

// Result summarises a load run.
type Result struct {
	Sessions int
	Elapsed  time.Duration
	P50, P99 time.Duration
}

// PerSecond is sessions completed per second.
func (r Result) PerSecond() float64 { return float64(r.Sessions) / r.Elapsed.Seconds() }

// DialEcho runs one join-like exchange: dial, send msg, read one frame back,
// close.
func DialEcho(ctx context.Context, url string, opts webtransport.DialOptions, msg *signalingpb.ClientMessage) error {
	c, err := webtransport.Dial(ctx, url, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Send(msg); err != nil {
		return err
	}
	if _, err := c.RecvFrame(ctx); err != nil {
		return fmt.Errorf("wtbench: echo: %w", err)
	}
	return nil
}

// Run performs n DialEcho exchanges with the given number of concurrent
// workers and reports throughput and latency.
func Run(ctx context.Context, n, workers int, url string, opts webtransport.DialOptions, msg *signalingpb.ClientMessage) (Result, error) {
	lat := make([]time.Duration, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		runErr  error
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for i := range next {
				t := time.Now()
				if err := DialEcho(ctx, url, opts, msg); err != nil {
					errOnce.Do(func() { runErr = err })
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	res := Result{Sessions: n, Elapsed: time.Since(start)}
	if runErr != nil {
		return res, runErr
	}
	slices.Sort(lat)
	res.P50, res.P99 = lat[n/2], lat[(n*99)/100]
	return res, nil
}
