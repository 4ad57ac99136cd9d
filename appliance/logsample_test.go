package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// jsonLines decodes the JSON log lines in buf.
func jsonLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// fakeTimers is a clock for the sampler that moves only when told, and
// runs the timers due when it does.
type fakeTimers struct {
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	f  func()
}

func (c *fakeTimers) afterFunc(d time.Duration, f func()) {
	c.timers = append(c.timers, fakeTimer{c.now.Add(d), f})
}

func (c *fakeTimers) advance(d time.Duration) {
	c.now = c.now.Add(d)
	var later []fakeTimer
	for _, tm := range c.timers {
		if tm.at.After(c.now) {
			later = append(later, tm)
		} else {
			tm.f()
		}
	}
	c.timers = later
}

func TestRefusalsAreSampled(t *testing.T) {
	var buf bytes.Buffer
	const first, every = 3, 10 * time.Second
	h := newSamplingHandler(slog.NewJSONHandler(&buf, nil), first, every)
	clock := &fakeTimers{now: time.Unix(1_800_000_000, 0)}
	h.s.now, h.s.afterFunc = func() time.Time { return clock.now }, clock.afterFunc
	log := slog.New(h).With("component", "grpc")
	for range 1000 {
		log.Warn("refused gRPC call", RefusedKey, "missing", "peer", "192.0.2.1:1234")
		log.Warn("refused gRPC call", RefusedKey, "expired")
		log.Info("meeting assigned") // not a refusal: never sampled
	}
	count := func(msg, reason string) int {
		n := 0
		for _, l := range jsonLines(t, &buf) {
			if l["msg"] == msg && (reason == "" || l[RefusedKey] == reason) {
				n++
			}
		}
		return n
	}
	if n := count("refused gRPC call", "missing"); n != first {
		t.Errorf("%d lines for reason missing, want the first %d", n, first)
	}
	if n := count("refused gRPC call", "expired"); n != first {
		t.Errorf("%d lines for reason expired, want the first %d", n, first)
	}
	if n := count("meeting assigned", ""); n != 1000 {
		t.Errorf("%d unmarked lines, want every one of 1000", n)
	}

	// When the interval ends, one summary per reason gives the count.
	clock.advance(every - time.Millisecond)
	if n := count("refused gRPC call: suppressed similar lines", ""); n != 0 {
		t.Fatalf("%d summaries before the interval ended", n)
	}
	clock.advance(time.Millisecond)
	summaries := 0
	for _, l := range jsonLines(t, &buf) {
		if l["msg"] != "refused gRPC call: suppressed similar lines" {
			continue
		}
		summaries++
		if l["suppressed"] != float64(1000-first) || l["component"] != "grpc" || l["level"] != "WARN" {
			t.Errorf("summary %v, want %d suppressed, the logger's attributes and level", l, 1000-first)
		}
	}
	if summaries != 2 {
		t.Fatalf("%d summaries, want one per reason", summaries)
	}

	// The next interval writes the first ones again.
	log.Warn("refused gRPC call", RefusedKey, "missing")
	if n := count("refused gRPC call", "missing"); n != first+1 {
		t.Errorf("after the interval: %d lines for reason missing, want %d", n, first+1)
	}
	// An interval with no more than the first ones ends without a summary.
	clock.advance(2 * every)
	log.Warn("refused gRPC call", RefusedKey, "missing")
	if n := count("refused gRPC call: suppressed similar lines", ""); n != 2 {
		t.Errorf("%d summaries, want still 2", n)
	}
}

func TestNewLoggerSamplesRefusals(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger("json", "info", &buf, OutputPipe)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		log.InfoContext(context.Background(), "join refused", RefusedKey, "invalid_token")
	}
	if n := strings.Count(buf.String(), "join refused"); n != logSampleFirst {
		t.Fatalf("%d of 100 refusals written, want %d", n, logSampleFirst)
	}
}
