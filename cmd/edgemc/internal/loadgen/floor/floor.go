// Package floor is the yardstick edgemc's signaling benchmarks are measured
// against: a bare webtransport-go server with the library's defaults that
// accepts a session and its one bidirectional stream, echoes the first frame
// (the join) and relays every later frame to every other open session (a
// host-mute reaching the participants), each write on its own goroutine.
// Nothing else: no tokens, meetings, queues or state, so its figures are what
// the library itself costs on this machine.
package floor

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	wt "github.com/quic-go/webtransport-go"

	"github.com/edgemc/edgemc/webtransport"
)

// Server is the floor server. Its sessions form one room.
type Server struct {
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

// New listens on addr (UDP) with tlsConf's certificate.
func New(addr string, tlsConf *tls.Config) (*Server, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	s := &Server{pc: pc, peers: map[*peer]struct{}{}}
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
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Sessions is the number of sessions past their first frame.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.peers)
}

// Serve serves until ctx is done.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = s.srv.Close() })
	defer stop()
	err := s.srv.Serve(s.pc)
	_ = s.pc.Close()
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, quic.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
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
func (s *Server) relay(from *peer, frame []byte) {
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
