package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/edgemc/edgemc/cmd/edgemc/internal/loadgen"
	"github.com/edgemc/edgemc/gc/devgc"
)

// The targets of the side-by-side figures.
const (
	edgemcTarget    = "edgemc"
	floorTarget     = "floor"      // bare webtransport-go, quic-go's defaults
	floorQUICTarget = "floor-quic" // the same with edgemc's QUIC limits
)

// liftBudget lifts edgemc's per-session message budget (20/s, burst 50) for
// figures whose host sends faster than a client may.
var liftBudget = []string{"--session-message-rate=100000", "--session-message-burst=100000"}

// order interleaves the targets: reversed on every other repetition, so
// that drift of the machine hits both sides alike.
func order(rep int, ts ...string) []string {
	out := slices.Clone(ts)
	if rep%2 == 1 {
		slices.Reverse(out)
	}
	return out
}

// start runs a fresh server of the target; extra are edgemc serve flags,
// profile a CPU profile to write.
func (e *env) start(ctx context.Context, target, profile string, extra ...string) *server {
	switch target {
	case floorTarget:
		return e.startFloor(ctx, "default", profile)
	case floorQUICTarget:
		return e.startFloor(ctx, "edgemc", profile)
	}
	if profile != "" {
		extra = append(slices.Clone(extra), "--cpu-profile="+profile)
	}
	return e.startEdgemc(ctx, edgemcRun{extra: extra})
}

// measured runs fn between a fresh server's start and stop inside a
// machine window; fn returns the load generator's CPU.
func (e *env) measured(ctx context.Context, target, profile string, extra []string, fn func(s *server) time.Duration) machine {
	w := openWindow()
	s := e.start(ctx, target, profile, extra...)
	lg := fn(s)
	s.stop()
	return w.close(s.cpu() + lg)
}

// joinRun is one repetition of the join figures on one target.
type joinRun struct {
	rate       loadgen.Report // open loop at -join-rate
	capacity   loadgen.Report // closed loop, -capacity-workers
	cpuPerJoin time.Duration  // server CPU over the closed-loop joins
	rateM      machine
	capM       machine
}

