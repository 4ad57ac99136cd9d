// Package wtbench holds the yardsticks edgemc's WebTransport benchmarks are
// measured against: a bare webtransport-go echo server (session accept, one
// bidirectional stream, framed echo, library defaults) and a load driver
// that runs dial + one framed round trip + close against any server.
package wtbench

import (
	"context"
	"crypto/tls"
	"encoding/binary"
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

// BareEcho is a bare webtransport-go server that echoes every frame of a
// session's first bidirectional stream back as it came.
type BareEcho struct {
	pc  net.PacketConn
	srv *wt.Server
}

// NewBareEcho listens on addr (UDP) with tlsConf's certificate.
func NewBareEcho(addr string, tlsConf *tls.Config) (*BareEcho, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	b := &BareEcho{pc: pc}
	b.srv = &wt.Server{
		H3: &http3.Server{
			TLSConfig: http3.ConfigureTLSConfig(tlsConf),
			Handler:   http.HandlerFunc(b.serve),
		},
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return b, nil
}

// Addr is the bound UDP address.
func (b *BareEcho) Addr() net.Addr { return b.pc.LocalAddr() }

// Serve serves until ctx is done.
func (b *BareEcho) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { _ = b.srv.Close() })
	defer stop()
	err := b.srv.Serve(b.pc)
	_ = b.pc.Close()
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) || errors.Is(err, quic.ErrServerClosed) {
		return nil
	}
	return err
}

func (b *BareEcho) serve(w http.ResponseWriter, r *http.Request) {
	sess, err := b.srv.Upgrade(w, r)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	str, err := sess.AcceptStream(sess.Context())
	if err != nil {
		return
	}
	var in, out []byte
	for {
		payload, err := webtransport.ReadFrame(str, in)
		if err != nil {
			break
		}
		in = payload
		out = append(binary.BigEndian.AppendUint32(out[:0], uint32(len(payload))), payload...)
		if _, err := str.Write(out); err != nil {
			break
		}
	}
	_ = str.Close()
	<-sess.Context().Done()
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
