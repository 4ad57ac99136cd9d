// Package wtbench holds the yardsticks edgemc's WebTransport benchmarks are
// measured against: a bare webtransport-go server (session accept, one
// bidirectional stream, framed echo of the join, relay of later frames,
// library defaults) and a load driver that runs dial + one framed round trip
// + close against any server.
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

// Bare is the floor server: a bare webtransport-go server with the
// library's defaults that accepts a session and its one bidirectional
// stream, echoes the first frame (the join) and relays every later frame to
// every other open session (a host-mute reaching the participants), each
// write on its own goroutine. No tokens, meetings, queues or state: its
// figures are what the library itself costs. Its sessions form one room.
type Bare struct {
	pc  net.PacketConn
	srv *wt.Server

	mu    sync.Mutex
	peers map[*peer]struct{}
}

// peer is one session's stream; mu serialises relayed writes.
type peer struct {
	mu  sync.Mutex
	str *wt.Stream
}

func (p *peer) write(b []byte) {
	p.mu.Lock()
	_, _ = p.str.Write(b)
	p.mu.Unlock()
}

// NewBare listens on addr (UDP) with tlsConf's certificate.
func NewBare(addr string, tlsConf *tls.Config) (*Bare, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	s := &Bare{pc: pc, peers: map[*peer]struct{}{}}
	s.srv = &wt.Server{
		H3: &http3.Server{
			TLSConfig: http3.ConfigureTLSConfig(tlsConf),
			Handler:   http.HandlerFunc(s.serve),
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
	return len(s.peers)
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
	p := &peer{str: str}
	var buf, out []byte
	for first := true; ; first = false {
		payload, err := webtransport.ReadFrame(str, buf)
		if err != nil {
			break
		}
		buf = payload
		out = appendFrame(out[:0], payload)
		if first {
			if _, err := str.Write(out); err != nil {
				break
			}
			s.mu.Lock()
			s.peers[p] = struct{}{}
			s.mu.Unlock()
			continue
		}
		s.relay(p, append([]byte(nil), out...))
	}
	s.mu.Lock()
	delete(s.peers, p)
	s.mu.Unlock()
	_ = str.Close()
	<-sess.Context().Done()
}

// relay writes frame to every session but from, in parallel.
func (s *Bare) relay(from *peer, frame []byte) {
	s.mu.Lock()
	to := make([]*peer, 0, len(s.peers))
	for p := range s.peers {
		if p != from {
			to = append(to, p)
		}
	}
	s.mu.Unlock()
	for _, p := range to {
		go p.write(frame)
	}
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
