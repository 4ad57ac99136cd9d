package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/edgemc/edgemc/cmd/edgemc/internal/loadgen"
	"github.com/edgemc/edgemc/gc/devgc"
)

// The two targets of every side-by-side figure.
const (
	edgemcTarget = "edgemc"
	floorTarget  = "floor"
)

func targets() []string { return []string{edgemcTarget, floorTarget} }

// start runs a fresh server of the target; extra are edgemc serve flags.
func (e *env) start(ctx context.Context, target string, extra ...string) *server {
	if target == floorTarget {
		return e.startFloor(ctx)
	}
	s := e.startEdgemc(ctx, extra...)
	e.readyTimes = append(e.readyTimes, s.readyTime)
	return s
}

// joinFigures are one repetition of the join section for one target.
type joinFigures struct {
	rate       loadgen.Report // open loop at -join-rate
	capacity   loadgen.Report // closed loop, -capacity-workers
	cpuPerJoin time.Duration  // server CPU over the closed-loop joins
}

// joinSection measures joins: latency at the target rate, throughput with a
// fixed number of concurrent joins, and server CPU per join.
func (e *env) joinSection(ctx context.Context, o options, log io.Writer) map[string][]joinFigures {
	out := map[string][]joinFigures{}
	for rep := range o.reps {
		for _, t := range targets() {
			var f joinFigures
			s := e.start(ctx, t)
			f.rate = e.loadgen(ctx, s, loadRun{sessions: o.joinSessions, meetings: max(1, o.joinSessions/10), concurrency: 256, rate: o.joinRate})
			s.stop()

			s = e.start(ctx, t)
			var before usage
			f.capacity = e.loadgen(ctx, s, loadRun{sessions: o.capSessions, meetings: max(1, o.capSessions/10), concurrency: o.capWorkers,
				on: func(ev loadgen.Event) {
					switch ev.Name {
					case loadgen.EventPrepared:
						before = s.sample()
					case loadgen.EventJoined:
						f.cpuPerJoin = (s.sample().CPU - before.CPU) / time.Duration(max(1, ev.Joined))
					}
				}})
			s.stop()
			fmt.Fprintf(log, "joins %d/%d %-6s: %.0f/s target: p50 %.1f p99 %.1f p999 %.1f ms (failed %v); %d workers: %.0f joins/s, p99 %.1f ms, server CPU %.2f ms/join\n",
				rep+1, o.reps, t, o.joinRate, f.rate.JoinLatency.P50, f.rate.JoinLatency.P99, f.rate.JoinLatency.P999, f.rate.Failures,
				o.capWorkers, f.capacity.JoinsPerSecond, f.capacity.JoinLatency.P99, ms(f.cpuPerJoin))
			out[t] = append(out[t], f)
		}
	}
	return out
}

func failures(r loadgen.Report) int {
	n := r.Sessions - r.Joined
	for _, c := range r.FanOutFailures {
		n += c
	}
	return n
}

// idleFigures is the memory of n idle sessions on one target.
type idleFigures struct {
	baseKiB, heldKiB int64
	perSessionKiB    float64
	report           loadgen.Report
}

// idleSessionSection measures server RSS per idle session.
func (e *env) idleSessionSection(ctx context.Context, o options, log io.Writer) map[int]map[string]idleFigures {
	out := map[int]map[string]idleFigures{}
	for _, n := range o.idleSessions {
		out[n] = map[string]idleFigures{}
		for _, t := range targets() {
			s := e.start(ctx, t)
			f := idleFigures{baseKiB: s.sample().RSSKiB}
			var held []int64
			f.report = e.loadgen(ctx, s, loadRun{sessions: n, meetings: max(1, n/10), concurrency: 16, hold: o.settle + 3*time.Second,
				on: func(ev loadgen.Event) {
					if ev.Name != loadgen.EventJoined {
						return
					}
					pause(ctx, o.settle)
					for range 5 {
						held = append(held, s.sample().RSSKiB)
						pause(ctx, 300*time.Millisecond)
					}
				}})
			s.stop()
			slices.Sort(held)
			f.heldKiB = held[len(held)/2]
			f.perSessionKiB = float64(f.heldKiB-f.baseKiB) / float64(max(1, f.report.Joined))
			fmt.Fprintf(log, "idle %5d %-6s: RSS %d KiB before, %d KiB held (%d joined): %.1f KiB/session\n",
				n, t, f.baseKiB, f.heldKiB, f.report.Joined, f.perSessionKiB)
			out[n][t] = f
		}
	}
	return out
}

// fanoutFigures is one target's host-mute fan-out to n participants.
type fanoutFigures struct {
	report          loadgen.Report
	cpuPerDelivered time.Duration // server CPU per update delivered
}

