package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// results are every figure of a run.
type results struct {
	started    time.Time
	command    string
	joins      map[string][]joinRun
	idle       map[int]map[string][]idleRun
	fanout     map[int]map[string][]fanoutRun
	many       map[int][]bigRun
	store      []storeRun
	cost       []costRun
	readyTimes []time.Duration
	binary     string
}

// storeSide is one system's figures in a row of redisbench's tables:
// writes per second and latency percentiles in ms (NaN when not printed).
type storeSide struct {
	rate, p99, p999 float64
}

// storeRow is one line of a redisbench table.
type storeRow struct {
	writers                  int
	always, everysec, edgemc storeSide
}

// Titles of redisbench's tables.
const (
	tableFenced = "fenced write"
	tableNonce  = "one-time nonce"
)

// columnSplit separates the header's column names (which hold single
// spaces).
var columnSplit = regexp.MustCompile(`\s{2,}`)

// parseRedisbench reads the tables of store/internal/redisbench's output,
// by title and by the names in each header: a rate column ("… always/s",
// "… everysec/s", "edgemc/s") owns the "p99" column after it, and each
// system has its "p99.9 …" column. Columns it does not know are skipped.
func parseRedisbench(out string) (map[string][]storeRow, error) {
	tables := map[string][]storeRow{}
	sc := bufio.NewScanner(strings.NewReader(out))
	var (
		title  string
		header []string
	)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			title, header = "", nil
			continue
		case strings.HasPrefix(line, tableFenced):
			title = tableFenced
			continue
		case strings.HasPrefix(line, tableNonce):
			title = tableNonce
			continue
		case title == "":
			continue
		case strings.HasPrefix(line, "writers"):
			header = columnSplit.Split(line, -1)
			continue
		}
		if header == nil {
			return nil, fmt.Errorf("bench: redisbench row before its header: %q", line)
		}
		f := strings.Fields(line)
		if len(f) != len(header) {
			return nil, fmt.Errorf("bench: redisbench row %q does not match its header", line)
		}
		w, err := strconv.Atoi(f[0])
		if err != nil || w < 1 {
			return nil, fmt.Errorf("bench: redisbench row %q", line)
		}
		r := storeRow{writers: w}
		for _, s := range []*storeSide{&r.always, &r.everysec, &r.edgemc} {
			*s = storeSide{math.NaN(), math.NaN(), math.NaN()}
		}
		var cur *storeSide
		for i, name := range header[1:] {
			v, err := strconv.ParseFloat(f[i+1], 64)
			if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
				return nil, fmt.Errorf("bench: redisbench row %q", line)
			}
			switch {
			case strings.HasSuffix(name, "always/s"):
				cur = &r.always
			case strings.HasSuffix(name, "everysec/s"):
				cur = &r.everysec
			case name == "edgemc/s":
				cur = &r.edgemc
			case name == "p99" && cur != nil:
				cur.p99 = v
				continue
			case name == "p99.9 always":
				r.always.p999 = v
				continue
			case name == "p99.9 everysec":
				r.everysec.p999 = v
				continue
			case name == "p99.9 edgemc":
				r.edgemc.p999 = v
				continue
			default:
				cur = nil
				continue
			}
			cur.rate = v
		}
		if math.IsNaN(r.always.rate) || math.IsNaN(r.edgemc.rate) {
			return nil, fmt.Errorf("bench: redisbench header %q has no Redis always or edgemc column", header)
		}
		tables[title] = append(tables[title], r)
	}
	if len(tables[tableFenced]) == 0 {
		return nil, errors.New("bench: no fenced-write table in redisbench output")
	}
	return tables, nil
}

// verdict judges a target on a ratio or figure that may be noisy.
func verdict(target string, ok, trusted bool) string {
	switch {
	case !trusted:
		return target + ": noisy"
	case ok:
		return target + ": met"
	}
	return target + ": **missed**"
}

