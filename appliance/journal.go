package appliance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/coreos/go-systemd/v22/journal"
)

// journalSend writes one entry with the journal's native protocol
// (journal.Send); tests replace it.
type journalSend func(message string, priority journal.Priority, fields map[string]string) error

// journalHandler is a slog.Handler for systemd's journal. Each record is one
// entry: PRIORITY from the level (so `journalctl -p warning` works),
// MESSAGE the message followed by its attributes as key=value (what
// journalctl shows), and every attribute also a field of its own, in upper
// case with groups joined by '_' (meeting → MEETING, settings.data-dir →
// SETTINGS_DATA_DIR), so that `journalctl MEETING=demo` finds it. An entry
// the journal does not take is written to fallback as a line with the
// "<N>" priority prefix that journald reads on standard error.
type journalHandler struct {
	level    slog.Leveler
	send     journalSend
	fallback *lockedWriter
	attrs    []slog.Attr // from WithAttrs, keys already qualified by their groups
	group    string      // the open group's prefix, "a.b." or ""
}

// lockedWriter serializes the fallback lines of a handler and its derivatives.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func newJournalHandler(level slog.Leveler, send journalSend, fallback io.Writer) *journalHandler {
	return &journalHandler{level: level, send: send, fallback: &lockedWriter{w: fallback}}
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = slices.Clip(h.attrs)
	for _, a := range as {
		h2.attrs = appendAttr(h2.attrs, h.group, a)
	}
	return &h2
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	return &h2
}

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := slices.Clip(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		attrs = appendAttr(attrs, h.group, a)
		return true
	})
	var msg strings.Builder
	msg.WriteString(r.Message)
	fields := map[string]string{"SYSLOG_IDENTIFIER": "edgemc"}
	for _, a := range attrs {
		v := a.Value.String()
		fmt.Fprintf(&msg, " %s=%s", a.Key, quoteIfNeeded(v))
		fields[journalField(a.Key)] = v
	}
	prio := journalPriority(r.Level)
	if err := h.send(msg.String(), prio, fields); err != nil {
		h.fallback.mu.Lock()
		defer h.fallback.mu.Unlock()
		_, err = fmt.Fprintf(h.fallback.w, "<%d>%s\n", prio, strings.ReplaceAll(msg.String(), "\n", " "))
		return err
	}
	return nil
}

// appendAttr appends a, with its key qualified by group, to attrs: groups
// are flattened, values resolved and secrets redacted.
func appendAttr(attrs []slog.Attr, group string, a slog.Attr) []slog.Attr {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return attrs
	}
	if a.Value.Kind() == slog.KindGroup {
		prefix := group
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			attrs = appendAttr(attrs, prefix, ga)
		}
		return attrs
	}
	a = redact(nil, a)
	a.Key = group + a.Key
	return append(attrs, a)
}

// journalPriority maps a slog level to a syslog priority.
func journalPriority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}

// reservedFields are journal fields with a meaning of their own, which an
// attribute must not overwrite.
var reservedFields = []string{"MESSAGE", "MESSAGE_ID", "PRIORITY", "CODE_FILE", "CODE_LINE", "CODE_FUNC",
	"ERRNO", "SYSLOG_FACILITY", "SYSLOG_IDENTIFIER", "SYSLOG_PID", "SYSLOG_TIMESTAMP", "SYSLOG_RAW",
	"DOCUMENTATION", "TID", "INVOCATION_ID", "UNIT", "USER_UNIT", "OBJECT_PID"}

// journalField turns an attribute key into a valid journal field name:
// upper-case letters, digits and '_', starting with a letter, at most 64
// bytes. Keys that would collide with a reserved field get an ATTR_ prefix.
func journalField(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		if r > unicode.MaxASCII || !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			r = '_'
		}
		b.WriteRune(r)
	}
	name := strings.Trim(b.String(), "_")
	if name == "" || name[0] < 'A' || name[0] > 'Z' || slices.Contains(reservedFields, name) {
		name = "ATTR_" + name
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// quoteIfNeeded quotes a value that would not read as one word.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || r == '"' || r == '=' || !unicode.IsPrint(r)
	}) {
		return strconv.Quote(s)
	}
	return s
}

// levelPrefixHandler writes text or JSON lines to journald's stream with
// the "<N>" priority prefix it reads, for log-format text or json under
// systemd. It holds one inner handler per priority.
type levelPrefixHandler struct {
	byPrio map[journal.Priority]slog.Handler
}

// newLevelPrefixHandler builds the inner handlers with newInner, each
// writing to w through its own prefix.
func newLevelPrefixHandler(w io.Writer, newInner func(io.Writer) slog.Handler) *levelPrefixHandler {
	out := &lockedWriter{w: w}
	h := &levelPrefixHandler{byPrio: map[journal.Priority]slog.Handler{}}
	for _, p := range []journal.Priority{journal.PriErr, journal.PriWarning, journal.PriInfo, journal.PriDebug} {
		h.byPrio[p] = newInner(prefixWriter{out, "<" + strconv.Itoa(int(p)) + ">"})
	}
	return h
}

func (h *levelPrefixHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.byPrio[journal.PriErr].Enabled(ctx, l)
}

func (h *levelPrefixHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.byPrio[journalPriority(r.Level)].Handle(ctx, r)
}

func (h *levelPrefixHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.derive(func(in slog.Handler) slog.Handler { return in.WithAttrs(as) })
}

func (h *levelPrefixHandler) WithGroup(name string) slog.Handler {
	return h.derive(func(in slog.Handler) slog.Handler { return in.WithGroup(name) })
}

func (h *levelPrefixHandler) derive(f func(slog.Handler) slog.Handler) slog.Handler {
	h2 := &levelPrefixHandler{byPrio: map[journal.Priority]slog.Handler{}}
	for p, in := range h.byPrio {
		h2.byPrio[p] = f(in)
	}
	return h2
}

// prefixWriter writes each line (one Write, as slog's handlers do) with
// its prefix, in one write.
type prefixWriter struct {
	out    *lockedWriter
	prefix string
}

func (w prefixWriter) Write(p []byte) (int, error) {
	w.out.mu.Lock()
	defer w.out.mu.Unlock()
	if _, err := w.out.w.Write(append([]byte(w.prefix), p...)); err != nil {
		return 0, err
	}
	return len(p), nil
}
