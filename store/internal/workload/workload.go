// Package workload drives a write operation from a fixed number of concurrent writers and reports throughput and
// latency percentiles, and defines edgemc's store benchmark workloads. The store's benchmarks and the Redis
// comparison program share it, so both run and measure the same thing.
package workload

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config says how many writers run and when they stop: after Ops operations in total (if > 0) or after Duration
// (if > 0), whichever comes first.
type Config struct {
	Writers  int
	Ops      int
	Duration time.Duration
}

// Result is one run's outcome.
type Result struct {
	Ops     int
	Elapsed time.Duration
	Latency
	Err     error    // the first operation error; the writer that hit it stops
	Samples []Sample // every operation, in no particular order
}

// Latency holds percentiles of a set of operation latencies.
type Latency struct {
	P50, P99, P999 time.Duration
}

// Sample is one operation: when it started and how long it took.
type Sample struct {
	Start   time.Time
	Latency time.Duration
}

// Window is a span of time [Start, End), such as a checkpoint.
type Window struct{ Start, End time.Time }

// PerSecond is the run's throughput.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// Split is a run's operations divided by a set of windows of time, such as checkpoints.
type Split struct {
	During, Outside   Latency // of the operations that overlapped a window, and of the others
	NDuring, NOutside int
	Within            int // operations that started and ended inside one window: done while it lasted
}

// Split divides the run's operations into those that overlapped one of the windows and the others.
func (r Result) Split(windows []Window) Split {
	var (
		s       Split
		in, out []time.Duration
	)
	for _, op := range r.Samples {
		end := op.Start.Add(op.Latency)
		overlaps, within := false, false
		for _, w := range windows {
			if op.Start.Before(w.End) && end.After(w.Start) {
				overlaps = true
				within = within || (!op.Start.Before(w.Start) && !end.After(w.End))
			}
		}
		if within {
			s.Within++
		}
		if overlaps {
			in = append(in, op.Latency)
		} else {
			out = append(out, op.Latency)
		}
	}
	s.During, s.Outside, s.NDuring, s.NOutside = percentiles(in), percentiles(out), len(in), len(out)
	return s
}

// percentiles sorts lat and reads its percentiles (zero if empty).
func percentiles(lat []time.Duration) Latency {
	n := len(lat)
	if n == 0 {
		return Latency{}
	}
	slices.Sort(lat)
	at := func(perMille int) time.Duration { return lat[min(n-1, n*perMille/1000)] }
	return Latency{P50: at(500), P99: at(990), P999: at(999)}
}

// Run calls op(writer, i) from cfg.Writers goroutines; i counts each writer's own operations from 0.
func Run(cfg Config, op func(writer, i int) error) Result {
	var (
		issued   atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	samples := make([][]Sample, cfg.Writers)
	start := time.Now()
	for w := range cfg.Writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				if cfg.Ops > 0 && issued.Add(1) > int64(cfg.Ops) {
					return
				}
				t := time.Now()
				if cfg.Duration > 0 && t.Sub(start) >= cfg.Duration {
					return
				}
				if err := op(w, i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				samples[w] = append(samples[w], Sample{Start: t, Latency: time.Since(t)})
			}
		})
	}
	wg.Wait()
	r := Result{Elapsed: time.Since(start), Err: firstErr, Samples: slices.Concat(samples...)}
	r.Ops = len(r.Samples)
	lat := make([]time.Duration, r.Ops)
	for i, s := range r.Samples {
		lat[i] = s.Latency
	}
	r.Latency = percentiles(lat)
	return r
}
