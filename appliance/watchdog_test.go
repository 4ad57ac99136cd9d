package appliance

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/edgemc/edgemc/store"
)

// watchdogProbe runs a watchdog with one probe and reports, in order, every
// check's result (checks) and every ping to systemd (pings). The watchdog
// loop is sequential: a ping follows the check that allowed it.
type watchdogProbe struct {
	checks chan error
	pings  chan struct{}
}

func startWatchdog(t *testing.T, ping func(context.Context) error) *watchdogProbe {
	t.Helper()
	w := &watchdogProbe{checks: make(chan error), pings: make(chan struct{})} // unbuffered: received in the order sent
	wd := &watchdog{
		every: 10 * time.Millisecond,
		probes: []probe{{"probe", func(ctx context.Context) error {
			err := ping(ctx)
			w.checks <- err
			return err
		}}},
		notify: func() error { w.pings <- struct{}{}; return nil },
		log:    slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); wd.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for {
			select {
			case <-done:
				return
			case <-w.checks:
			case <-w.pings:
			}
		}
	})
	return w
}

// A meeting actor that is stuck stops the watchdog's pings; they resume
// once it moves again.
func TestWatchdogWaitsForEveryMeeting(t *testing.T) {
	f := newFakeDeps(t)
	m := runMeeting(t, f, store.Meeting{ID: "m", Generation: 1})
	c := &Controller{meetings: map[string]*meeting{"m": m}}
	w := startWatchdog(t, c.Ping)
	if err := <-w.checks; err != nil {
		t.Fatalf("healthy meeting: %v", err)
	}
	<-w.pings

	stuck, release := make(chan struct{}), make(chan struct{})
	if err := m.post(context.Background(), func() { close(stuck); <-release }); err != nil {
		t.Fatal(err)
	}
	<-stuck
	expectNoPing(t, w, 3)
	close(release)
	for {
		select {
		case <-w.checks:
		case <-w.pings:
			return
		}
	}
}

// A store whose committer does not answer (a hung fsync: store's own tests
// show that Ping then returns the context's error) stops the pings too.
func TestWatchdogWaitsForTheStore(t *testing.T) {
	db, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hung := make(chan struct{})
	ping := func(ctx context.Context) error {
		select {
		case <-hung:
			<-ctx.Done() // a committer that never answers
			return ctx.Err()
		default:
			return db.Ping(ctx)
		}
	}
	w := startWatchdog(t, ping)
	if err := <-w.checks; err != nil {
		t.Fatalf("healthy store: %v", err)
	}
	<-w.pings
	close(hung)
	expectNoPing(t, w, 3)
	db.Close()
}

// expectNoPing waits for n failed checks in a row with no ping in between.
func expectNoPing(t *testing.T, w *watchdogProbe, n int) {
	t.Helper()
	failed := 0
	for failed < n {
		select {
		case err := <-w.checks:
			if err != nil {
				failed++
			}
		case <-w.pings:
			if failed > 0 {
				t.Fatal("the watchdog pinged systemd after a check failed")
			}
		}
	}
}