// judge says whether a figure meets its target: by its median when its
// spread is narrow, otherwise only when every run met it or every run
// missed it.
func judge(target string, s spread, ok func(float64) bool) string {
	if !s.noisy() {
		return verdict(target, ok(s.median()), true)
	}
	all, none := len(s) > 0, true
	for _, v := range s {
		switch {
		case math.IsNaN(v):
			all = false
		case ok(v):
			none = false
		default:
			all = false
		}
	}
	switch {
	case all:
		return target + ": met in every run"
	case none:
		return target + ": **missed** in every run"
	}
	return verdict(target, false, false)
}

func below(limit float64) func(float64) bool   { return func(v float64) bool { return v < limit } }
func atMost(limit float64) func(float64) bool  { return func(v float64) bool { return v <= limit } }
func atLeast(limit float64) func(float64) bool { return func(v float64) bool { return v >= limit } }

// count writes n with thousands separators.
func count(n int) string { return groupThousands(strconv.Itoa(n)) }

// table writes a Markdown table.
type table struct {
	w    io.Writer
	cols int
}

func newTable(w io.Writer, header ...string) *table {
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat("---|", len(header)))
	return &table{w: w, cols: len(header)}
}

func (t *table) row(cells ...string) {
	for len(cells) < t.cols {
		cells = append(cells, "")
	}
	fmt.Fprintf(t.w, "| %s |\n", strings.Join(cells, " | "))
}

// write prints the figures as Markdown.
func (r results) write(w io.Writer, o options) {
	fmt.Fprintf(w, "\n## Performance on this machine\n\n")
	fmt.Fprintf(w, "%d cores (%s), %s/%s, %s, %s; `go run ./cmd/edgemc/internal/bench %s` (%.0f min).\n",
		runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version(), r.started.UTC().Format("2006-01-02"),
		r.command, time.Since(r.started).Minutes())
	fmt.Fprintf(w, "Every figure is the median (min–max) of %d runs; the runs of edgemc and of its floor are interleaved, each on a fresh server process measured from /proc, with the load generator (`edgemc loadgen`) in its own process on the same cores, everything on 127.0.0.1. ", o.reps)
	fmt.Fprintf(w, "A ratio is printed only when neither side's min–max spans more than %.0f %% of its median (\"noisy\" otherwise). ", 100*noiseLimit)
	fmt.Fprintf(w, "\"Machine\" is the worst seen over a figure's runs: CPU steal, CPU busy with work other than the processes measured (%% of all cores) and the 1-minute load average. ")
	if o.timerSlack > 0 {
		fmt.Fprintf(w, "The servers (edgemc and the floors) run with a timer slack of %g ms, as the systemd unit sets (`TimerSlackNSec=`).\n", float64(o.timerSlack)/float64(time.Millisecond))
	} else {
		fmt.Fprintf(w, "The servers run with the kernel's default timer slack.\n")
	}
	fmt.Fprintf(w, "\nThe floor is a bare webtransport-go server with quic-go's defaults that makes the same deliveries as edgemc without its rules (`webtransport/wtbench`): it echoes the join, sends a small fixed frame to every other session of the join's meeting, relays later frames to the others of the meeting, and writes through a queue per session drained by one writer goroutine each.\n")

	if len(r.joins) > 0 {
		r.writeJoins(w, o)
	}
	if len(r.idle) > 0 {
		r.writeIdle(w, o)
	}
	if len(r.fanout) > 0 {
		r.writeFanout(w, o)
	}
	for _, n := range o.many {
		if len(r.many[n]) > 0 {
			r.writeMany(w, o, n, r.many[n])
		}
	}
	if len(r.store) > 0 {
		r.writeStore(w, o)
	}
	r.writeAppliance(w, o)
}

