package webtransport_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
	"github.com/edgemc/edgemc/webtransport/wtbench"
)

// benchJoin is a join-like request of about 200 bytes.
func benchJoin() *pb.ClientMessage {
	m := joinRequest("0190f5a2-7c3e-7d41-9b8a-3c1f2e4d5a6b")
	m.GetJoinRequest().JoinToken = strings.Repeat("t", 150)
	return m
}

func benchJoinResponse() *pb.ServerMessage {
	return &pb.ServerMessage{Message: &pb.ServerMessage_JoinResponse{JoinResponse: &pb.JoinResponse{
		ParticipantId: "0190f5a2-7c3e-7d41-9b8a-3c1f2e4d5a6b",
		UserId:        42,
		CorrelationId: "0190f5a2-7c3e-7d41-9b8a-3c1f2e4d5a6c",
		BindingToken:  strings.Repeat("b", 96),
	}}}
}

func BenchmarkAppendFrame(b *testing.B) {
	m := benchJoinResponse()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = webtransport.AppendFrame(buf[:0], m); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkReadFrameDecode(b *testing.B) {
	f, err := webtransport.AppendFrame(nil, benchJoin())
	if err != nil {
		b.Fatal(err)
	}
	r := bytes.NewReader(f)
	var buf []byte
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(f)
		p, err := webtransport.ReadFrame(r, buf)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := webtransport.DecodeClientMessage(p); err != nil {
			b.Fatal(err)
		}
		buf = p
	}
}

// joinEcho is the edgemc side of the dial+join benchmark: decode the
// request, answer with an encoded JoinResponse, wait for the client to leave.
type joinEcho struct{}

func (joinEcho) ServeSession(ctx context.Context, s *webtransport.Session) {
	for {
		if _, err := s.Next(ctx); err != nil {
			return
		}
		s.Joined() // leaves the budget of unjoined sessions, as a join does
		if err := s.Send(benchJoinResponse()); err != nil {
			return
		}
	}
}

// benchTarget is a server under benchmark: edgemc's or the bare echo.
type benchTarget struct {
	url  string
	opts webtransport.DialOptions
}

func startBareEcho(b *testing.B) benchTarget { return startBareEchoT(b) }

func startBareEchoT(b testing.TB) benchTarget {
	ci, err := webtransport.LoadOrCreateSelfSigned(b.TempDir(), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	srv, err := wtbench.NewBare("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ci.Certificate}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	return benchTarget{
		url:  fmt.Sprintf("https://%s/", srv.Addr()),
		opts: webtransport.DialOptions{CertHashes: [][32]byte{ci.SHA256}, Timeout: 10 * time.Second},
	}
}

func startEdgemc(b *testing.B, h webtransport.Handler) (benchTarget, *webtransport.Server) {
	ts := startServer(b, webtransport.ServerConfig{}, h)
	return benchTarget{url: ts.url, opts: ts.opts}, ts.srv
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDialJoinEcho is dial + one bidirectional stream + a ~200 B
// join-like exchange + close, against the bare webtransport-go echo (the
// floor) and edgemc's server, and against edgemc's server with clients that
// resume their TLS session (edgemc-resumed). CPU is the whole process:
// client and server.
func BenchmarkDialJoinEcho(b *testing.B) {
	for _, kind := range []string{"bare", "edgemc", "edgemc-resumed"} {
		for _, workers := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/workers=%d", kind, workers), func(b *testing.B) {
				var tgt benchTarget
				if kind == "bare" {
					tgt = startBareEcho(b)
				} else {
					tgt, _ = startEdgemc(b, joinEcho{})
				}
				if kind == "edgemc-resumed" {
					tgt.opts.SessionCache = tls.NewLRUClientSessionCache(64)
					if err := wtbench.DialEcho(context.Background(), tgt.url, tgt.opts, benchJoin()); err != nil {
						b.Fatal(err)
					}
				}
				msg := benchJoin()
				cpu0 := cpuTime()
				b.ResetTimer()
				res, err := wtbench.Run(context.Background(), b.N, workers, tgt.url, tgt.opts, msg)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.PerSecond(), "sessions/s")
				b.ReportMetric(float64(res.P99.Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/session")
			})
		}
	}
}

// BenchmarkFanout delivers one encoded frame to every session of a meeting
// (queued once per session, written by each session's own writer) and
// measures until the last client has read it.
func BenchmarkFanout(b *testing.B) {
	sizes := []int{100, 1000}
	if testing.Short() {
		sizes = []int{10, 100}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("sessions=%d", n), func(b *testing.B) {
			h := newEchoHandler()
			h.sessions, h.ended = make(chan *webtransport.Session, n), make(chan error, n)
			ts := startServer(b, webtransport.ServerConfig{}, h)
			sessions := make([]*webtransport.Session, 0, n)
			got := make(chan struct{}, n)
			for range n {
				c, err := webtransport.Dial(context.Background(), ts.url, ts.opts)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = c.Abort() })
				if err := c.Send(joinRequest("m")); err != nil {
					b.Fatal(err)
				}
				if _, err := c.RecvFrame(context.Background()); err != nil {
					b.Fatal(err)
				}
				sessions = append(sessions, <-h.sessions)
				go func() {
					for {
						if _, err := c.RecvFrame(context.Background()); err != nil {
							return
						}
						got <- struct{}{}
					}
				}()
			}
			mute := &pb.ServerMessage{Message: &pb.ServerMessage_ParticipantMuteUpdate{ParticipantMuteUpdate: &pb.ParticipantMuteUpdate{
				ParticipantId: "0190f5a2-7c3e-7d41-9b8a-3c1f2e4d5a6b", AudioHostMuted: true, HostMutedBy: "host",
			}}}
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				f, err := webtransport.EncodeServerMessage(mute)
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range sessions {
					if err := s.SendFrame(f); err != nil {
						b.Fatal(err)
					}
				}
				for range n {
					<-got
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkIdleSessions holds idle joined sessions open and reports the
// process's heap and stack per session (client and server both in-process:
// compare bare and edgemc, whose clients are identical).
func BenchmarkIdleSessions(b *testing.B) {
	n := 300
	if testing.Short() {
		n = 20
	}
	for _, kind := range []string{"bare", "edgemc"} {
		b.Run(kind, func(b *testing.B) {
			for b.Loop() {
				var tgt benchTarget
				if kind == "bare" {
					tgt = startBareEcho(b)
				} else {
					tgt, _ = startEdgemc(b, joinEcho{})
				}
				before := memInUse()
				conns := make([]*webtransport.ClientConn, 0, n)
				for range n {
					c, err := webtransport.Dial(context.Background(), tgt.url, tgt.opts)
					if err != nil {
						b.Fatal(err)
					}
					if err := c.Send(benchJoin()); err != nil {
						b.Fatal(err)
					}
					if _, err := c.RecvFrame(context.Background()); err != nil {
						b.Fatal(err)
					}
					conns = append(conns, c)
				}
				b.ReportMetric(float64(memInUse()-before)/float64(n)/1024, "KiB/session")
				var wg sync.WaitGroup
				for _, c := range conns {
					wg.Go(func() {
						if err := c.Close(); err != nil && !errors.Is(err, context.Canceled) {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
		})
	}
}

func memInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}
