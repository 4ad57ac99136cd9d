package store

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable Options.Now for tests.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestConsumeNonceExactlyOnce(t *testing.T) {
	db := openTest(t, t.TempDir(), Options{})
	const consumers = 64
	for round := range 3 {
		nonce := fmt.Sprint("nonce-", round)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range consumers {
			wg.Go(func() {
				switch err := db.ConsumeNonce("m", nonce, time.Minute); {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, ErrNonceUsed):
					t.Errorf("ConsumeNonce: %v", err)
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d consumers won, want exactly 1", round, n)
		}
	}
	// Nonces are per meeting.
	if err := db.ConsumeNonce("other", "nonce-0", time.Minute); err != nil {
		t.Errorf("same nonce, other meeting: %v", err)
	}
}

func TestSweepRemovesExpired(t *testing.T) {
	clk := newClock(t0)
	db := openTest(t, t.TempDir(), Options{Now: clk.Now})
	gen := mustAcquire(t, db, "m")
	if err := db.PutMeeting(gen, Meeting{ID: "m"}); err != nil {
		t.Fatal(err)
	}
	// More than one sweep chunk, written by concurrent writers so the commits are shared.
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := w; i < 2500; i += 50 {
				if err := db.ConsumeNonce(fmt.Sprint("m", i%3), fmt.Sprint("short-", i), time.Minute); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := db.ConsumeNonce("m", "long", time.Hour); err != nil {
		t.Fatal(err)
	}
	bindings := []Binding{
		{CorrelationID: "expiring", ExpiresAt: clk.Now().Add(time.Minute)},
		{CorrelationID: "later", ExpiresAt: clk.Now().Add(time.Hour)},
		{CorrelationID: "forever"},
	}
	for _, b := range bindings {
		if err := db.PutBinding("m", gen, b); err != nil {
			t.Fatal(err)
		}
	}

	if n, err := db.Sweep(); err != nil || n != 0 {
		t.Fatalf("sweep before expiry removed %d, %v", n, err)
	}
	clk.Advance(time.Minute)
	n, err := db.Sweep()
	if err != nil || n != 2501 {
		t.Fatalf("sweep removed %d (%v), want 2501", n, err)
	}
	st, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Nonces != 1 || st.Bindings != 2 {
		t.Errorf("after sweep: %d nonces, %d bindings; want 1, 2", st.Nonces, st.Bindings)
	}
	// A swept nonce is gone; one still stored is still refused.
	if err := db.ConsumeNonce("m0", "short-0", time.Minute); err != nil {
		t.Errorf("swept nonce: %v", err)
	}
	if err := db.ConsumeNonce("m", "long", time.Hour); !errors.Is(err, ErrNonceUsed) {
		t.Errorf("unexpired nonce: %v", err)
	}
}

// The background sweeper runs on its own; the Observe hook signals each sweep.
func TestBackgroundSweeper(t *testing.T) {
	clk := newClock(t0)
	swept := make(chan error, 100)
	db := openTest(t, t.TempDir(), Options{Now: clk.Now, SweepInterval: time.Millisecond,
		Observe: func(op string, _ time.Duration, err error) {
			if op == "sweep" {
				select {
				case swept <- err:
				default:
				}
			}
		}})
	if err := db.ConsumeNonce("m", "n", time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second)
	for {
		select {
		case err := <-swept:
			if err != nil {
				t.Fatal(err)
			}
		case <-t.Context().Done():
			t.Fatal("sweeper never ran")
		}
		st, err := db.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Nonces == 0 {
			return
		}
	}
}