// fanoutSection measures host-mute fan-out in one meeting of n participants
// (plus the host).
func (e *env) fanoutSection(ctx context.Context, o options, log io.Writer) map[int]map[string]fanoutFigures {
	out := map[int]map[string]fanoutFigures{}
	for _, n := range o.fanout {
		out[n] = map[string]fanoutFigures{}
		for _, t := range targets() {
			s := e.start(ctx, t)
			var f fanoutFigures
			var before, after usage
			f.report = e.loadgen(ctx, s, loadRun{sessions: n + 1, meetings: 1, concurrency: 8, mutes: o.mutes, settle: o.settle,
				on: func(ev loadgen.Event) {
					switch ev.Name {
					case loadgen.EventJoined:
						before = s.sample()
					case loadgen.EventMuted:
						after = s.sample()
					}
				}})
			s.stop()
			if d := f.report.FanOut.Count * n; d > 0 {
				f.cpuPerDelivered = (after.CPU - before.CPU) / time.Duration(d)
			}
			fmt.Fprintf(log, "fan-out %4d %-6s: p50 %.1f p99 %.1f ms over %d mutes (%d failed), server CPU %.0f µs per delivery; joins %.0f/s\n",
				n, t, f.report.FanOut.P50, f.report.FanOut.P99, f.report.FanOut.Count, failures(f.report),
				float64(f.cpuPerDelivered.Microseconds()), f.report.JoinsPerSecond)
			out[n][t] = f
		}
	}
	return out
}

// storeSection runs the store comparison program and reads its table.
func storeSection(ctx context.Context, o options, log io.Writer) storeFigures {
	fmt.Fprintf(log, "store: go run ./store/internal/redisbench -duration %v -writers 1,8,64\n", o.storeDuration)
	cmd := exec.CommandContext(ctx, "go", "run", "./store/internal/redisbench", "-duration", o.storeDuration.String(), "-writers", "1,8,64")
	cmd.Stderr = log
	cmd.SysProcAttr = childAttr()
	out, err := cmd.Output()
	if err != nil {
		return storeFigures{err: fmt.Errorf("redisbench: %w", err), raw: string(out)}
	}
	rows, err := parseRedisbench(string(out))
	return storeFigures{rows: rows, raw: string(out), err: err}
}

// costFigures is the idle appliance's cost.
type costFigures struct {
	window     time.Duration
	cpu        time.Duration
	rssKiB     int64
	heartbeats bool // the GC saw a heartbeat inside the window
}

// idleCostSection runs an appliance registered with a development GC and
// measures it doing nothing for the idle window (heartbeats included).
func (e *env) idleCostSection(ctx context.Context, o options, log io.Writer) costFigures {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("%v", err)
	}
	gctx, stopGC := context.WithCancel(ctx)
	defer stopGC()
	gc := devgc.New(devgc.Config{Logger: slog.New(slog.DiscardHandler)})
	go gc.Serve(gctx, lis)
	// The development GC checks no token, but a GC link needs credentials.
	token := filepath.Join(e.tmp, "gc-token")
	if err := os.WriteFile(token, []byte("bench-token\n"), 0o600); err != nil {
		fatalf("%v", err)
	}
	s := e.start(ctx, edgemcTarget, "--gc-url=http://"+lis.Addr().String(), "--gc-token-file="+token)
	defer s.stop()
	registered := func() (devgc.MC, bool) {
		st := gc.Status()
		if len(st.MCs) == 1 && !st.MCs[0].RegisteredAt.IsZero() {
			return st.MCs[0], true
		}
		return devgc.MC{}, false
	}
	for deadline := time.Now().Add(30 * time.Second); ; pause(ctx, 20*time.Millisecond) {
		if _, ok := registered(); ok {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			fatalf("edgemc did not register with the development GC in 30 s")
		}
	}
	fmt.Fprintf(log, "idle cost: registered; measuring %v\n", o.idle)
	f := costFigures{window: o.idle}
	start := time.Now()
	before := s.sample()
	pause(ctx, o.idle)
	after := s.sample()
	f.window, f.cpu, f.rssKiB = time.Since(start), after.CPU-before.CPU, after.RSSKiB
	mc, _ := registered()
	f.heartbeats = mc.LastFast.After(start)
	fmt.Fprintf(log, "idle cost: %.1f ms CPU over %v (%.3f%% of a core), RSS %d KiB, heartbeats seen %v\n",
		ms(f.cpu), f.window.Round(time.Second), 100*f.cpu.Seconds()/f.window.Seconds(), f.rssKiB, f.heartbeats)
	return f
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
