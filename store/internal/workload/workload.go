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
	Ops      int
	Elapsed  time.Duration
	P50, P99 time.Duration
	Err      error // the first operation error; the writer that hit it stops
}

// PerSecond is the run's throughput.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// Run calls op(writer, i) from cfg.Writers goroutines; i counts each writer's own operations from 0.
func Run(cfg Config, op func(writer, i int) error) Result {
	var (
		issued   atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	lat := make([][]time.Duration, cfg.Writers)
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
				lat[w] = append(lat[w], time.Since(t))
			}
		})
	}
	wg.Wait()
	r := Result{Elapsed: time.Since(start), Err: firstErr}
	all := slices.Concat(lat...)
	slices.Sort(all)
	r.Ops = len(all)
	if r.Ops > 0 {
		r.P50 = all[r.Ops/2]
		r.P99 = all[min(r.Ops-1, r.Ops*99/100)]
	}
	return r
}