func (r results) writeJoins(w io.Writer, o options) {
	e, f := r.joins[edgemcTarget], r.joins[floorTarget]
	fmt.Fprintf(w, "\n### Joins\n\n")
	fmt.Fprintf(w, "Dial + WebTransport session + one bidirectional stream + join request + first answer; sessions stay joined, 10 per meeting, so each join also delivers a ParticipantJoined (edgemc) or a small frame (floor) to up to 9 others.\n\n")
	t := newTable(w, "figure", "edgemc", "floor", "edgemc ÷ floor", "target", "machine")
	cpu := func(j joinRun) float64 { return ms(j.cpuPerJoin) }
	jps := func(j joinRun) float64 { return j.capacity.JoinsPerSecond }
	capM := func(js []joinRun) machines { return collectM(js, func(j joinRun) machine { return j.capM }) }
	rateM := func(js []joinRun) machines { return collectM(js, func(j joinRun) machine { return j.rateM }) }
	both := append(slices.Clone(e), f...)

	ec, fc := collect(e, cpu), collect(f, cpu)
	rs, rv, ok := ratio(ec, fc)
	t.row("server CPU per join ("+count(o.capSessions)+" joins)", ec.format(2, "ms"), fc.format(2, "ms"), rs, verdict("≤ 1.2", rv <= 1.2, ok), capM(both).String())
	ej, fj := collect(e, jps), collect(f, jps)
	rs, rv, ok = ratio(ej, fj)
	t.row(fmt.Sprintf("joins/s, %d concurrent joins", o.capWorkers), ej.format(0, ""), fj.format(0, ""), rs, verdict("≥ 0.85", rv >= 0.85, ok), "")
	for _, q := range []struct {
		name string
		f    func(joinRun) float64
	}{
		{"p50", func(j joinRun) float64 { return j.rate.JoinLatency.P50 }},
		{"p99", func(j joinRun) float64 { return j.rate.JoinLatency.P99 }},
		{"p999", func(j joinRun) float64 { return j.rate.JoinLatency.P999 }},
	} {
		es, fs := collect(e, q.f), collect(f, q.f)
		rs, _, _ := ratio(es, fs)
		target, m := "", ""
		if q.name == "p99" {
			target = judge("< 50 ms", es, below(50))
		}
		if q.name == "p50" {
			m = rateM(both).String()
		}
		t.row(fmt.Sprintf("join latency at %.0f joins/s (%s joins), %s", o.joinRate, count(o.joinSessions), q.name), es.format(1, "ms"), fs.format(1, "ms"), rs, target, m)
	}
	achieved := func(j joinRun) float64 { return j.rate.JoinsPerSecond }
	t.row("joins/s achieved at that rate", collect(e, achieved).format(0, ""), collect(f, achieved).format(0, ""))
	fail := func(j joinRun) float64 { return float64(failures(j.rate) + failures(j.capacity)) }
	t.row("failed joins", collect(e, fail).format(0, ""), collect(f, fail).format(0, ""))
}

