package gc

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/gctest"
	"github.com/edgemc/edgemc/gc/internal/retry"
	"github.com/edgemc/edgemc/gc/internalpb"
)

type fixedLoad struct {
	mu sync.Mutex
	l  Load
}

func (f *fixedLoad) Load() Load { f.mu.Lock(); defer f.mu.Unlock(); return f.l }
func (f *fixedLoad) set(l Load) { f.mu.Lock(); f.l = l; f.mu.Unlock() }

type fixedSampler struct{ cpu, mem float64 }

func (s fixedSampler) Sample(context.Context) (float64, float64, error) { return s.cpu, s.mem, nil }

// events is an Observer that forwards events on a channel (dropping them
// when nobody reads, as an Observer must never block the link).
type events chan string

func (e events) Heartbeat(kind, outcome string, _ time.Duration) { e.send(kind + ":" + outcome) }
func (e events) Registration(outcome string)                     { e.send("register:" + outcome) }

func (e events) send(s string) {
	select {
	case e <- s:
	default:
	}
}

// await reads events until want is seen.
func (e events) await(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	for {
		select {
		case got := <-e:
			if got == want {
				return
			}
		case <-ctx.Done():
			t.Fatalf("event %q never came", want)
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var defaultLoad = Load{MaxMeetings: 50, CurrentMeetings: 3, MaxParticipants: 500, CurrentParticipants: 42, Health: internalpb.HealthStatus_HEALTHY}

// fastConfig has short intervals so that tests never wait on production timers.
func fastConfig(target string) LinkConfig {
	return LinkConfig{
		Target: target, ID: "mc-test", Region: "eu-test",
		GRPCEndpoint: "http://127.0.0.1:1", WebTransportEndpoint: "https://127.0.0.1:2",
		MaxMeetings: 50, MaxParticipants: 500,
		BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		FastInterval: 20 * time.Millisecond, ComprehensiveInterval: 40 * time.Millisecond, MinInterval: 10 * time.Millisecond,
		RPCTimeout: 2 * time.Second, ConnectTimeout: time.Second,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// startLink runs a link until the test ends; it fails the test if Run does
// not return nil promptly once its context is cancelled.
func startLink(t *testing.T, cfg LinkConfig, load LoadReporter, sys SystemSampler) (*Link, context.CancelFunc) {
	t.Helper()
	l, err := NewLink(cfg, load, sys)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	}
	t.Cleanup(func() { stop(); l.Close() })
	return l, cancel
}

// TestRegistrationBackoffSequence drives the real retry loop against a GC
// that rejects, with production backoff settings, the sleeps recorded
// instead of taken and the jitter pinned to its top (the ceiling).
func TestRegistrationBackoffSequence(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	gc.Reject("region full")
	var logs bytes.Buffer
	cfg := fastConfig(gc.Target())
	cfg.BackoffBase, cfg.BackoffMax = 0, 0 // defaults: 1 s doubling to 30 s
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	ev := make(events, 100)
	cfg.Observer = ev
	l, err := NewLink(cfg, &fixedLoad{l: defaultLoad}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.randN = func(n int64) int64 { return n - 1 }

	runCtx, cancel := context.WithCancel(ctx)
	var delays []time.Duration
	l.wait = func(ctx context.Context, d time.Duration) error {
		delays = append(delays, d)
		if st := l.Status(); st.Registered || st.ConsecutiveFailures != len(delays) || st.NextRetry.IsZero() ||
			!strings.Contains(st.LastError, "region full") {
			t.Errorf("status during backoff: %+v", st)
		}
		if len(delays) == 8 {
			cancel()
		}
		return ctx.Err()
	}
	if err := l.Run(runCtx); err != nil {
		t.Fatalf("Run = %v", err)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(delays, want) {
		t.Fatalf("delays = %v, want %v", delays, want)
	}
	regs := gc.Registrations()
	if len(regs) != 8 {
		t.Fatalf("%d registration attempts, want 8", len(regs))
	}
	r := regs[0].Req
	if r.GetId() != "mc-test" || r.GetRegion() != "eu-test" || r.GetGrpcEndpoint() != cfg.GRPCEndpoint ||
		r.GetWebtransportEndpoint() != cfg.WebTransportEndpoint || r.GetMaxMeetings() != 50 || r.GetMaxParticipants() != 500 {
		t.Fatalf("registration = %v", r)
	}
	if len(ev) != 8 || <-ev != "register:rejected" {
		t.Fatalf("observer saw %d events", len(ev))
	}
	if !strings.Contains(logs.String(), "REJECTED") || !strings.Contains(logs.String(), "region full") {
		t.Fatalf("rejection not logged clearly:\n%s", logs.String())
	}
}

func TestRetriesThroughOutage(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	gc.Stop() // connection refused
	cfg := fastConfig(gc.Target())
	ev := make(events, 1000)
	cfg.Observer = ev
	l, _ := startLink(t, cfg, &fixedLoad{l: defaultLoad}, nil)
	for range 3 {
		ev.await(t, ctx, "register:error")
	}
	downSince := l.Status().DownSince
	// Answering, but UNAVAILABLE; set before the GC serves again, so that no
	// registration can be accepted in between.
	gc.Unavailable()
	gc.Restart()
	if _, err := gc.WaitRegistrations(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if st := l.Status(); st.Registered || st.ConsecutiveFailures < 4 || st.DownSince.IsZero() || !st.DownSince.Equal(downSince) ||
		!st.LastRegistered.IsZero() {
		t.Fatalf("status during outage: %+v (down since %v)", st, downSince)
	}
	gc.Accept(0, 0)
	if _, err := gc.WaitFast(ctx, len(gc.Fast())+1); err != nil {
		t.Fatal(err)
	}
	ev.await(t, ctx, "register:accepted")
	ev.await(t, ctx, "fast:ok")
	if st := l.Status(); !st.Registered || st.ConsecutiveFailures != 0 || st.LastError != "" || st.LastRegistered.IsZero() ||
		!st.DownSince.IsZero() {
		t.Fatalf("status after recovery: %+v", st)
	}
}

func TestIntervalsFromResponse(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	gc.Accept(15*time.Millisecond, 45*time.Millisecond)
	cfg := fastConfig(gc.Target())
	cfg.FastInterval, cfg.ComprehensiveInterval = time.Hour, time.Hour // must not be used
	l, _ := startLink(t, cfg, &fixedLoad{l: defaultLoad}, nil)
	if _, err := gc.WaitFast(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.WaitComprehensive(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if st := l.Status(); st.FastInterval != 15*time.Millisecond || st.ComprehensiveInterval != 45*time.Millisecond {
		t.Fatalf("intervals = %v / %v", st.FastInterval, st.ComprehensiveInterval)
	}
}

func TestDefaultIntervalsWhenResponseSaysZero(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	gc.Accept(0, 0)
	cfg := fastConfig(gc.Target())
	l, _ := startLink(t, cfg, &fixedLoad{l: defaultLoad}, nil)
	if _, err := gc.WaitFast(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.WaitComprehensive(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if st := l.Status(); st.FastInterval != cfg.FastInterval || st.ComprehensiveInterval != cfg.ComprehensiveInterval {
		t.Fatalf("intervals = %v / %v", st.FastInterval, st.ComprehensiveInterval)
	}
	// The interval paces the heartbeats: after the first, sent at once, the
	// i-th waits for the i-th tick of a ticker started after the GC
	// accepted the registration. A stall may delay ticks or drop them, and
	// so bunch heartbeats together, but never make one early.
	registered := gc.Registrations()[0].At
	for i, f := range gc.Fast() {
		if early := registered.Add(time.Duration(i) * cfg.FastInterval); f.At.Before(early) {
			t.Fatalf("fast heartbeat %d came %v after the registration, before %d intervals of %v", i, f.At.Sub(registered), i, cfg.FastInterval)
		}
	}
}

// TestShortIntervalsFromGCAreRaised: a GC asking for heartbeats more often
// than every MinInterval (1 s by default) gets them every MinInterval; the
// warning names what it asked for and is logged once, not at every
// registration. The MC's own fallback interval is not raised.
func TestShortIntervalsFromGCAreRaised(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	gc.Accept(200*time.Millisecond, 0)
	var logs syncBuffer
	cfg := fastConfig(gc.Target())
	cfg.MinInterval = 0 // the default
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	ev := make(events, 1000)
	cfg.Observer = ev
	l, _ := startLink(t, cfg, &fixedLoad{l: defaultLoad}, nil)
	ev.await(t, ctx, "register:accepted")
	if st := l.Status(); st.FastInterval != DefaultMinInterval || st.ComprehensiveInterval != cfg.ComprehensiveInterval {
		t.Fatalf("intervals = %v / %v, want %v / %v", st.FastInterval, st.ComprehensiveInterval, DefaultMinInterval, cfg.ComprehensiveInterval)
	}
	// Registering again (the comprehensive heartbeats, every 40 ms, find
	// the GC has forgotten the MC) does not repeat the warning.
	gc.Forget()
	ev.await(t, ctx, "register:accepted")
	warnings := strings.Count(logs.String(), "level=WARN msg=\"GC asked for heartbeats more often than the minimum")
	if warnings != 1 || !strings.Contains(logs.String(), "fast_interval_received=200ms") || !strings.Contains(logs.String(), "minimum=1s") {
		t.Fatalf("%d warnings, want 1 naming 200ms and the 1s minimum:\n%s", warnings, logs.String())
	}
}

// TestBackoffJitter: each registration wait is drawn between half the
// backoff ceiling and all of it, and the draws spread over that range.
func TestBackoffJitter(t *testing.T) {
	for _, d := range []time.Duration{time.Millisecond, time.Second, 30 * time.Second, 1} {
		if lo := equalJitter(d, func(int64) int64 { return 0 }); lo != d-d/2 {
			t.Errorf("lowest wait for %v: %v", d, lo)
		}
		if hi := equalJitter(d, func(n int64) int64 { return n - 1 }); hi != d {
			t.Errorf("highest wait for %v: %v", d, hi)
		}
	}
	l, err := NewLink(fastConfig("127.0.0.1:1"), &fixedLoad{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.cfg.BackoffBase, l.cfg.BackoffMax = time.Second, 30*time.Second
	for attempt := 1; attempt <= 8; attempt++ {
		ceiling := retry.Backoff(time.Second, 30*time.Second, attempt)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := l.retryDelay(attempt)
			if d < ceiling/2 || d > ceiling {
				t.Fatalf("attempt %d: wait %v outside [%v, %v]", attempt, d, ceiling/2, ceiling)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Errorf("attempt %d: only %d different waits in 200 draws", attempt, len(seen))
		}
	}
}

func TestHeartbeatContents(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	load := &fixedLoad{l: defaultLoad}
	startLink(t, fastConfig(gc.Target()), load, fixedSampler{cpu: 250, mem: -3})
	fast, err := gc.WaitFast(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	f := fast[0].Req
	c := f.GetCapacity()
	if f.GetControllerId() != "mc-test" || f.GetHealth() != internalpb.HealthStatus_HEALTHY || c.GetMaxMeetings() != 50 ||
		c.GetCurrentMeetings() != 3 || c.GetMaxParticipants() != 500 || c.GetCurrentParticipants() != 42 {
		t.Fatalf("fast heartbeat = %v", f)
	}
	comp, err := gc.WaitComprehensive(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r := comp[0].Req; r.GetCpuUsagePercent() != 100 || r.GetMemoryUsagePercent() != 0 || r.GetCapacity().GetCurrentParticipants() != 42 {
		t.Fatalf("comprehensive heartbeat = %v (percentages must be clamped to 0..100)", r)
	}

	// Load changes show up in later heartbeats.
	load.set(Load{MaxMeetings: 50, CurrentMeetings: 4, MaxParticipants: 500, CurrentParticipants: 7, Health: internalpb.HealthStatus_DEGRADED})
	for n := 2; ; n++ {
		fast, err := gc.WaitFast(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if last := fast[n-1].Req; last.GetHealth() == internalpb.HealthStatus_DEGRADED {
			if last.GetCapacity().GetCurrentMeetings() != 4 || last.GetCapacity().GetCurrentParticipants() != 7 {
				t.Fatalf("fast heartbeat = %v", last)
			}
			break
		}
	}
}

func TestComprehensiveHeartbeatWithGopsutil(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	startLink(t, fastConfig(gc.Target()), &fixedLoad{l: defaultLoad}, NewGopsutilSampler())
	comp, err := gc.WaitComprehensive(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range comp {
		cpu, mem := c.Req.GetCpuUsagePercent(), c.Req.GetMemoryUsagePercent()
		if cpu < 0 || cpu > 100 || mem <= 0 || mem > 100 {
			t.Fatalf("cpu %v %%, memory %v %%", cpu, mem)
		}
	}
}

func TestReRegistersAfterNotFound(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	cfg := fastConfig(gc.Target())
	ev := make(events, 1000)
	cfg.Observer = ev
	l, _ := startLink(t, cfg, &fixedLoad{l: defaultLoad}, nil)
	ev.await(t, ctx, "fast:ok")
	gc.Forget() // the GC restarted and lost its state
	ev.await(t, ctx, "register:accepted")
	ev.await(t, ctx, "fast:ok")
	regs := gc.Registrations()
	if len(regs) != 2 {
		t.Fatalf("%d registrations, want 2", len(regs))
	}
	sawNotFound := false
	for _, f := range gc.Fast() {
		sawNotFound = sawNotFound || (!f.OK && f.At.Before(regs[1].At))
	}
	for _, c := range gc.Comprehensive() {
		sawNotFound = sawNotFound || (!c.OK && c.At.Before(regs[1].At))
	}
	if !sawNotFound {
		t.Fatal("re-registered without a NOT_FOUND heartbeat")
	}
	if st := l.Status(); !st.Registered {
		t.Fatalf("status = %+v", st)
	}
}

func TestShutdownStopsHeartbeats(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	l, err := NewLink(fastConfig(gc.Target()), &fixedLoad{l: defaultLoad}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- l.Run(runCtx) }()
	if _, err := gc.WaitFast(ctx, 2); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return")
	}
	n := len(gc.Fast()) + len(gc.Comprehensive())
	// Run has returned, so the only heartbeat from now on is the final one,
	// and perhaps the one Run had in flight when it was cancelled: its
	// request may reach the GC's handler after the client gave up on it.
	if err := l.SendFinalHeartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(gc.Fast()) + len(gc.Comprehensive()); got-n < 1 || got-n > 2 {
		t.Fatalf("%d heartbeats after Run returned, want only the final one (and at most one in flight)", got-n)
	}
	var final []*internalpb.FastHeartbeatRequest
	for _, f := range gc.Fast() {
		if f.Req.GetHealth() == internalpb.HealthStatus_DRAINING {
			final = append(final, f.Req)
		}
	}
	if len(final) != 1 || final[0].GetCapacity().GetCurrentMeetings() != 3 {
		t.Fatalf("DRAINING heartbeats = %v, want the final one with the current load", final)
	}
}

func TestSlowGCNeverBlocksShutdown(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	gc.Slow()
	cfg := fastConfig(gc.Target())
	cfg.RPCTimeout = time.Hour // only cancellation can end the call
	ev := make(events, 100)
	cfg.Observer = ev
	l, err := NewLink(cfg, &fixedLoad{l: defaultLoad}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- l.Run(runCtx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Run blocked on a slow GC")
	}

	// With a short RPC timeout a slow GC is an ordinary failure, retried.
	cfg.RPCTimeout = 20 * time.Millisecond
	startLink(t, cfg, &fixedLoad{l: defaultLoad}, nil)
	ev.await(t, ctx, "register:error")
	ev.await(t, ctx, "register:error")
}

func TestHeartbeatFailuresKeepTrying(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	cfg := fastConfig(gc.Target())
	ev := make(events, 1000)
	cfg.Observer = ev
	l, _ := startLink(t, cfg, &fixedLoad{l: defaultLoad}, nil)
	ev.await(t, ctx, "fast:ok")
	gc.Unavailable()
	ev.await(t, ctx, "fast:error")
	ev.await(t, ctx, "fast:error")
	if st := l.Status(); !st.Registered || st.ConsecutiveFailures < 2 || st.LastError == "" || st.DownSince.IsZero() {
		t.Fatalf("status = %+v", st)
	}
	gc.Accept(0, 0)
	ev.await(t, ctx, "fast:ok")
	if st := l.Status(); !st.DownSince.IsZero() || st.ConsecutiveFailures != 0 {
		t.Fatalf("status after recovery = %+v", st)
	}
	if n := len(gc.Registrations()); n != 1 {
		t.Fatalf("%d registrations: an unavailable GC must not cause re-registration", n)
	}
}

func TestTokenFileRotationAndSecrecy(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	path := filepath.Join(t.TempDir(), "gc-token")
	const first, second = "first-secret-token", "second-secret-token"
	if err := os.WriteFile(path, []byte(first+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cfg := fastConfig(gc.Target())
	cfg.Tokens = FileToken(path)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ev := make(events, 1000)
	cfg.Observer = ev
	l, _ := startLink(t, cfg, &fixedLoad{l: defaultLoad}, nil)
	fast, err := gc.WaitFast(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if fast[0].Token != first || gc.Registrations()[0].Token != first {
		t.Fatalf("token sent = %q", fast[0].Token)
	}
	// Rotate atomically, as a secrets agent would.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(second), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	for n := 2; ; n++ {
		fast, err := gc.WaitFast(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if fast[n-1].Token == second {
			break
		}
	}
	// An unreadable token file is a heartbeat failure, reported without secrets.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ev.await(t, ctx, "fast:error")
	if st := l.Status(); !strings.Contains(st.LastError, "token file") {
		t.Fatalf("LastError = %q", st.LastError)
	}
	for _, s := range []string{first, second} {
		if strings.Contains(logs.String(), s) || strings.Contains(l.Status().LastError, s) {
			t.Fatal("a token leaked into logs or status")
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestNotifyMeetingEnded(t *testing.T) {
	ctx := testCtx(t)
	gc := gctest.Start(t)
	l, err := NewLink(fastConfig(gc.Target()), &fixedLoad{l: defaultLoad}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.NotifyMeetingEnded(ctx, "m-1"); err != nil {
		t.Fatal(err)
	}
	ended := gc.MeetingsEnded()
	if len(ended) != 1 || ended[0].Req.GetMeetingId() != "m-1" || ended[0].Req.GetRegion() != "eu-test" {
		t.Fatalf("ended = %v", ended)
	}
	gc.Unavailable()
	if err := l.NotifyMeetingEnded(ctx, "m-2"); err == nil {
		t.Fatal("no error from an unavailable GC")
	}
	// A heartbeat for an MC the GC does not know is ErrUnknownMC.
	gc.Accept(0, 0)
	if err := l.SendFinalHeartbeat(ctx); !errors.Is(err, ErrUnknownMC) {
		t.Fatalf("final heartbeat to a GC that does not know the MC: %v", err)
	}
}

func TestNewLinkValidates(t *testing.T) {
	load := &fixedLoad{}
	for name, cfg := range map[string]LinkConfig{
		"no id":      {Target: "127.0.0.1:1"},
		"no target":  {ID: "x"},
		"bad scheme": {ID: "x", Target: "ftp://127.0.0.1:1"},
		"no port":    {ID: "x", Target: "127.0.0.1"},
	} {
		if _, err := NewLink(cfg, load, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewLink(LinkConfig{ID: "x", Target: "127.0.0.1:1"}, nil, nil); err == nil {
		t.Error("nil LoadReporter accepted")
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, addr string
		tls, ok  bool
	}{
		{"127.0.0.1:50051", "127.0.0.1:50051", false, true},
		{"http://127.0.0.1:50051", "127.0.0.1:50051", false, true},
		{"http://gc.example:50051/", "gc.example:50051", false, true},
		{"https://gc.example", "gc.example:443", true, true},
		{"https://[::1]:8443", "[::1]:8443", true, true},
		{"http://gc.example", "gc.example:80", false, true},
		{"", "", false, false},
		{"gc.example", "", false, false},
		{"grpc://gc:1", "", false, false},
		{"https://", "", false, false},
		{"https://gc:1/path", "", false, false},
		{"https://user@gc:1", "", false, false},
	}
	for _, tt := range tests {
		addr, useTLS, err := parseTarget(tt.in)
		if (err == nil) != tt.ok || addr != tt.addr || useTLS != tt.tls {
			t.Errorf("parseTarget(%q) = %q, %v, %v", tt.in, addr, useTLS, err)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"127.0.0.1:50051", "http://h:1", "https://h", "https://[::1]:1/", "::", "http://%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		addr, _, err := parseTarget(in)
		if err == nil && addr == "" {
			t.Fatal("empty address without error")
		}
	})
}

func TestCheckCapacity(t *testing.T) {
	healthy := internalpb.HealthStatus_HEALTHY
	tests := []struct {
		l    Load
		want internalpb.RejectionReason
	}{
		{Load{MaxMeetings: 10, CurrentMeetings: 8, MaxParticipants: 100, CurrentParticipants: 80, Health: healthy}, internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED},
		{Load{MaxMeetings: 100, CurrentMeetings: 85, MaxParticipants: 1000, Health: healthy}, internalpb.RejectionReason_REJECTION_REASON_AT_CAPACITY},
		{Load{MaxMeetings: 10, CurrentMeetings: 10, MaxParticipants: 100, Health: healthy}, internalpb.RejectionReason_REJECTION_REASON_AT_CAPACITY},
		{Load{MaxMeetings: 10, CurrentMeetings: 1, MaxParticipants: 100, CurrentParticipants: 91, Health: healthy}, internalpb.RejectionReason_REJECTION_REASON_AT_CAPACITY},
		{Load{MaxMeetings: 10, MaxParticipants: 100, CurrentParticipants: 0xFFFFFFFF, Health: healthy}, internalpb.RejectionReason_REJECTION_REASON_AT_CAPACITY},
		{Load{MaxMeetings: 10, MaxParticipants: 100, Health: internalpb.HealthStatus_DEGRADED}, internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED},
		{Load{MaxMeetings: 10, MaxParticipants: 100, Health: internalpb.HealthStatus_DRAINING}, internalpb.RejectionReason_REJECTION_REASON_DRAINING},
		{Load{MaxMeetings: 10, MaxParticipants: 100, Health: internalpb.HealthStatus_UNHEALTHY}, internalpb.RejectionReason_REJECTION_REASON_UNHEALTHY},
		{Load{Health: healthy}, internalpb.RejectionReason_REJECTION_REASON_AT_CAPACITY},
	}
	for i, tt := range tests {
		if got := CheckCapacity(tt.l); got != tt.want {
			t.Errorf("%d: CheckCapacity(%+v) = %v, want %v", i, tt.l, got, tt.want)
		}
	}
}

func TestGopsutilSampler(t *testing.T) {
	s := NewGopsutilSampler()
	for range 2 {
		cpu, mem, err := s.Sample(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if cpu < 0 || cpu > 100 || mem <= 0 || mem > 100 {
			t.Fatalf("cpu %v %%, memory %v %%", cpu, mem)
		}
	}
}
