package mh_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/edgemc/edgemc/gc/mh"
	"github.com/edgemc/edgemc/gc/mhtest"
	"github.com/edgemc/edgemc/gc/tracectx"
)

type staticToken string

func (s staticToken) Token(context.Context) (string, error) { return string(s), nil }

// gatedToken has no token until open is closed.
type gatedToken struct{ open chan struct{} }

func (g gatedToken) Token(context.Context) (string, error) {
	select {
	case <-g.open:
		return "late-token", nil
	default:
		return "", errors.New("no token yet")
	}
}

func (g gatedToken) Wait(ctx context.Context) error {
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type results struct {
	mu sync.Mutex
	r  []mh.Result
}

func (r *results) add(x mh.Result) { r.mu.Lock(); r.r = append(r.r, x); r.mu.Unlock() }

func (r *results) of(id string) []mh.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []mh.Result
	for _, x := range r.r {
		if x.MHID == id {
			out = append(out, x)
		}
	}
	return out
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newClient(t *testing.T, mod ...func(*mh.Config)) (*mh.Client, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	cfg := mh.Config{
		MCID: "mc-1", MCGRPCEndpoint: "http://127.0.0.1:50052", Tokens: staticToken("the-service-token"),
		ConnectTimeout: 300 * time.Millisecond,
		Delays:         []time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := mh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, logs
}

// deadEndpoint is a loopback address nothing listens on.
func deadEndpoint(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return "http://" + addr
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// One MH refuses once then accepts, another is down for good: each is
// tried on its own, up to three times, and every attempt is reported.
func TestRegisterRetriesEachHandler(t *testing.T) {
	a := mhtest.Start(t, "mh-a")
	a.Refuse(1)
	c, logs := newClient(t)
	l := c.Lease([]mh.Handler{{ID: "mh-a", GRPCEndpoint: a.Endpoint()}, {ID: "mh-b", GRPCEndpoint: deadEndpoint(t)}})
	defer l.Release()
	var got results
	ctx, tr, _ := tracectx.Continue(testCtx(t), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "")
	l.Register(ctx, "m1", got.add)

	ra := got.of("mh-a")
	if len(ra) != 2 || !errors.Is(ra[0].Err, mh.ErrRefused) || ra[0].Final || ra[1].Err != nil || !ra[1].Final {
		t.Fatalf("mh-a results %+v", ra)
	}
	rb := got.of("mh-b")
	if len(rb) != 3 || rb[2].Err == nil || !rb[2].Final || rb[1].Final {
		t.Fatalf("mh-b results %+v", rb)
	}
	calls := a.Calls()
	if len(calls) != 2 {
		t.Fatalf("mh-a saw %d calls", len(calls))
	}
	for _, call := range calls {
		if call.Req.MeetingId != "m1" || call.Req.McId != "mc-1" || call.Req.McGrpcEndpoint != "http://127.0.0.1:50052" || call.Token != "the-service-token" {
			t.Fatalf("call %+v", call)
		}
		if p, ok := tracectx.Parse(call.TraceParent, ""); !ok || p.TraceID != tr.TraceID {
			t.Fatalf("traceparent %q, want trace %s", call.TraceParent, tr.TraceIDString())
		}
	}
	// One line per failure run: mh-a's recovery, mh-b's give-up.
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "mh_id=mh-b") {
		t.Fatalf("log:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), "after retries"); n != 1 {
		t.Fatalf("log:\n%s", logs.String())
	}
}

func TestRPCTimeout(t *testing.T) {
	m := mhtest.Start(t, "mh-slow")
	m.Hang()
	defer m.Release()
	c, _ := newClient(t, func(c *mh.Config) { c.Attempts, c.RPCTimeout = 1, 100*time.Millisecond })
	l := c.Lease([]mh.Handler{{ID: "mh-slow", GRPCEndpoint: m.Endpoint()}})
	defer l.Release()
	var got results
	start := time.Now()
	l.Register(testCtx(t), "m1", got.add)
	if r := got.of("mh-slow"); len(r) != 1 || r[0].Err == nil || !strings.Contains(r[0].Err.Error(), "DeadlineExceeded") {
		t.Fatalf("results %+v", r)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s", d)
	}
}

// Meetings share one connection per MH endpoint; the last release closes it.
func TestPoolSharesConnections(t *testing.T) {
	a, b := mhtest.Start(t, "mh-a"), mhtest.Start(t, "mh-b")
	c, _ := newClient(t)
	ha, hb := mh.Handler{ID: "mh-a", GRPCEndpoint: a.Endpoint()}, mh.Handler{ID: "mh-b", GRPCEndpoint: b.Endpoint()}
	l1 := c.Lease([]mh.Handler{ha, hb})
	l2 := c.Lease([]mh.Handler{ha})
	if n := c.Conns(); n != 2 {
		t.Fatalf("%d connections for 2 endpoints", n)
	}
	ctx := testCtx(t)
	for i := range 3 {
		l1.Register(ctx, "m1", func(mh.Result) {})
		l2.Register(ctx, "m2", func(mh.Result) {})
		if n := c.Conns(); n != 2 {
			t.Fatalf("round %d: %d connections", i, n)
		}
	}
	l1.Release()
	l1.Release() // a second release changes nothing
	if n := c.Conns(); n != 1 {
		t.Fatalf("%d connections after mh-b's last user left, want 1", n)
	}
	l2.Release()
	if n := c.Conns(); n != 0 {
		t.Fatalf("%d connections after every lease was released", n)
	}
	if len(a.Calls()) != 6 || len(b.Calls()) != 3 {
		t.Fatalf("calls: mh-a %d, mh-b %d", len(a.Calls()), len(b.Calls()))
	}
}

// A registration cancelled between attempts stops at once and leaves no
// goroutine behind.
func TestCancelMidRetry(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := mhtest.Start(t, "mh-a")
	m.Refuse(-1)
	c, _ := newClient(t, func(c *mh.Config) { c.Delays = []time.Duration{time.Hour} })
	l := c.Lease([]mh.Handler{{ID: "mh-a", GRPCEndpoint: m.Endpoint()}, {ID: "mh-b", GRPCEndpoint: deadEndpoint(t)}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var got results
	go func() { l.Register(ctx, "m1", got.add); close(done) }()
	if _, err := m.WaitCalls(testCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Register did not return after its context was cancelled")
	}
	l.Release()
	c.Close()
	m.Stop()
	for _, r := range got.r {
		if r.Final {
			t.Fatalf("a cancelled registration reported a final result %+v", r)
		}
	}
}

func TestWaitsForToken(t *testing.T) {
	m := mhtest.Start(t, "mh-a")
	gate := gatedToken{open: make(chan struct{})}
	c, _ := newClient(t, func(c *mh.Config) { c.Tokens = gate })
	l := c.Lease([]mh.Handler{{ID: "mh-a", GRPCEndpoint: m.Endpoint()}})
	defer l.Release()
	done := make(chan struct{})
	go func() { l.Register(testCtx(t), "m1", func(mh.Result) {}); close(done) }()
	select {
	case <-done:
		t.Fatal("registered without a token")
	case <-time.After(50 * time.Millisecond):
	}
	close(gate.open)
	<-done
	if calls := m.Calls(); len(calls) != 1 || calls[0].Token != "late-token" || !calls[0].Accepted {
		t.Fatalf("calls %+v", calls)
	}
}

func TestBadEndpoint(t *testing.T) {
	c, _ := newClient(t, func(c *mh.Config) { c.Attempts = 1 })
	l := c.Lease([]mh.Handler{{ID: "mh-x", GRPCEndpoint: "ftp://nowhere"}})
	defer l.Release()
	var got results
	l.Register(testCtx(t), "m1", got.add)
	if r := got.of("mh-x"); len(r) != 1 || r[0].Err == nil || !r[0].Final {
		t.Fatalf("results %+v", r)
	}
	if c.Conns() != 0 {
		t.Fatal("a connection was opened for a bad endpoint")
	}
}
