package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const redisbenchSample = `edgemc store (bbolt, group commit) vs Redis server v=7.0.15
same workload, same disk, 3s per figure; p99 in ms; every write durable unless everysec

fenced write (generation check + roster write)
writers  redis always/s   p99  redis everysec/s   p99  edgemc/s    p99  edgemc÷always  edgemc÷everysec
      1            3100  0.40              6800  0.20      3300   0.50           1.06             0.49
     64           34000  3.70             47000  2.00     36000   3.10           1.06             0.77

one-time nonce (Redis SET NX EX)
writers  redis always/s   p99  redis everysec/s   p99  edgemc/s    p99  edgemc÷always  edgemc÷everysec
      1            3000  0.40              7000  0.20      3200   0.50           1.07             0.46
`

// redisbenchWith999 is the table as store/internal/redisbench prints it
// today: p99.9 columns at the end, then the checkpoint table.
const redisbenchWith999 = `fenced write (generation check + roster write)
writers  redis always/s   p99  redis everysec/s   p99  edgemc/s   p99  edgemc÷always  edgemc÷everysec  p99.9 always  p99.9 everysec  p99.9 edgemc
      8           11000  0.80             43000  0.30     17000  0.60           1.55             0.40          1.90            0.90          4.10

edgemc writes that overlapped a checkpoint vs the others (ms)
writers  checkpoints  checkpoint p50   max  writes during  done within   p99  p99.9  writes outside   p99  p99.9
      8            2            3.10  4.00             50           50  1.20   1.30           33000  0.60   1.00
`

