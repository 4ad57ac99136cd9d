package workload

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestRunCountsAndStopsOnError(t *testing.T) {
	var calls atomic.Int64
	r := Run(Config{Writers: 4, Ops: 100}, func(int, int) error { calls.Add(1); return nil })
	if r.Ops != 100 || calls.Load() != 100 || r.Err != nil || r.P99 < r.P50 {
		t.Fatalf("Run = %+v after %d calls, want 100 ops", r, calls.Load())
	}
	boom := errors.New("boom")
	r = Run(Config{Writers: 2, Ops: 1000}, func(w, i int) error {
		if i == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(r.Err, boom) || r.Ops != 6 {
		t.Fatalf("Run with failing op = %+v, want 6 ops and the error", r)
	}
}
