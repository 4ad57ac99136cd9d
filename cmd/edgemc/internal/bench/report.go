package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// results are every figure of a run.
type results struct {
	joins      map[string][]joinFigures
	idle       map[int]map[string]idleFigures
	fanout     map[int]map[string]fanoutFigures
	store      storeFigures
	cost       costFigures
	readyTimes []time.Duration
	binary     string
}

// storeRow is one line of redisbench's fenced-write table (per second, and
// p99 in ms).
type storeRow struct {
	writers                                                     int
	always, alwaysP99, everysec, everysecP99, edgemc, edgemcP99 float64
}

type storeFigures struct {
	rows []storeRow
	raw  string
	err  error
}

// parseRedisbench reads the fenced-write table of
// store/internal/redisbench's output.
func parseRedisbench(out string) ([]storeRow, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	in := false
	var rows []storeRow
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "fenced write"):
			in = true
			continue
		case !in || strings.HasPrefix(line, "writers"):
			continue
		case line == "":
			if len(rows) > 0 {
				return rows, nil
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 7 {
			return nil, fmt.Errorf("bench: redisbench row %q", line)
		}
		w, err := strconv.Atoi(f[0])
		if err != nil || w < 1 {
			return nil, fmt.Errorf("bench: redisbench row %q", line)
		}
		r := storeRow{writers: w}
		for i, p := range []*float64{&r.always, &r.alwaysP99, &r.everysec, &r.everysecP99, &r.edgemc, &r.edgemcP99} {
			v, err := strconv.ParseFloat(f[i+1], 64)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("bench: redisbench row %q", line)
			}
			*p = v
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		return nil, errors.New("bench: no fenced-write table in redisbench output")
	}
	return rows, nil
}

