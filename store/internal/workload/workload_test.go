package workload

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunCountsAndStopsOnError(t *testing.T) {
	var calls atomic.Int64
	r := Run(Config{Writers: 4, Ops: 100}, func(int, int) error { calls.Add(1); return nil })
	if r.Ops != 100 || len(r.Samples) != 100 || calls.Load() != 100 || r.Err != nil || r.P99 < r.P50 || r.P999 < r.P99 {
		t.Fatalf("Run = %+v after %d calls, want 100 ops", r.Latency, calls.Load())
	}
	boom := errors.New("boom")
	r = Run(Config{Writers: 2, Ops: 1000}, func(w, i int) error {
		if i == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(r.Err, boom) || r.Ops != 6 {
		t.Fatalf("Run with failing op = %d ops, %v; want 6 ops and the error", r.Ops, r.Err)
	}
}

func TestSplit(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	var r Result
	// Operations of 1..1000 µs starting every 10 ms; the window covers those starting at 100..190 ms.
	for i := range 1000 {
		r.Samples = append(r.Samples, Sample{Start: t0.Add(time.Duration(i) * 10 * ms), Latency: time.Duration(i+1) * time.Microsecond})
	}
	s := r.Split([]Window{{Start: t0.Add(100*ms - 1), End: t0.Add(190*ms + 5*time.Microsecond)}})
	if s.NDuring != 10 || s.NOutside != 990 || s.Within != 9 { // the last one ends after the window
		t.Fatalf("split %d during (%d within), %d outside; want 10 (9), 990", s.NDuring, s.Within, s.NOutside)
	}
	if s.During.P50 != 16*time.Microsecond || s.During.P999 != 20*time.Microsecond || s.Outside.P999 != 1000*time.Microsecond {
		t.Errorf("during %+v, outside %+v", s.During, s.Outside)
	}
}
