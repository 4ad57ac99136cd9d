package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log sink that the summary timer may write to while the
// test reads it.
type lockedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{} // receives after every write
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	select {
	case b.written <- struct{}{}:
	default:
	}
	return n, err
}

func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestRefusalsAreSampled(t *testing.T) {
	buf := &lockedBuffer{written: make(chan struct{}, 1)}
	const first, every = 3, 200 * time.Millisecond
	log := slog.New(newSamplingHandler(slog.NewJSONHandler(buf, nil), first, every)).With("component", "grpc")
	for range 1000 {
		log.Warn("refused gRPC call", RefusedKey, "missing", "peer", "192.0.2.1:1234")
		log.Warn("refused gRPC call", RefusedKey, "expired")
		log.Info("meeting assigned") // not a refusal: never sampled
	}
	count := func(msg, reason string) int {
		n := 0
		for _, l := range buf.lines(t) {
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
	summaries := func() map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, l := range buf.lines(t) {
			if l["msg"] == "refused gRPC call: suppressed similar lines" {
				out[l[RefusedKey].(string)] = l
			}
		}
		return out
	}
	timeout := time.After(10 * time.Second)
	for len(summaries()) < 2 {
		select {
		case <-buf.written:
		case <-timeout:
			t.Fatalf("no summaries after the interval; log:\n%s", buf.buf.String())
		}
	}
	for reason, l := range summaries() {
		if l["suppressed"] != float64(1000-first) || l["component"] != "grpc" || l["level"] != "WARN" {
			t.Errorf("summary for %s: %v, want %d suppressed, the logger's attributes and level", reason, l, 1000-first)
		}
	}

	// The next interval writes the first ones again.
	log.Warn("refused gRPC call", RefusedKey, "missing")
	if n := count("refused gRPC call", "missing"); n != first+1 {
		t.Errorf("after the interval: %d lines for reason missing, want %d", n, first+1)
	}
}

func TestNewLoggerSamplesRefusals(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger("json", "info", &buf, false)
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