// median of the values f picks from xs.
func median[T any](xs []T, f func(T) float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// write prints the figures as Markdown.
func (r results) write(w io.Writer, o options) {
	fmt.Fprintf(w, "\n## Performance on this machine\n\n")
	fmt.Fprintf(w, "%d cores (%s), %s/%s, %s, %s. Every figure is a fresh server process measured from /proc; the load generator (`edgemc loadgen`) runs in its own process on the same cores; everything on 127.0.0.1.\n",
		runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version(), time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(w, "The floor is a bare webtransport-go server (library defaults) that accepts the session and its stream, echoes the join and relays later frames (`webtransport/wtbench`).\n")

	if len(r.joins) > 0 {
		e, f := r.joins[edgemcTarget], r.joins[floorTarget]
		lat := func(fs []joinFigures, p func(joinFigures) float64) float64 { return median(fs, p) }
		p50 := func(j joinFigures) float64 { return j.rate.JoinLatency.P50 }
		p99 := func(j joinFigures) float64 { return j.rate.JoinLatency.P99 }
		p999 := func(j joinFigures) float64 { return j.rate.JoinLatency.P999 }
		jps := func(j joinFigures) float64 { return j.capacity.JoinsPerSecond }
		cpu := func(j joinFigures) float64 { return ms(j.cpuPerJoin) }
		achieved := func(j joinFigures) float64 { return j.rate.JoinsPerSecond }
		fail := func(j joinFigures) float64 { return float64(failures(j.rate) + failures(j.capacity)) }
		fmt.Fprintf(w, "\n### Joins (median of %d runs)\n\n", o.reps)
		fmt.Fprintf(w, "Dial + WebTransport session + one bidirectional stream + join request + first answer; sessions stay joined, 10 per meeting.\n\n")
		fmt.Fprintf(w, "| figure | edgemc | bare floor | edgemc ÷ floor | target |\n|---|---|---|---|---|\n")
		fmt.Fprintf(w, "| join latency at %.0f joins/s (%d joins), p50 / p99 / p999 | %.1f / %.1f / %.1f ms | %.1f / %.1f / %.1f ms | %.2f (p99) | p99 < 50 ms: %s |\n",
			o.joinRate, o.joinSessions, lat(e, p50), lat(e, p99), lat(e, p999), lat(f, p50), lat(f, p99), lat(f, p999),
			lat(e, p99)/lat(f, p99), verdict(lat(e, p99) < 50))
		fmt.Fprintf(w, "| joins/s achieved at that rate | %.0f | %.0f | | |\n", lat(e, achieved), lat(f, achieved))
		fmt.Fprintf(w, "| joins/s, %d concurrent joins (%d joins) | %.0f | %.0f | %.2f | |\n",
			o.capWorkers, o.capSessions, lat(e, jps), lat(f, jps), lat(e, jps)/lat(f, jps))
		fmt.Fprintf(w, "| server CPU per join | %.2f ms | %.2f ms | %.2f | ≤ 1.5: %s |\n",
			lat(e, cpu), lat(f, cpu), lat(e, cpu)/lat(f, cpu), verdict(lat(e, cpu)/lat(f, cpu) <= 1.5))
		fmt.Fprintf(w, "| failed joins (median) | %.0f | %.0f | | |\n", lat(e, fail), lat(f, fail))
	}

	if len(r.idle) > 0 {
		fmt.Fprintf(w, "\n### Idle sessions held: server memory\n\n")
		fmt.Fprintf(w, "RSS growth from the started server to N joined idle sessions (10 per meeting), %v after the last join, divided by N.\n\n", o.settle)
		fmt.Fprintf(w, "| sessions | edgemc RSS | floor RSS | edgemc per session | floor per session | edgemc − floor | target |\n|---|---|---|---|---|---|---|\n")
		for _, n := range o.idleSessions {
			e, f := r.idle[n][edgemcTarget], r.idle[n][floorTarget]
			d := e.perSessionKiB - f.perSessionKiB
			fmt.Fprintf(w, "| %d | %.1f MiB | %.1f MiB | %.1f KiB | %.1f KiB | %+.1f KiB | < 64 KiB: %s |\n",
				n, float64(e.heldKiB)/1024, float64(f.heldKiB)/1024, e.perSessionKiB, f.perSessionKiB, d, verdict(d < 64))
		}
	}

	if len(r.fanout) > 0 {
		fmt.Fprintf(w, "\n### Host-mute fan-out in one meeting (%d mutes each, the first %v after the last join)\n\n", o.mutes, o.settle)
		fmt.Fprintf(w, "From the host's send until the last of N participants has the update (edgemc: HostMuteRequest → durable write → ParticipantMuteUpdate to everyone; floor: the frame relayed to every other session).\n\n")
		fmt.Fprintf(w, "| participants | edgemc p50 / p99 | floor p50 / p99 | edgemc ÷ floor (p99) | server CPU per delivery, edgemc / floor | joins/s into the meeting, edgemc / floor | target |\n|---|---|---|---|---|---|---|\n")
		for _, n := range o.fanout {
			e, f := r.fanout[n][edgemcTarget], r.fanout[n][floorTarget]
			target := ""
			if n >= 1000 {
				target = "p99 < 50 ms: " + verdict(e.report.FanOut.P99 < 50 && e.report.FanOut.Count > 0)
			}
			fmt.Fprintf(w, "| %d | %.1f / %.1f ms | %.1f / %.1f ms | %.2f | %.0f / %.0f µs | %.0f / %.0f | %s |\n",
				n, e.report.FanOut.P50, e.report.FanOut.P99, f.report.FanOut.P50, f.report.FanOut.P99,
				e.report.FanOut.P99/f.report.FanOut.P99,
				float64(e.cpuPerDelivered.Nanoseconds())/1e3, float64(f.cpuPerDelivered.Nanoseconds())/1e3,
				e.report.JoinsPerSecond, f.report.JoinsPerSecond, target)
			if fails := failures(e.report) + failures(f.report); fails > 0 {
				fmt.Fprintf(w, "|  | failures: edgemc joins %v mutes %v; floor joins %v mutes %v | | | | | |\n",
					e.report.Failures, e.report.FanOutFailures, f.report.Failures, f.report.FanOutFailures)
			}
		}
	}

	if r.store.err != nil || len(r.store.rows) > 0 {
		fmt.Fprintf(w, "\n### Fenced durable writes: edgemc store vs Redis + Lua (`store/internal/redisbench`, %v per figure)\n\n", o.storeDuration)
		if r.store.err != nil {
			fmt.Fprintf(w, "Not measured: %v\n", r.store.err)
		} else {
			fmt.Fprintf(w, "| writers | edgemc/s (p99) | Redis always/s (p99) | Redis everysec/s (p99) | edgemc ÷ always | target |\n|---|---|---|---|---|---|\n")
			for _, s := range r.store.rows {
				fmt.Fprintf(w, "| %d | %.0f (%.2f ms) | %.0f (%.2f ms) | %.0f (%.2f ms) | %.2f | ≥ always: %s |\n",
					s.writers, s.edgemc, s.edgemcP99, s.always, s.alwaysP99, s.everysec, s.everysecP99, s.edgemc/s.always, verdict(s.edgemc >= s.always))
			}
		}
	}

	if r.cost.window > 0 {
		c := r.cost
		fmt.Fprintf(w, "\n### Idle appliance\n\n| figure | value |\n|---|---|\n")
		fmt.Fprintf(w, "| CPU while idle, registered with the development GC (heartbeats every 10 s / 30 s; one seen: %v) | %.1f ms over %v = %.3f %% of one core |\n",
			c.heartbeats, ms(c.cpu), c.window.Round(time.Second), 100*c.cpu.Seconds()/c.window.Seconds())
		fmt.Fprintf(w, "| RSS while idle | %.1f MiB |\n", float64(c.rssKiB)/1024)
	}
	if fi, err := os.Stat(r.binary); err == nil && o.suite == "all" {
		if r.cost.window == 0 {
			fmt.Fprintf(w, "\n| figure | value |\n|---|---|\n")
		}
		fmt.Fprintf(w, "| binary size (`make build`, static, stripped) | %.1f MiB |\n", float64(fi.Size())/(1<<20))
		fmt.Fprintf(w, "| start to ready (exec to the ready log line; median of %d starts) | %.0f ms |\n",
			len(r.readyTimes), median(r.readyTimes, func(d time.Duration) float64 { return ms(d) }))
	}
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
