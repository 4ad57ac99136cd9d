package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// noiseLimit is the widest min–max range, as a share of the median, for
// which a ratio of two figures is printed; wider spreads say "noisy".
const noiseLimit = 0.30

// spread is one figure's values over the repetitions of a run.
type spread []float64

func (s spread) sorted() []float64 {
	v := slices.Clone(s)
	slices.Sort(v)
	return v
}

func (s spread) median() float64 {
	v := s.sorted()
	switch {
	case len(v) == 0:
		return math.NaN()
	case len(v)%2 == 1:
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (s spread) min() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	return slices.Min(s)
}

func (s spread) max() float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	return slices.Max(s)
}

// noisy reports whether the figure cannot be trusted for a ratio: no value,
// or a min–max range wider than noiseLimit of the median.
func (s spread) noisy() bool {
	if len(s) == 0 || slices.ContainsFunc(s, math.IsNaN) {
		return true
	}
	return s.max()-s.min() > noiseLimit*math.Abs(s.median())
}

// format prints "median (min–max)" with prec decimals and unit (which may
// be empty); a single value prints alone.
func (s spread) format(prec int, unit string) string {
	if len(s) == 0 {
		return "—"
	}
	num := func(v float64) string { return groupThousands(strconv.FormatFloat(v, 'f', prec, 64)) }
	u := ""
	if unit != "" {
		u = " " + unit
	}
	if len(s) == 1 || s.min() == s.max() {
		return num(s.median()) + u
	}
	return fmt.Sprintf("%s%s (%s–%s)", num(s.median()), u, num(s.min()), num(s.max()))
}

// groupThousands writes 12345.6 as 12,345.6.
func groupThousands(n string) string {
	sign := ""
	if strings.HasPrefix(n, "-") {
		sign, n = "-", n[1:]
	}
	intPart, frac, hasFrac := strings.Cut(n, ".")
	if len(intPart) <= 3 {
		return sign + n
	}
	var b strings.Builder
	for i, r := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if hasFrac {
		b.WriteString("." + frac)
	}
	return sign + b.String()
}

// ratio is a ÷ b of the medians, or "noisy" when either side's spread is
// too wide to say.
func ratio(a, b spread) (string, float64, bool) {
	if a.noisy() || b.noisy() || b.median() == 0 {
		return "noisy", math.NaN(), false
	}
	r := a.median() / b.median()
	return strconv.FormatFloat(r, 'f', 2, 64), r, true
}

// collect picks one value from each of xs.
func collect[T any](xs []T, f func(T) float64) spread {
	out := make(spread, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

// cpuTimes are the machine-wide CPU counters of /proc/stat, in ticks.
type cpuTimes struct {
	busy, steal, total int64
}

// readCPUTimes reads the aggregate "cpu" line of /proc/stat.
func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	t, _ := parseCPUTimes(string(b))
	return t
}

// parseCPUTimes decodes the "cpu" line: user nice system idle iowait irq
// softirq steal (guest time is already counted in user).
func parseCPUTimes(stat string) (cpuTimes, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, errors.New("bench: no cpu line in /proc/stat")
	}
	var v [8]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil || n < 0 || n > maxTicks/16 {
			return cpuTimes{}, fmt.Errorf("bench: /proc/stat field %q", f[i+1])
		}
		v[i] = n
	}
	user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
	busy := user + nice + system + irq + softirq
	return cpuTimes{busy: busy, steal: steal, total: busy + idle + iowait + steal}, nil
}

// loadAverage is the 1-minute load average of /proc/loadavg.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machine is what the rest of the machine did while a run was measured.
type machine struct {
	steal  float64 // % of CPU time the hypervisor kept from this VM
	others float64 // % of all cores busy with processes not under test
	load   float64 // highest 1-minute load average seen (start, end)
}

// window measures the machine around one run.
type window struct {
	start time.Time
	cpu   cpuTimes
	self  time.Duration
	load  float64
}

func openWindow() window {
	return window{start: time.Now(), cpu: readCPUTimes(), self: selfCPU(), load: loadAverage()}
}

// close ends the window; own is the CPU of the processes under test (the
// servers and the load generator) over it.
func (w window) close(own time.Duration) machine {
	c := readCPUTimes()
	m := machine{load: max(w.load, loadAverage())}
	total := c.total - w.cpu.total
	if total <= 0 {
		return m
	}
	m.steal = 100 * float64(c.steal-w.cpu.steal) / float64(total)
	ours := own + selfCPU() - w.self
	busy := time.Duration(c.busy-w.cpu.busy) * clockTick
	m.others = max(0, 100*(busy-ours).Seconds()/(time.Since(w.start).Seconds()*float64(runtime.NumCPU())))
	return m
}

// machines sums up the runs of one figure: the worst of each.
type machines []machine

func (ms machines) String() string {
	if len(ms) == 0 {
		return ""
	}
	var w machine
	for _, m := range ms {
		w.steal, w.others, w.load = max(w.steal, m.steal), max(w.others, m.others), max(w.load, m.load)
	}
	return fmt.Sprintf("steal ≤ %.1f %%, other work ≤ %.0f %%, load ≤ %.1f", w.steal, w.others, w.load)
}
