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
	return startServerConfig(t, ServerConfig{Verifier: v, Limits: l, Refusals: r}, iss), r
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
		if err := f.Open(500, assignMethod, nil); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, runtime.NumGoroutine())
	}
	waitUntil(t, "every call answered", func() bool { return f.Answered() == calls })
	if peak > base+10 {
		t.Errorf("%d goroutines during %d calls without a token, %d before", peak, calls, base)
	}
	if n := refusals.get(auth.ReasonMissing); n != calls {
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
	if err := f.Open(10, assignMethod, map[string]string{"authorization": "Bearer " + e.gcTok}); err != nil {
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
	if err := f.Open(3, assignMethod, map[string]string{"authorization": "Bearer not-a-token"}); err != nil {
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

// A call refused with a long deadline (grpc-timeout) holds nothing once its
// request has not come within RequestTimeout: grpc-go would keep the timer
// of its deadline had the tap refused it.
func TestRefusedCallsWithLongDeadlinesHoldNothing(t *testing.T) {
	e, refusals := limitedServer(t, Limits{MaxStreams: 8, RequestTimeout: 200 * time.Millisecond})
	f, err := gctest.DialFlood(testCtx(t), e.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	base := runtime.NumGoroutine()
	const calls = 20000
	peak := 0
	for range calls / 500 {
		if err := f.Open(500, assignMethod, map[string]string{"grpc-timeout": "99999999H"}); err != nil {
			t.Fatal(err)
		}
		peak = max(peak, runtime.NumGoroutine())
	}
	waitUntil(t, "every call ended", func() bool { return f.Ended() == calls })
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d calls without a token, with a deadline of 11,000 years: %d ended with a status, %d reset; heap +%d KiB, peak %d goroutines (%d before)",
		calls, f.Answered(), f.Reset(), grew>>10, peak, base)
	if grew > 4<<20 {
		t.Errorf("the heap grew by %d KiB, bound 4 MiB", grew>>10)
	}
	if peak > base+8+10 {
		t.Errorf("peak %d goroutines, bound %d (MaxStreams and a few)", peak, base+18)
	}
	if n := refusals.get(auth.ReasonMissing); n != int(f.Answered()) {
		t.Errorf("%d refusals counted, %d calls let in", n, f.Answered())
	}
}
