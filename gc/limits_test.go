package gc

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
)

const assignMethod = "/dark_tower.internal.v1.MeetingControllerService/AssignMeetingWithMh"

// refusalCounts is a RefusalCounter for tests.
type refusalCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *refusalCounts) GRPCRefused(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[reason]++
}

func (r *refusalCounts) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

func limitedServer(t *testing.T, l Limits) (*serverEnv, *refusalCounts) {
	t.Helper()
	iss := devissuer.NewIssuer()
	v := auth.NewVerifier(auth.NewStaticKeys(iss.PublicKey()), auth.VerifierOptions{})
	r := &refusalCounts{}
	return startServerWith(t, ServerConfig{Verifier: v, Limits: l, Refusals: r}, iss), r
}

// waitUntil polls cond (a condition on counters another goroutine updates).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Calls without a valid token are answered as soon as their headers arrive:
// however many a connection opens, the server holds no goroutine and no
// buffer for them, and every one is counted.
func TestUnauthenticatedCallsCostNothing(t *testing.T) {
	e, refusals := limitedServer(t, Limits{})
	f, err := gctest.DialFlood(testCtx(t), e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	base := runtime.NumGoroutine()
	const calls = 5000
	peak := 0
	for range calls / 500 {
		if err := f.Open(500, assignMethod, ""); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, runtime.NumGoroutine())
	}
	waitUntil(t, "every call answered", func() bool { return f.Answered() == calls })
	if peak > base+10 {
		t.Errorf("%d goroutines during %d calls without a token, %d before", peak, calls, base)
	}
	if n := refusals.get("missing"); n != calls {
		t.Errorf("%d refusals counted, want %d", n, calls)
	}
	if f.MaxStreams() != 32 {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want the default 32", f.MaxStreams())
	}
}

// An authenticated call whose request never comes ends after
// RequestTimeout; calls past MaxStreams on one connection are reset.
func TestCallsWithoutRequestEnd(t *testing.T) {
	e, _ := limitedServer(t, Limits{MaxStreams: 4, RequestTimeout: 300 * time.Millisecond})
	f, err := gctest.DialFlood(testCtx(t), e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitUntil(t, "the server's settings", func() bool { return f.MaxStreams() == 4 })
	if err := f.Open(10, assignMethod, "Bearer "+e.gcTok); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "calls past the limit reset", func() bool { return f.Reset() >= 6 })
	waitUntil(t, "calls without a request ended", func() bool { return f.Answered() == 4 })
	// The connection serves calls again.
	if _, err := gctest.Assign(testCtx(t), e.addr, e.gcTok, assignReq("m-after")); err != nil {
		t.Fatalf("a real call after the flood: %v", err)
	}
}

// A connection that has no call in progress is closed after IdleTimeout: one
// that only ever sends calls without a token, in particular.
func TestIdleConnectionClosed(t *testing.T) {
	e, _ := limitedServer(t, Limits{IdleTimeout: 300 * time.Millisecond})
	f, err := gctest.DialFlood(testCtx(t), e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Open(3, assignMethod, "Bearer not-a-token"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("an idle connection was not closed")
	}
	if !f.GoAway() || f.Answered() != 3 {
		t.Fatalf("GOAWAY %v, %d calls answered; want GOAWAY and 3", f.GoAway(), f.Answered())
	}
}

// A client that pings more often than every 10 s is disconnected.
func TestPingFloodDisconnected(t *testing.T) {
	e, _ := limitedServer(t, Limits{})
	f, err := gctest.DialFlood(testCtx(t), e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Ping(10); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("a client flooding pings was not disconnected")
	}
	if !f.GoAway() {
		t.Fatal("no GOAWAY before the close")
	}
}