func collectM[T any](xs []T, f func(T) machine) machines {
	out := make(machines, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

func (r results) writeIdle(w io.Writer, o options) {
	fmt.Fprintf(w, "\n### Idle sessions held: server memory\n\n")
	fmt.Fprintf(w, "RSS growth from the started server to N joined idle sessions (10 per meeting), %v after the last join, divided by N; then the server's CPU over %v of idle. \"floor, edgemc's QUIC\" is the floor with edgemc's QUIC limits and keep-alives (`webtransport.SignalingQUICConfig`); the floor with quic-go's defaults sends no keep-alives of its own (its clients ping every 15 s, as a browser does).\n\n", o.settle, idleCPUWindow)
	t := newTable(w, "sessions", "edgemc per session", "floor per session", "floor, edgemc's QUIC", "edgemc − floor", "target", "edgemc RSS held", "idle CPU, % of one core: edgemc / floor / floor, edgemc's QUIC", "machine")
	per := func(f idleRun) float64 { return f.perSessionKiB }
	for _, n := range o.idleSessions {
		e, f, q := r.idle[n][edgemcTarget], r.idle[n][floorTarget], r.idle[n][floorQUICTarget]
		es, fs, qs := collect(e, per), collect(f, per), collect(q, per)
		diff, trusted := "noisy", !es.noisy() && !fs.noisy()
		d := es.median() - fs.median()
		if trusted {
			diff = fmt.Sprintf("%+.1f KiB", d)
		}
		target := ""
		if n >= 5000 {
			target = verdict("≤ +16 KiB", d <= 16, trusted)
		}
		held := collect(e, func(f idleRun) float64 { return float64(f.heldKiB) / 1024 })
		all := append(append(slices.Clone(e), f...), q...)
		cpu := func(f idleRun) float64 { return pct(f.idleCPU, idleCPUWindow) }
		t.row(count(n), es.format(1, "KiB"), fs.format(1, "KiB"), qs.format(1, "KiB"), diff, target, held.format(1, "MiB"),
			collect(e, cpu).format(2, "")+" / "+collect(f, cpu).format(2, "")+" / "+collect(q, cpu).format(2, ""),
			collectM(all, func(f idleRun) machine { return f.m }).String())
	}
}

func (r results) writeFanout(w io.Writer, o options) {
	fmt.Fprintf(w, "\n### Host-mute fan-out in one meeting (%d mutes each, the first %v after the last join)\n\n", o.mutes, o.settle)
	fmt.Fprintf(w, "From the host's send until the last of N participants has the update (edgemc: HostMuteRequest → durable write → ParticipantMuteUpdate to everyone; floor: the frame relayed to every other session). edgemc runs with its per-session message budget lifted (`--session-message-rate`/`--session-message-burst`), since the host sends faster than a client may.\n\n")
	t := newTable(w, "participants", "edgemc p50 / p99", "floor p50 / p99", "edgemc ÷ floor (p99)", "server CPU per delivery, edgemc / floor", "target", "machine")
	for _, n := range o.fanout {
		e, f := r.fanout[n][edgemcTarget], r.fanout[n][floorTarget]
		p50 := func(x fanoutRun) float64 { return x.report.FanOut.P50 }
		p99 := func(x fanoutRun) float64 { return x.report.FanOut.P99 }
		cpu := func(x fanoutRun) float64 { return float64(x.cpuPerDelivered.Nanoseconds()) / 1e3 }
		e99, f99 := collect(e, p99), collect(f, p99)
		rs, _, _ := ratio(e99, f99)
		target := ""
		if n >= 1000 {
			target = judge("p99 < 50 ms", e99, below(50))
		}
		t.row(count(n), collect(e, p50).format(1, "")+" / "+e99.format(1, "ms"), collect(f, p50).format(1, "")+" / "+f99.format(1, "ms"), rs,
			collect(e, cpu).format(0, "")+" / "+collect(f, cpu).format(0, "µs"), target,
			collectM(append(slices.Clone(e), f...), func(x fanoutRun) machine { return x.m }).String())
		fails := collect(append(slices.Clone(e), f...), func(x fanoutRun) float64 { return float64(failures(x.report)) })
		if fails.max() > 0 {
			t.row("", "failures in some runs: up to "+fails.format(0, "")+" joins or mutes")
		}
	}
}

func (r results) writeMany(w io.Writer, o options, n int, m []bigRun) {
	fmt.Fprintf(w, "\n### %s sessions on one edgemc\n\n", count(n))
	fmt.Fprintf(w, "%s sessions joined in %s meetings of 10 (default `max-participants`; `--max-meetings=%d`, since at 1,000 meetings the default sheds assignments from 85 %%), 64 joins in flight; the message budget lifted for the host-mutes. ",
		count(n), count(max(1, n/10)), 2*max(1, n/10))
	fmt.Fprintf(w, "Then %v of idle (keep-alive PINGs every 7.5 s), 20 host-mutes in one meeting while the others idle, and two restarts on the same address and data directory: SIGTERM (what `systemctl restart` sends: a drain that closes every session with close code 2, then a new process) and SIGKILL (a crash: clients notice at their QUIC idle timeout, 15 s after the last packet they received). ", o.bigIdle)
	fmt.Fprintf(w, "After each, every client reconnects with its binding (backoff from 100 ms doubling to 2 s, jittered; 64 handshakes in flight); a client refused for good (its meeting ended when every participant's grace ran out) stops trying.\n\n")
	t := newTable(w, "figure", "value", "target", "machine")
	joined := collect(m, func(b bigRun) float64 { return float64(b.joined) })
	t.row("sessions joined", joined.format(0, ""), "", collectM(m, func(b bigRun) machine { return b.joinM }).String())
	t.row("joins/s (64 in flight)", collect(m, func(b bigRun) float64 { return float64(b.joined) / b.joinTime.Seconds() }).format(0, ""))
	t.row("server CPU per join", collect(m, func(b bigRun) float64 { return ms(b.cpuPerJoin) }).format(2, "ms"))
	rss := collect(m, func(b bigRun) float64 { return float64(b.heldKiB) / 1024 })
	t.row("server RSS held", rss.format(0, "MiB"))
	t.row("RSS per session (growth from start ÷ sessions)", collect(m, func(b bigRun) float64 { return float64(b.heldKiB-b.baseKiB) / float64(max(1, b.joined)) }).format(1, "KiB"))
	idle := collect(m, func(b bigRun) float64 { return pct(b.idleCPU, b.idleWindow) })
	t.row(fmt.Sprintf("server CPU while idle (%v window)", o.bigIdle), idle.format(2, "% of one core"), judge("< 5 %", idle, below(5)),
		collectM(m, func(b bigRun) machine { return b.idleM }).String())
	t.row("host-mute reaching one meeting of 10 while the others idle, p50", collect(m, func(b bigRun) float64 { return b.mute.P50 }).format(1, "ms"))
	t.row("the same, p99 (20 mutes per run)", collect(m, func(b bigRun) float64 { return b.mute.P99 }).format(1, "ms"))
	for i, how := range restartSignals {
		var rs []restartRun
		for _, b := range m {
			if i < len(b.restarts) {
				rs = append(rs, b.restarts[i])
			}
		}
		if len(rs) == 0 {
			continue
		}
		back := collect(rs, func(x restartRun) float64 {
			if x.incomplete {
				return math.NaN()
			}
			return x.took.Seconds()
		})
		seen := ""
		if i == 0 {
			seen = collectM(m, func(b bigRun) machine { return b.restartM }).String()
		}
		t.row(how+": signal until every session is back", back.format(1, "s"), judge("≤ 15 s", back, atMost(15)), seen)
		t.row(how+": signal until the old process had exited / the new one was ready", collect(rs, func(x restartRun) float64 { return x.stopped.Seconds() }).format(2, "s")+" / "+
			collect(rs, func(x restartRun) float64 { return x.down.Seconds() }).format(2, "s"))
		t.row(how+": server CPU, old process after the signal + new process until all back",
			collect(rs, func(x restartRun) float64 { return x.oldCPU.Seconds() }).format(2, "s")+" + "+collect(rs, func(x restartRun) float64 { return x.newCPU.Seconds() }).format(2, "s"))
		t.row(how+": sessions back, and of them with their participant", collect(rs, func(x restartRun) float64 { return float64(x.back) }).format(0, "")+", "+
			collect(rs, func(x restartRun) float64 { return float64(x.recovered) }).format(0, "")+" of "+count(n))
	}
	t.row("load generator CPU over the whole run", collect(m, func(b bigRun) float64 { return b.loadgenCPU.Seconds() }).format(0, "s"))
	sum := map[string]int{}
	for _, b := range m {
		for k, v := range b.rejoinFailures {
			sum[k] += v
		}
	}
	var fails []string
	for k, v := range sum {
		fails = append(fails, fmt.Sprintf("%s %d", k, v))
	}
	if len(fails) > 0 {
		slices.Sort(fails)
		t.row("failed reconnection attempts, all runs (retried unless refused for good)", strings.Join(fails, ", "))
	}
}

func (r results) writeStore(w io.Writer, o options) {
	fmt.Fprintf(w, "\n### Fenced durable writes: edgemc store vs Redis 7 + Lua (`store/internal/redisbench`, %v per figure)\n\n", o.storeDuration)
	var errs []string
	for _, s := range r.store {
		if s.err != nil {
			errs = append(errs, s.err.Error())
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "Runs that failed: %s\n\n", strings.Join(errs, "; "))
	}
	for _, hogged := range []bool{false, true} {
		var runs []storeRun
		for _, s := range r.store {
			if s.hog == hogged && s.err == nil {
				runs = append(runs, s)
			}
		}
		if len(runs) == 0 {
			continue
		}
		what := "alone"
		if hogged {
			what = "beside a CPU hog (two busy processes, one per core)"
		}
		m := collectM(runs, func(s storeRun) machine { return s.m })
		for _, title := range []string{tableFenced, tableNonce} {
			fmt.Fprintf(w, "\n%s, %s (%d runs; machine: %s):\n\n", title, what, len(runs), m)
			head := []string{"writers", "edgemc/s", "p99", "p99.9", "Redis always/s", "p99", "p99.9", "edgemc ÷ always"}
			if title == tableFenced {
				head = append(head, "target")
			}
			t := newTable(w, head...)
			for i, row := range runs[0].tables[title] {
				get := func(f func(storeRow) float64) spread {
					return collect(runs, func(s storeRun) float64 {
						if i >= len(s.tables[title]) {
							return math.NaN()
						}
						return f(s.tables[title][i])
					})
				}
				er, ar := get(func(x storeRow) float64 { return x.edgemc.rate }), get(func(x storeRow) float64 { return x.always.rate })
				rs, rv, ok := ratio(er, ar)
				ms := func(f func(storeRow) float64) string { return get(f).format(2, "ms") }
				cells := []string{strconv.Itoa(row.writers),
					er.format(0, ""), ms(func(x storeRow) float64 { return x.edgemc.p99 }), ms(func(x storeRow) float64 { return x.edgemc.p999 }),
					ar.format(0, ""), ms(func(x storeRow) float64 { return x.always.p99 }), ms(func(x storeRow) float64 { return x.always.p999 }),
					rs}
				if title == tableFenced {
					v := verdict("≥ 1.5", rv >= 1.5, ok)
					if !ok { // each run's edgemc against Redis in the same run
						v = judge("≥ 1.5", get(func(x storeRow) float64 { return x.edgemc.rate / x.always.rate }), atLeast(1.5))
					}
					// each run's p99.9 against Redis's in the same run
					v += "; p99.9 " + judge("≤ Redis's", get(func(x storeRow) float64 { return x.edgemc.p999 / x.always.p999 }), atMost(1))
					cells = append(cells, v)
				}
				t.row(cells...)
			}
		}
	}
}

func (r results) writeAppliance(w io.Writer, o options) {
	fi, err := os.Stat(r.binary)
	if !o.sections["cost"] || len(r.cost) == 0 && err != nil {
		return
	}
	fmt.Fprintf(w, "\n### Idle appliance\n\n")
	t := newTable(w, "figure", "value", "machine")
	if len(r.cost) > 0 {
		cpu := collect(r.cost, func(c costRun) float64 { return pct(c.cpu, c.window) })
		beats := collect(r.cost, func(c costRun) float64 {
			if c.heartbeats {
				return 1
			}
			return 0
		})
		t.row(fmt.Sprintf("CPU while idle, registered with the development GC (heartbeats every 10 s / 30 s, seen in %.0f of %d windows of %v)", beats.median()*float64(len(beats)), len(beats), o.idle),
			cpu.format(3, "% of one core"), collectM(r.cost, func(c costRun) machine { return c.m }).String())
		t.row("RSS while idle", collect(r.cost, func(c costRun) float64 { return float64(c.rssKiB) / 1024 }).format(1, "MiB"))
	}
	if err == nil {
		t.row("binary size (`make build`, static, stripped)", fmt.Sprintf("%.1f MiB", float64(fi.Size())/(1<<20)))
	}
	if len(r.readyTimes) > 0 {
		ready := collect(r.readyTimes, func(d time.Duration) float64 { return ms(d) })
		t.row(fmt.Sprintf("start to ready (exec to the ready log line; %d starts)", len(ready)), ready.format(0, "ms"))
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