// joinSection measures joins: latency at the target rate, throughput with a
// fixed number of concurrent joins, and server CPU per join.
func (e *env) joinSection(ctx context.Context, o options, log io.Writer) map[string][]joinRun {
	out := map[string][]joinRun{}
	for rep := range o.reps {
		for _, t := range order(rep, edgemcTarget, floorTarget) {
			var f joinRun
			f.rateM = e.measured(ctx, t, "", nil, func(s *server) time.Duration {
				var cpu time.Duration
				f.rate, cpu = e.loadgen(ctx, s, loadRun{sessions: o.joinSessions, meetings: max(1, o.joinSessions/10), concurrency: 256, rate: o.joinRate}, nil)
				return cpu
			})
			profile := ""
			if o.cpuProfile != "" && rep == o.reps-1 {
				profile = o.cpuProfile
				if t == floorTarget {
					profile += ".floor"
				}
			}
			f.capM = e.measured(ctx, t, profile, nil, func(s *server) time.Duration {
				var before usage
				var cpu time.Duration
				f.capacity, cpu = e.loadgen(ctx, s, loadRun{sessions: o.capSessions, meetings: max(1, o.capSessions/10), concurrency: o.capWorkers},
					func(ev loadgen.Event) {
						switch ev.Name {
						case loadgen.EventPrepared:
							before = s.sample()
						case loadgen.EventJoined:
							f.cpuPerJoin = (s.sample().CPU - before.CPU) / time.Duration(max(1, ev.Joined))
						}
					})
				return cpu
			})
			fmt.Fprintf(log, "joins %d/%d %-6s: %.0f/s target: p50 %.1f p99 %.1f p999 %.1f ms (failed %v); %d workers: %.0f joins/s, p99 %.1f ms, server CPU %.2f ms/join [%s]\n",
				rep+1, o.reps, t, o.joinRate, f.rate.JoinLatency.P50, f.rate.JoinLatency.P99, f.rate.JoinLatency.P999, f.rate.Failures,
				o.capWorkers, f.capacity.JoinsPerSecond, f.capacity.JoinLatency.P99, ms(f.cpuPerJoin), machines{f.capM})
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

// idleRun is the memory and CPU of n idle sessions on one target.
type idleRun struct {
	baseKiB, heldKiB int64
	perSessionKiB    float64
	joined           int
	idleCPU          time.Duration // over idleCPUWindow
	m                machine
}

// idleCPUWindow is how long the CPU of idle sessions is measured.
const idleCPUWindow = 10 * time.Second

// idleSessionSection measures server RSS per idle session: edgemc, the
// floor, and the floor with edgemc's QUIC limits.
func (e *env) idleSessionSection(ctx context.Context, o options, log io.Writer) map[int]map[string][]idleRun {
	out := map[int]map[string][]idleRun{}
	for _, n := range o.idleSessions {
		out[n] = map[string][]idleRun{}
		for rep := range o.reps {
			for _, t := range order(rep, edgemcTarget, floorTarget, floorQUICTarget) {
				var f idleRun
				f.m = e.measured(ctx, t, "", nil, func(s *server) time.Duration {
					f.baseKiB = s.sample().RSSKiB
					var held []int64
					rep, cpu := e.loadgen(ctx, s, loadRun{sessions: n, meetings: max(1, n/10), concurrency: 16, hold: o.settle + 3*time.Second + idleCPUWindow},
						func(ev loadgen.Event) {
							if ev.Name != loadgen.EventJoined {
								return
							}
							pause(ctx, o.settle)
							for range 5 {
								held = append(held, s.sample().RSSKiB)
								pause(ctx, 300*time.Millisecond)
							}
							before := s.sample().CPU
							pause(ctx, idleCPUWindow)
							f.idleCPU = s.sample().CPU - before
						})
					slices.Sort(held)
					f.heldKiB, f.joined = held[len(held)/2], rep.Joined
					return cpu
				})
				f.perSessionKiB = float64(f.heldKiB-f.baseKiB) / float64(max(1, f.joined))
				fmt.Fprintf(log, "idle %5d %d/%d %-10s: RSS %d KiB before, %d KiB held (%d joined): %.1f KiB/session; idle CPU %.2f%% of a core\n",
					n, rep+1, o.reps, t, f.baseKiB, f.heldKiB, f.joined, f.perSessionKiB, pct(f.idleCPU, idleCPUWindow))
				out[n][t] = append(out[n][t], f)
			}
		}
	}
	return out
}

// fanoutRun is one target's host-mute fan-out to n participants.
type fanoutRun struct {
	report          loadgen.Report
	cpuPerDelivered time.Duration // server CPU per update delivered
	m               machine
}

// fanoutSection measures host-mute fan-out in one meeting of n participants
// (plus the host).
func (e *env) fanoutSection(ctx context.Context, o options, log io.Writer) map[int]map[string][]fanoutRun {
	out := map[int]map[string][]fanoutRun{}
	for _, n := range o.fanout {
		out[n] = map[string][]fanoutRun{}
		for rep := range o.reps {
			for _, t := range order(rep, edgemcTarget, floorTarget) {
				var f fanoutRun
				f.m = e.measured(ctx, t, "", liftBudget, func(s *server) time.Duration {
					var before, after usage
					var cpu time.Duration
					f.report, cpu = e.loadgen(ctx, s, loadRun{sessions: n + 1, meetings: 1, concurrency: 8, mutes: o.mutes, settle: o.settle},
						func(ev loadgen.Event) {
							switch ev.Name {
							case loadgen.EventJoined:
								before = s.sample()
							case loadgen.EventMuted:
								after = s.sample()
							}
						})
					if d := f.report.FanOut.Count * n; d > 0 {
						f.cpuPerDelivered = (after.CPU - before.CPU) / time.Duration(d)
					}
					return cpu
				})
				fmt.Fprintf(log, "fan-out %4d %d/%d %-6s: p50 %.1f p99 %.1f ms over %d mutes (%d failed), server CPU %.0f µs per delivery\n",
					n, rep+1, o.reps, t, f.report.FanOut.P50, f.report.FanOut.P99, f.report.FanOut.Count, failures(f.report),
					float64(f.cpuPerDelivered.Nanoseconds())/1e3)
				out[n][t] = append(out[n][t], f)
			}
		}
	}
	return out
}

// bigRun is one repetition of the many-sessions figure: n sessions joined
// in meetings of 10, idle, a host-mute in one meeting, then restarts.
type bigRun struct {
	joined                 int
	joinTime               time.Duration
	cpuPerJoin             time.Duration
	baseKiB, heldKiB       int64
	idleCPU                time.Duration // over the idle window
	idleWindow             time.Duration
	mute                   loadgen.Summary
	restarts               []restartRun // SIGTERM, then SIGKILL
	loadgenCPU             time.Duration
	joinM, idleM, restartM machine
	rejoinFailures         map[string]int
}

// restartRun is one restart under held sessions.
type restartRun struct {
	took       time.Duration // from the signal until every session is back
	oldCPU     time.Duration // the old process from the signal to its exit (the drain)
	newCPU     time.Duration // the new process from exec until every session is back
	stopped    time.Duration // from the signal until the old process had exited
	down       time.Duration // from the signal until the new process was ready
	back       int           // sessions back (the others were refused for good)
	recovered  int           // sessions that got their participant back
	incomplete bool          // not every session was back within the limit
}

// restartLimit bounds the wait for every session to come back.
const restartLimit = 3 * time.Minute

// bigSection holds each of o.many sessions (meetings of 10) on one edgemc with the
// default max-participants: the memory and idle CPU they cost, a host-mute
// reaching one meeting while the others idle, and restarts by SIGTERM (what
// `systemctl restart` sends) and by SIGKILL, after which every client
// reconnects with its binding.
func (e *env) bigSection(ctx context.Context, o options, log io.Writer) map[int][]bigRun {
	out := map[int][]bigRun{}
	for _, n := range o.many {
		for rep := range o.reps {
			out[n] = append(out[n], e.bigRun(ctx, o, log, n, rep))
		}
	}
	return out
}

// restartSignals are the restarts of a many-sessions run, in order: a drain
// (what systemctl restart sends) and a crash.
var restartSignals = []string{"SIGTERM", "SIGKILL"}

// bigRun runs one repetition of the many-sessions figures with n sessions.
func (e *env) bigRun(ctx context.Context, o options, log io.Writer, n, rep int) bigRun {
	// At 1,000 meetings the default max-meetings (1,000) would shed
	// assignments from 85 %; max-participants stays at its default.
	extra := append([]string{fmt.Sprintf("--max-meetings=%d", 2*max(1, n/10)), "--drain-timeout=30s"}, liftBudget...)
	var f bigRun
	dir, listen := e.dir("edgemc"), freeUDPAddr()
	w := openWindow()
	s := e.startEdgemc(ctx, edgemcRun{dir: dir, listen: listen, extra: extra})
	f.baseKiB = s.sample().RSSKiB
	p := e.startLoad(ctx, s, loadRun{sessions: n, meetings: max(1, n/10), concurrency: 64, mutes: 20, muteMeetings: 1,
		settle: o.settle, restarts: true})
	if _, ok := p.await(loadgen.EventPrepared, 10*time.Minute, nil); !ok {
		fatalf("many sessions: the load generator did not prepare its meetings")
	}
	joinStart, cpu0 := time.Now(), s.cpu()
	ev, ok := p.await(loadgen.EventJoined, 30*time.Minute, nil)
	if !ok {
		fatalf("many sessions: the joins did not end")
	}
	f.joined, f.joinTime = ev.Joined, time.Since(joinStart)
	f.cpuPerJoin = (s.cpu() - cpu0) / time.Duration(max(1, ev.Joined))
	f.joinM = w.close(s.cpu() + p.cpu())
	if _, ok := p.await(loadgen.EventMuted, 10*time.Minute, nil); !ok {
		fatalf("many sessions: the host-mutes did not end")
	}
	fmt.Fprintf(log, "many %d %d/%d: %d of %d joined in %.1f s (%.2f ms server CPU per join), host-mutes done; idle for %v\n",
		n, rep+1, o.reps, f.joined, n, f.joinTime.Seconds(), ms(f.cpuPerJoin), o.bigIdle)
	pause(ctx, o.settle)
	w = openWindow()
	u0, lg0 := s.sample(), p.cpu()
	pause(ctx, o.bigIdle)
	u1 := s.sample()
	f.idleCPU, f.idleWindow, f.heldKiB = u1.CPU-u0.CPU, time.Since(w.start), u1.RSSKiB
	f.idleM = w.close(f.idleCPU + p.cpu() - lg0)
	fmt.Fprintf(log, "many %d %d/%d: idle: %.1f%% of a core, RSS %.1f MiB (%.1f KiB/session) [%s]\n", n, rep+1, o.reps,
		100*f.idleCPU.Seconds()/f.idleWindow.Seconds(), float64(f.heldKiB)/1024, float64(f.heldKiB-f.baseKiB)/float64(max(1, f.joined)), machines{f.idleM})

	w, lg0 = openWindow(), p.cpu()
	var restartOwn time.Duration
	for _, how := range restartSignals {
		var r restartRun
		if _, err := fmt.Fprintln(p.stdin, "restart"); err != nil {
			fatalf("many sessions: announcing a restart: %v", err)
		}
		t0 := time.Now()
		before := s.cpu()
		if how == "SIGTERM" {
			if !s.terminate(45 * time.Second) {
				fmt.Fprintf(log, "many %d %d/%d: the drain did not end in 45 s; killed\n", n, rep+1, o.reps)
			}
		} else {
			s.kill()
		}
		r.stopped, r.oldCPU = time.Since(t0), s.cpu()-before
		restartOwn += r.oldCPU
		s = e.startEdgemc(ctx, edgemcRun{dir: dir, listen: listen, extra: extra})
		r.down = time.Since(t0)
		ev, ok := p.await(loadgen.EventRestored, restartLimit, nil)
		r.took, r.newCPU = time.Since(t0), s.cpu()
		r.incomplete = !ok
		r.back, r.recovered = ev.Joined, ev.Recovered
		restartOwn += r.newCPU
		fmt.Fprintf(log, "many %d %d/%d: %s: exited after %.1f s, ready again after %.1f s; after %.1f s %d of %d back (%d with their participant), %d refused for good; server CPU %.2f s draining + %.2f s restarting\n",
			n, rep+1, o.reps, how, r.stopped.Seconds(), r.down.Seconds(), r.took.Seconds(), ev.Joined, f.joined, r.recovered, ev.Failed, r.oldCPU.Seconds(), r.newCPU.Seconds())
		f.restarts = append(f.restarts, r)
		if r.incomplete {
			fmt.Fprintf(log, "many %d %d/%d: not every session was back within %v\n", n, rep+1, o.reps, restartLimit)
			break
		}
	}
	f.restartM = w.close(restartOwn + p.cpu() - lg0)
	_ = p.stdin.Close()
	lr, lg := p.wait(nil)
	f.loadgenCPU, f.mute, f.rejoinFailures = lg, lr.FanOut, lr.RejoinFailures
	fmt.Fprintf(log, "many %d %d/%d: each session, from noticing its loss until back: p50 %.0f ms, p99 %.0f ms, max %.0f ms; failed attempts %v\n",
		n, rep+1, o.reps, lr.Rejoin.P50, lr.Rejoin.P99, lr.Rejoin.Max, lr.RejoinFailures)
	s.stop()
	return f
}

// storeRun is one run of store/internal/redisbench.
type storeRun struct {
	tables map[string][]storeRow
	hog    bool
	m      machine
	err    error
}

// storeSection runs the store comparison program o.reps times on its own
// and o.reps times beside a CPU hog, interleaved.
func storeSection(ctx context.Context, o options, log io.Writer) []storeRun {
	var out []storeRun
	for rep := range o.reps {
		for _, withHog := range []bool{rep%2 == 1, rep%2 == 0} {
			r := storeRun{hog: withHog}
			what := "alone"
			var h *hog
			if withHog {
				h = startHog(ctx)
				what = "beside " + h.what
			}
			fmt.Fprintf(log, "store %d/%d %s: go run ./store/internal/redisbench -duration %v -writers 1,8,64\n", rep+1, o.reps, what, o.storeDuration)
			w := openWindow()
			cmd := exec.CommandContext(ctx, "go", "run", "./store/internal/redisbench", "-duration", o.storeDuration.String(), "-writers", "1,8,64")
			cmd.Stderr = log
			cmd.SysProcAttr = childAttr()
			raw, err := cmd.Output()
			r.m = w.close(processCPU(cmd.ProcessState))
			if h != nil {
				h.stop()
			}
			if err != nil {
				r.err = fmt.Errorf("redisbench: %w", err)
			} else {
				r.tables, r.err = parseRedisbench(string(raw))
			}
			if r.err != nil {
				fmt.Fprintf(log, "store: %v\n%s", r.err, raw)
			}
			out = append(out, r)
		}
	}
	return out
}

// costRun is one window of the idle appliance.
type costRun struct {
	window     time.Duration
	cpu        time.Duration
	rssKiB     int64
	heartbeats bool // the GC saw a heartbeat inside the window
	m          machine
}

// idleCostSection runs an appliance registered with a development GC and
// measures it doing nothing for the idle window (heartbeats included).
func (e *env) idleCostSection(ctx context.Context, o options, log io.Writer) []costRun {
	var out []costRun
	for rep := range o.reps {
		out = append(out, e.idleCost(ctx, o, log, rep))
	}
	return out
}

func (e *env) idleCost(ctx context.Context, o options, log io.Writer, rep int) costRun {
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
	s := e.start(ctx, edgemcTarget, "", "--gc-url=http://"+lis.Addr().String(), "--gc-token-file="+token)
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
	f := costRun{window: o.idle}
	w := openWindow()
	before := s.sample()
	pause(ctx, o.idle)
	after := s.sample()
	f.window, f.cpu, f.rssKiB = time.Since(w.start), after.CPU-before.CPU, after.RSSKiB
	f.m = w.close(f.cpu)
	mc, _ := registered()
	f.heartbeats = mc.LastFast.After(w.start)
	fmt.Fprintf(log, "idle cost %d/%d: %.1f ms CPU over %v (%.3f%% of a core), RSS %d KiB, heartbeats seen %v\n",
		rep+1, o.reps, ms(f.cpu), f.window.Round(time.Second), 100*f.cpu.Seconds()/f.window.Seconds(), f.rssKiB, f.heartbeats)
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

// pct is d as a percentage of one core over window.
func pct(d, window time.Duration) float64 {
	if window <= 0 {
		return math.NaN()
	}
	return 100 * d.Seconds() / window.Seconds()
}