func TestParseRedisbench(t *testing.T) {
	tables, err := parseRedisbench(redisbenchSample)
	if err != nil {
		t.Fatal(err)
	}
	nan := math.NaN()
	want := []storeRow{
		{writers: 1, always: storeSide{3100, 0.4, nan}, everysec: storeSide{6800, 0.2, nan}, edgemc: storeSide{3300, 0.5, nan}},
		{writers: 64, always: storeSide{34000, 3.7, nan}, everysec: storeSide{47000, 2, nan}, edgemc: storeSide{36000, 3.1, nan}},
	}
	same := func(a, b storeRow) bool { return fmt.Sprint(a) == fmt.Sprint(b) }
	if rows := tables[tableFenced]; len(rows) != len(want) || !same(rows[0], want[0]) || !same(rows[1], want[1]) {
		t.Errorf("fenced rows %+v, want %+v", rows, want)
	}
	if rows := tables[tableNonce]; len(rows) != 1 || rows[0].edgemc.rate != 3200 {
		t.Errorf("nonce rows %+v", rows)
	}
	tables, err = parseRedisbench(redisbenchWith999)
	if err != nil {
		t.Fatal(err)
	}
	if r := tables[tableFenced][0]; r.always.p999 != 1.9 || r.edgemc.p999 != 4.1 || r.edgemc.p99 != 0.6 || r.everysec.rate != 43000 {
		t.Errorf("row with p99.9 %+v", r)
	}
	for _, bad := range []string{
		"no table here\n",
		"fenced write\n 1 2 x 4 5 6 7\n",
		"fenced write\nwriters  redis always/s   p99  edgemc/s    p99\n 1 2 3\n",
		"fenced write\nwriters  redis always/s   p99  edgemc/s    p99\n 1 2 -3 4 5\n",
		"fenced write\nwriters  nothing/s   p99\n 1 2 3\n",
	} {
		if _, err := parseRedisbench(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseRedisbench(f *testing.F) {
	f.Add(redisbenchSample)
	f.Add(redisbenchWith999)
	f.Add("fenced write\nwriters  redis always/s  edgemc/s\n 8 1 2\n\n")
	f.Add("fenced write\n-1 1 2 3 4 5 6\n")
	f.Fuzz(func(t *testing.T, s string) {
		tables, err := parseRedisbench(s)
		if err == nil && len(tables[tableFenced]) == 0 {
			t.Fatal("no rows and no error")
		}
		for _, rows := range tables {
			for _, r := range rows {
				if r.writers < 1 || !(r.always.rate >= 0) || !(r.edgemc.rate >= 0) {
					t.Fatalf("accepted row %+v", r)
				}
			}
		}
	})
}

const (
	statusSample = "Name:\tedgemc\nVmPeak:\t  20000 kB\nVmRSS:\t   17956 kB\nThreads:\t9\n"
	statSample   = "4242 (edge mc) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 25 0 0 20 0 9 0 100 1000000 4489 18446744073709551615\n"
)

func TestParseProc(t *testing.T) {
	u, err := parseProc(statusSample, statSample)
	if err != nil {
		t.Fatal(err)
	}
	if u.RSSKiB != 17956 || u.CPU != 175*clockTick {
		t.Errorf("%+v", u)
	}
	if _, err := parseProc("Name: x\n", statSample); err == nil {
		t.Error("status without VmRSS accepted")
	}
	// This very process, as the benchmark reads a server.
	self, err := sampleProc(os.Getpid())
	if err != nil || self.RSSKiB <= 0 {
		t.Errorf("own process: %+v, %v", self, err)
	}
}

func FuzzParseProc(f *testing.F) {
	f.Add(statusSample, statSample)
	f.Add("VmRSS: 1 MB\n", "1 (x) S")
	f.Add("VmRSS: 12 kB\n", "1 ((x) y) S 1 2 3 4 5 6 7 8 9 10 -11 12")
	f.Fuzz(func(t *testing.T, status, stat string) {
		u, err := parseProc(status, stat)
		if err == nil && (u.RSSKiB < 0 || u.CPU < 0) {
			t.Fatalf("accepted %+v", u)
		}
	})
}

func TestParseLoadgenLine(t *testing.T) {
	ev, rep, err := parseLoadgenLine([]byte(`{"event":"joined","joined":5,"failed":1}`))
	if err != nil || rep != nil || ev.Name != "joined" || ev.Joined != 5 || ev.Failed != 1 {
		t.Errorf("event: %+v %v %v", ev, rep, err)
	}
	_, rep, err = parseLoadgenLine([]byte(`{"event":"report","report":{"joined":7,"join_latency":{"p99_ms":1.5}}}`))
	if err != nil || rep == nil || rep.Joined != 7 || rep.JoinLatency.P99 != 1.5 {
		t.Errorf("report: %+v %v", rep, err)
	}
	for _, bad := range []string{`{}`, `{"event":"report"}`, `{"event":"joined","report":{}}`, `not json`} {
		if _, _, err := parseLoadgenLine([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func FuzzParseLoadgenLine(f *testing.F) {
	f.Add([]byte(`{"event":"joined","joined":5,"failed":1}`))
	f.Add([]byte(`{"event":"report","report":{"joined":7}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, rep, err := parseLoadgenLine(b)
		if err == nil && ev.Name == "" {
			t.Fatalf("accepted a line without an event: %q", b)
		}
		if err == nil && (rep != nil) != (ev.Name == "report") {
			t.Fatalf("report %v for event %q", rep, ev.Name)
		}
	})
}

func TestSpread(t *testing.T) {
	s := spread{5, 1, 3}
	if s.median() != 3 || s.min() != 1 || s.max() != 5 {
		t.Errorf("median %v min %v max %v", s.median(), s.min(), s.max())
	}
	if m := (spread{4, 1, 3, 2}).median(); m != 2.5 {
		t.Errorf("even median %v", m)
	}
	if !s.noisy() {
		t.Error("a range of 4 around a median of 3 is not noisy")
	}
	quiet := spread{100, 110, 129} // a range of 26 % of the median
	if quiet.noisy() {
		t.Error("a range of 26 % is noisy")
	}
	if !(spread{100, 134, 110}).noisy() {
		t.Error("a range of 31 % is not noisy")
	}
	if !(spread{}).noisy() || !(spread{1, math.NaN()}).noisy() {
		t.Error("no values, or a missing one, can be trusted")
	}
	if r, v, ok := ratio(quiet, spread{50, 55, 52}); !ok || r != "2.12" || v != 110.0/52 {
		t.Errorf("ratio %q %v %v", r, v, ok)
	}
	if r, _, ok := ratio(quiet, s); ok || r != "noisy" {
		t.Errorf("ratio with a noisy side: %q %v", r, ok)
	}
	if got := quiet.format(1, "ms"); got != "110.0 ms (100.0–129.0)" {
		t.Errorf("format %q", got)
	}
	if got := (spread{12345.6}).format(0, ""); got != "12,346" {
		t.Errorf("one value %q", got)
	}
	if got := (spread{}).format(0, ""); got != "—" {
		t.Errorf("no value %q", got)
	}
	if !strings.Contains(verdict("≤ 1.2", false, true), "missed") || verdict("≤ 1.2", true, true) != "≤ 1.2: met" || verdict("x", true, false) != "x: noisy" {
		t.Error("verdict")
	}
	for _, tc := range []struct {
		s    spread
		want string
	}{
		{spread{10, 11, 12}, "< 15: met"},
		{spread{16, 17, 18}, "< 15: **missed**"},
		{spread{5, 10, 14}, "< 15: met in every run"},
		{spread{20, 40, 90}, "< 15: **missed** in every run"},
		{spread{5, 40, 90}, "< 15: noisy"},
		{spread{5, math.NaN(), 6}, "< 15: noisy"},
	} {
		if got := judge("< 15", tc.s, below(15)); got != tc.want {
			t.Errorf("judge %v: %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestIntListAndSections(t *testing.T) {
	if l, err := intList("10, 100,500"); err != nil || len(l) != 3 || l[2] != 500 {
		t.Errorf("%v %v", l, err)
	}
	for _, bad := range []string{"", "0", "x", "1,,2"} {
		if _, err := intList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if s, err := sectionSet("signaling", ""); err != nil || len(s) != 2 || !s["joins"] || !s["fanout"] {
		t.Errorf("signaling suite: %v %v", s, err)
	}
	if s, err := sectionSet("all", "store, many"); err != nil || len(s) != 2 || !s["many"] {
		t.Errorf("chosen sections: %v %v", s, err)
	}
	if _, err := sectionSet("all", "joins,nope"); err == nil {
		t.Error("unknown section accepted")
	}
}

func TestParseCPUTimes(t *testing.T) {
	c, err := parseCPUTimes("cpu  100 5 50 1000 10 1 2 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
	if err != nil || c.busy != 158 || c.steal != 7 || c.total != 1175 {
		t.Errorf("%+v %v", c, err)
	}
	for _, bad := range []string{"", "cpu 1 2 3\n", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3 4 5 6 7 -8\n"} {
		if _, err := parseCPUTimes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if c := readCPUTimes(); c.total <= 0 {
		t.Errorf("this machine's /proc/stat: %+v", c)
	}
}

func FuzzParseCPUTimes(f *testing.F) {
	f.Add("cpu  100 5 50 1000 10 1 2 7 0 0\n")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCPUTimes(s)
		if err == nil && (c.busy < 0 || c.steal < 0 || c.total < c.busy+c.steal) {
			t.Fatalf("accepted %+v", c)
		}
	})
}

func TestParseTimerSlack(t *testing.T) {
	unit := filepath.Join(t.TempDir(), "edgemc.service")
	if err := os.WriteFile(unit, []byte("[Service]\nLimitNOFILE=65536\nTimerSlackNSec=5ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for v, want := range map[string]time.Duration{"unit": 5 * time.Millisecond, "0": 0, "1ms": time.Millisecond} {
		if got, err := parseTimerSlack(v, unit); err != nil || got != want {
			t.Errorf("%s: %v %v, want %v", v, got, err, want)
		}
	}
	for _, bad := range []string{"-1ms", "soon"} {
		if _, err := parseTimerSlack(bad, unit); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parseTimerSlack("unit", filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("a missing unit file accepted")
	}
	// The repository's unit sets one.
	if got, err := parseTimerSlack("unit", "../../../../"+unitFile); err != nil || got <= 0 {
		t.Errorf("packaging's unit: %v %v", got, err)
	}
}

// TestStoreVerdicts: a ratio whose sides are noisy is judged on each run's
// own edgemc ÷ Redis, and so is the p99.9 against Redis's.
func TestStoreVerdicts(t *testing.T) {
	run := func(edgemc, redis, e999, r999 float64) storeRun {
		nan := math.NaN()
		row := storeRow{writers: 8, always: storeSide{redis, 1, r999}, everysec: storeSide{nan, nan, nan}, edgemc: storeSide{edgemc, 1, e999}}
		return storeRun{tables: map[string][]storeRow{tableFenced: {row}, tableNonce: {row}}}
	}
	for _, c := range []struct {
		runs []storeRun
		want string
	}{
		// noisy sides, steady ratios: judged by the ratios' median
		{[]storeRun{run(3000, 1000, 1, 2), run(6000, 2000, 1, 2), run(4000, 1500, 1, 2)}, "≥ 1.5: met; p99.9 ≤ Redis's: met"},
		{[]storeRun{run(3000, 2500, 3, 2), run(6000, 5000, 3, 2), run(4000, 3000, 3, 2)}, "≥ 1.5: **missed**; p99.9 ≤ Redis's: **missed**"},
		// noisy ratios: met or missed only when every run says so
		{[]storeRun{run(3000, 1000, 1, 2), run(6000, 3000, 1, 2), run(4000, 1500, 1, 2)}, "≥ 1.5: met in every run"},
		{[]storeRun{run(3000, 1000, 1, 2), run(6000, 5000, 1, 2), run(4000, 1500, 1, 2)}, "≥ 1.5: noisy"},
		// steady sides: the ratio of the medians
		{[]storeRun{run(3000, 2000, 1, 2), run(3100, 2000, 1, 2), run(3050, 2000, 1, 2)}, "| 1.52 | ≥ 1.5: met; p99.9"},
	} {
		var b strings.Builder
		results{store: c.runs}.writeStore(&b, options{storeDuration: time.Second})
		if !strings.Contains(b.String(), c.want) {
			t.Errorf("want %q in\n%s", c.want, b.String())
		}
	}
}
