package loadgen

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/appliance"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/webtransport"
	"github.com/edgemc/edgemc/webtransport/wtbench"
)

// readyCatcher is a slog handler that hands over the attributes of the
// appliance's "edgemc ready" line.
type readyCatcher struct{ ready chan map[string]string }

func (h readyCatcher) Enabled(context.Context, slog.Level) bool { return true }

func (h readyCatcher) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "edgemc ready" {
		return nil
	}
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	h.ready <- attrs
	return nil
}

func (h readyCatcher) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h readyCatcher) WithGroup(string) slog.Handler      { return h }

// target is a running appliance as the load generator sees it.
type target struct {
	url, grpc, http string
	dial            webtransport.DialOptions
}

// startAppliance runs a real edgemc appliance in this process on loopback,
// trusting tokens signed by priv (or, in lab mode, its own issuer).
func startAppliance(t testing.TB, priv ed25519.PrivateKey, lab bool) target {
	t.Helper()
	tg, stop := startApplianceAt(t, priv, lab, t.TempDir(), "127.0.0.1:0")
	t.Cleanup(stop)
	return tg
}

// startApplianceAt is startAppliance with a data directory and WebTransport
// address of the caller's choosing; stop drains it and waits until it has
// stopped.
func startApplianceAt(t testing.TB, priv ed25519.PrivateKey, lab bool, dataDir, wtAddr string) (target, func()) {
	t.Helper()
	cfg := appliance.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.WebTransportListen, cfg.GRPCListen, cfg.HTTPListen = wtAddr, "127.0.0.1:0", "127.0.0.1:0"
	cfg.DrainTimeout = 5 * time.Second
	cfg.MaxMeetings = 100000 // BenchmarkJoin holds one meeting per session
	if priv != nil {
		key := filepath.Join(t.TempDir(), "jwt.pem")
		pub := devissuer.NewIssuerFromKey("k", priv).PublicKeyPEM()
		if err := os.WriteFile(key, pub, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.JWTPublicKey = key
	}
	ready := make(chan map[string]string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- appliance.Run(ctx, cfg, appliance.RunOptions{Logger: slog.New(readyCatcher{ready}), Lab: lab})
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("appliance: %v", err)
			}
		})
	}
	select {
	case a := <-ready:
		hash, err := hex.DecodeString(a["cert_sha256"])
		if err != nil || len(hash) != 32 {
			stop()
			t.Fatalf("ready line cert hash %q", a["cert_sha256"])
		}
		return target{
			url: "https://" + a["webtransport"] + "/", grpc: a["grpc"], http: a["http"],
			dial: webtransport.DialOptions{CertHashes: [][32]byte{[32]byte(hash)}},
		}, stop
	case err := <-done:
		t.Fatalf("appliance stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("appliance not ready in 30 s")
	}
	return target{}, nil
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func TestSignalingJoinMuteReconnectLeave(t *testing.T) {
	priv := newKey(t)
	tg := startAppliance(t, priv, false)
	tokens := NewKeyTokens(priv, "loadgen-test")
	assign, err := tokens.Assigner(tg.grpc)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	rep, err := Run(context.Background(), Config{
		URL: tg.url, Dial: tg.dial, Meetings: []string{"m-1", "m-2"}, Sessions: 12, Rate: 200,
		Mutes: 3, Settle: 10 * time.Millisecond, MuteGap: time.Millisecond, Reconnects: 2, Leave: true,
		Tokens: tokens, Assign: assign, Observe: func(e Event) { events = append(events, e) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Joined != 12 || len(rep.Failures) != 0 || rep.JoinLatency.Count != 12 {
		t.Errorf("joined %d, failures %v", rep.Joined, rep.Failures)
	}
	if rep.FanOut.Count != 6 || len(rep.FanOutFailures) != 0 || rep.FanOut.P50 <= 0 {
		t.Errorf("fan-out %+v, failures %v; want 3 rounds in each of 2 meetings", rep.FanOut, rep.FanOutFailures)
	}
	if rep.Recovered != 2 || rep.Reconnect.Count != 2 || rep.Lost != 0 {
		t.Errorf("recovered %d of %d reconnections (failures %v), lost %d", rep.Recovered, rep.Reconnect.Count, rep.ReconnectFails, rep.Lost)
	}
	var names []string
	for _, e := range events {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != "prepared,joined,muted,reconnected" || events[1].Joined != 12 {
		t.Errorf("events %+v", events)
	}
}

func TestFailuresAreCountedByReason(t *testing.T) {
	priv := newKey(t)
	tg := startAppliance(t, priv, false)
	assign, err := NewKeyTokens(priv, "k").Assigner(tg.grpc)
	if err != nil {
		t.Fatal(err)
	}
	// Tokens signed by a key the appliance does not trust.
	rep, err := Run(context.Background(), Config{
		URL: tg.url, Dial: tg.dial, Meetings: []string{"m"}, Sessions: 3,
		Tokens: NewKeyTokens(newKey(t), "other"), Assign: assign,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Joined != 0 || rep.Failures["UNAUTHORIZED"] != 3 {
		t.Errorf("joined %d, failures %v; want 3 UNAUTHORIZED", rep.Joined, rep.Failures)
	}
	// A meeting that was never assigned.
	rep, err = Run(context.Background(), Config{
		URL: tg.url, Dial: tg.dial, Meetings: []string{"nowhere"}, Sessions: 2, Tokens: NewKeyTokens(priv, "k"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failures["NOT_FOUND"] != 2 {
		t.Errorf("failures %v; want 2 NOT_FOUND", rep.Failures)
	}
}

func TestLabTokens(t *testing.T) {
	tg := startAppliance(t, nil, true)
	lab, err := NewLabTokens("http://"+tg.http, "")
	if err != nil {
		t.Fatal(err)
	}
	info, err := lab.Info(context.Background(), true, "host")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{
		URL: tg.url, Dial: tg.dial, Meetings: []string{info.MeetingID}, Sessions: 3, Mutes: 2, MuteGap: time.Millisecond,
		Tokens: lab, Leave: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Joined != 3 || rep.FanOut.Count != 2 {
		t.Errorf("joined %d (failures %v), fan-out rounds %d (failures %v)", rep.Joined, rep.Failures, rep.FanOut.Count, rep.FanOutFailures)
	}
}

// startFloor runs the bare floor server on loopback.
func startFloor(t *testing.T) target {
	t.Helper()
	certs, err := webtransport.NewSelfSignedManager(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := wtbench.NewBare("127.0.0.1:0", certs.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("floor server: %v", err)
		}
	})
	return target{url: "https://" + srv.Addr().String() + "/", dial: webtransport.DialOptions{CertHashes: [][32]byte{certs.Current().SHA256}}}
}

func TestEchoFloor(t *testing.T) {
	tg := startFloor(t)
	rep, err := Run(context.Background(), Config{
		URL: tg.url, Dial: tg.dial, Protocol: Echo, Meetings: []string{"a", "b"}, Sessions: 20,
		Mutes: 4, MuteGap: time.Millisecond, Leave: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	// 4 rounds in each meeting, each reaching exactly the 9 others of the
	// host's meeting (a round that got frames from elsewhere, or too few,
	// would time out or leave stragglers).
	if rep.Joined != 20 || rep.FanOut.Count != 8 || len(rep.FanOutFailures) != 0 {
		t.Errorf("joined %d (failures %v), fan-out rounds %d (failures %v)", rep.Joined, rep.Failures, rep.FanOut.Count, rep.FanOutFailures)
	}
}

// TestRejoinAcrossRestarts restarts the appliance under held sessions:
// every session comes back with its participant, after a drain and after
// a restart on the same address and data directory.
func TestRejoinAcrossRestarts(t *testing.T) {
	priv := newKey(t)
	dir := t.TempDir()
	tg, stop := startApplianceAt(t, priv, false, dir, "127.0.0.1:0")
	defer func() { stop() }()
	addr := strings.TrimSuffix(strings.TrimPrefix(tg.url, "https://"), "/")
	tokens := NewKeyTokens(priv, "k")
	assign, err := tokens.Assigner(tg.grpc)
	if err != nil {
		t.Fatal(err)
	}
	restarts := make(chan struct{})
	restored := make(chan Event, 1)
	joined := make(chan struct{})
	go func() {
		// A restart may only be announced once the joins are over and the
		// hold has begun; Run reads the channel from then on.
		<-joined
		for range 2 {
			restarts <- struct{}{}
			stop()
			var next target
			next, stop = startApplianceAt(t, priv, false, dir, addr)
			if next.url != tg.url {
				t.Errorf("restarted at %s, want %s", next.url, tg.url)
			}
			if e := <-restored; e.Joined != 6 || e.Recovered != 6 || e.Seconds <= 0 {
				t.Errorf("restored %+v, want all 6 back with their participants", e)
			}
		}
		close(restarts)
	}()
	rep, err := Run(context.Background(), Config{
		URL: tg.url, Dial: tg.dial, Meetings: []string{"m-1", "m-2"}, Sessions: 6,
		Tokens: tokens, Assign: assign, Rejoin: true, Restarts: restarts, Resume: true, Leave: true,
		Observe: func(e Event) {
			switch e.Name {
			case EventJoined:
				close(joined)
			case EventRestored:
				restored <- e
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Joined != 6 || rep.Rejoin.Count != 12 || rep.Recovered != 12 {
		t.Errorf("joined %d, rejoined %d (failed attempts %v), recovered %d; want 6, 12, 12", rep.Joined, rep.Rejoin.Count, rep.RejoinFailures, rep.Recovered)
	}
}

func TestConfigIsChecked(t *testing.T) {
	ok := Config{URL: "https://127.0.0.1:4433/", Protocol: Echo, Meetings: []string{"m"}, Sessions: 1}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want error
	}{
		"remote IP":         {func(c *Config) { c.URL = "https://192.0.2.1:4433/" }, ErrNotLoopback},
		"host name":         {func(c *Config) { c.URL = "https://example.com/" }, ErrNotLoopback},
		"too many sessions": {func(c *Config) { c.Sessions = MaxSessions + 1 }, ErrConfig},
		"no meetings":       {func(c *Config) { c.Meetings = nil }, ErrConfig},
		"no tokens":         {func(c *Config) { c.Protocol = Signaling }, ErrConfig},
		"echo rejoin":       {func(c *Config) { c.Rejoin = true }, ErrConfig},
		"too long":          {func(c *Config) { c.MaxDuration = 2 * MaxRunTime }, ErrConfig},
		"negative settle":   {func(c *Config) { c.Settle = -time.Second }, ErrConfig},
	} {
		c := ok
		tc.edit(&c)
		if _, err := Run(context.Background(), c); !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", name, err, tc.want)
		}
	}
	for _, good := range []string{"https://localhost:1/", "https://[::1]:4433/x", "https://127.0.0.2/"} {
		if err := CheckLoopbackURL(good); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
	if _, err := NewLabTokens("http://10.0.0.1:8081", ""); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("remote lab accepted: %v", err)
	}
	if _, err := NewKeyTokens(newKey(t), "k").Assigner("10.0.0.1:50052"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("remote assigner accepted: %v", err)
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 1000; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(d)
	if s.Count != 1000 || s.P50 != 500 || s.P99 != 990 || s.P999 != 999 || s.Max != 1000 {
		t.Errorf("%+v", s)
	}
	if (Summarize(nil) != Summary{}) {
		t.Error("empty input")
	}
}

// BenchmarkJoin joins b.N sessions into an in-process appliance, 8 at a
// time, in meetings of the given size: the in-process view of the join
// figure of `make bench`, for profiling (-cpuprofile).
func BenchmarkJoin(b *testing.B) {
	for _, size := range []int{1, 10} {
		b.Run(fmt.Sprint("meeting=", size), func(b *testing.B) {
			priv := newKey(b)
			tg := startAppliance(b, priv, false)
			tokens := NewKeyTokens(priv, "bench")
			assign, err := tokens.Assigner(tg.grpc)
			if err != nil {
				b.Fatal(err)
			}
			meetings := make([]string, max(1, b.N/size))
			for i := range meetings {
				meetings[i] = fmt.Sprint("b-", b.N, "-", i)
			}
			// The sessions leave at the end, so that the appliance's drain
			// does not wait for clients that are gone.
			cfg := Config{URL: tg.url, Dial: tg.dial, Meetings: meetings, Sessions: max(b.N, len(meetings)), Concurrency: 8,
				Tokens: tokens, Assign: assign, Leave: true}
			cfg.Observe = func(e Event) {
				switch e.Name {
				case EventPrepared:
					b.ResetTimer()
				case EventJoined:
					b.StopTimer()
				}
			}
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if rep.Joined != cfg.Sessions {
				b.Fatalf("joined %d of %d: %v", rep.Joined, cfg.Sessions, rep.Failures)
			}
			b.ReportMetric(rep.JoinLatency.P99, "p99-ms")
		})
	}
}
