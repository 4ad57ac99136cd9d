package main

import (
	"os"
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

func TestParseRedisbench(t *testing.T) {
	rows, err := parseRedisbench(redisbenchSample)
	if err != nil {
		t.Fatal(err)
	}
	want := []storeRow{
		{writers: 1, always: 3100, alwaysP99: 0.4, everysec: 6800, everysecP99: 0.2, edgemc: 3300, edgemcP99: 0.5},
		{writers: 64, always: 34000, alwaysP99: 3.7, everysec: 47000, everysecP99: 2, edgemc: 36000, edgemcP99: 3.1},
	}
	if len(rows) != len(want) || rows[0] != want[0] || rows[1] != want[1] {
		t.Errorf("rows %+v, want %+v", rows, want)
	}
	if _, err := parseRedisbench("no table here\n"); err == nil {
		t.Error("output without a table accepted")
	}
	if _, err := parseRedisbench("fenced write\n 1 2 x 4 5 6 7\n"); err == nil {
		t.Error("bad number accepted")
	}
}

func FuzzParseRedisbench(f *testing.F) {
	f.Add(redisbenchSample)
	f.Add("fenced write\nwriters\n 8 1 2 3 4 5 6\n\n")
	f.Add("fenced write\n-1 1 2 3 4 5 6\n")
	f.Fuzz(func(t *testing.T, s string) {
		rows, err := parseRedisbench(s)
		if err == nil && len(rows) == 0 {
			t.Fatal("no rows and no error")
		}
		for _, r := range rows {
			if r.writers < 1 || r.always < 0 || r.edgemc < 0 {
				t.Fatalf("accepted row %+v", r)
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

func TestMedianAndIntList(t *testing.T) {
	id := func(d time.Duration) float64 { return float64(d) }
	if m := median([]time.Duration{5, 1, 3}, id); m != 3 {
		t.Errorf("odd median %v", m)
	}
	if m := median([]time.Duration{4, 1, 3, 2}, id); m != 2.5 {
		t.Errorf("even median %v", m)
	}
	if l, err := intList("10, 100,500"); err != nil || len(l) != 3 || l[2] != 500 {
		t.Errorf("%v %v", l, err)
	}
	for _, bad := range []string{"", "0", "x", "1,,2"} {
		if _, err := intList(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if !strings.Contains(verdict(false), "missed") || verdict(true) != "met" {
		t.Error("verdict")
	}
}
