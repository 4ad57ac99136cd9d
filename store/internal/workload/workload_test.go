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
	during, outside, nIn, nOut := r.Split([]Window{{Start: t0.Add(100*ms - 1), End: t0.Add(195 * ms)}})
	if nIn != 10 || nOut != 990 {
		t.Fatalf("split %d during, %d outside; want 10 and 990", nIn, nOut)
	}
	if during.P50 != 16*time.Microsecond || during.P999 != 20*time.Microsecond || outside.P999 != 1000*time.Microsecond {
		t.Errorf("during %+v, outside %+v", during, outside)
	}
}
