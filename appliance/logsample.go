package appliance

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// RefusedKey marks a log record as one refusal of many that a peer can
// cause at will (a refused gRPC call, join, session or connection, a session
// closed for its message budget): its value names the reason. The logger
// NewLogger builds samples such records so that a flood of refusals cannot
// flood the log; every other record is written as it is. Components outside
// this package use the same key by convention ("refused").
const RefusedKey = "refused"

// Sampling of refusals: per message and reason, the first logSampleFirst
// records of each logSampleEvery are written, the rest are counted and
// reported in one summary line when the interval ends.
const (
	logSampleFirst = 10
	logSampleEvery = 10 * time.Second
	// logSampleKeys bounds the (message, reason) pairs tracked at once;
	// past it, new pairs share one bucket.
	logSampleKeys = 1024
)

// sampleKey identifies a kind of refusal.
type sampleKey struct {
	msg, reason string
	level       slog.Level
}

// sampleWindow counts one kind of refusal in its current interval.
type sampleWindow struct {
	start      time.Time
	written    int
	suppressed int
	// out writes the summary: the handler (with its attributes) that
	// suppressed the first record.
	out slog.Handler
}

// sampler is the state shared by a sampling handler and the handlers
// derived from it with WithAttrs and WithGroup.
type sampler struct {
	first int
	every time.Duration
	// now and afterFunc are time.Now and time.AfterFunc but in tests.
	now       func() time.Time
	afterFunc func(time.Duration, func())

	mu      sync.Mutex
	windows map[sampleKey]*sampleWindow
}

// samplingHandler samples records that carry RefusedKey and passes every
// other record to the handler it wraps.
type samplingHandler struct {
	inner slog.Handler
	s     *sampler
}

func newSamplingHandler(inner slog.Handler, first int, every time.Duration) *samplingHandler {
	return &samplingHandler{inner: inner, s: &sampler{
		first: first, every: every, windows: map[sampleKey]*sampleWindow{},
		now: time.Now, afterFunc: func(d time.Duration, f func()) { time.AfterFunc(d, f) },
	}}
}

func (h *samplingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *samplingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &samplingHandler{inner: h.inner.WithAttrs(as), s: h.s}
}

func (h *samplingHandler) WithGroup(name string) slog.Handler {
	return &samplingHandler{inner: h.inner.WithGroup(name), s: h.s}
}

func (h *samplingHandler) Handle(ctx context.Context, r slog.Record) error {
	reason, marked := refusal(r)
	if marked && !h.s.admit(h.inner, r, reason) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

// refusal returns the value of the record's RefusedKey attribute.
func refusal(r slog.Record) (reason string, ok bool) {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == RefusedKey {
			reason, ok = a.Value.String(), true
			return false
		}
		return true
	})
	return reason, ok
}

// admit reports whether r is to be written. The first record suppressed in
// an interval arms a timer that writes the summary when it ends.
func (s *sampler) admit(out slog.Handler, r slog.Record, reason string) bool {
	k := sampleKey{msg: r.Message, reason: reason, level: r.Level}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.windows[k]
	if w == nil {
		if len(s.windows) >= logSampleKeys {
			k = sampleKey{msg: "refusals of other kinds", reason: "other", level: r.Level}
			w = s.windows[k]
		}
		if w == nil {
			w = &sampleWindow{start: now}
			s.windows[k] = w
		}
	}
	if w.suppressed == 0 && now.Sub(w.start) >= s.every {
		w.start, w.written = now, 0 // a new interval
	}
	if w.written < s.first {
		w.written++
		return true
	}
	if w.suppressed == 0 {
		w.out = out
		s.afterFunc(w.start.Add(s.every).Sub(now), func() { s.summarize(k, w) })
	}
	w.suppressed++
	return false
}

// summarize ends w's interval with one line saying how many records of its
// kind were suppressed.
func (s *sampler) summarize(k sampleKey, w *sampleWindow) {
	s.mu.Lock()
	n, out := w.suppressed, w.out
	delete(s.windows, k)
	s.mu.Unlock()
	r := slog.NewRecord(s.now(), k.level, k.msg+": suppressed similar lines", 0)
	r.AddAttrs(slog.String(RefusedKey, k.reason), slog.Int("suppressed", n), slog.String("interval", s.every.String()))
	_ = out.Handle(context.Background(), r)
}
