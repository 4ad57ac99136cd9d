package appliance

import (
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// LogOutput is what standard error is connected to, for log-format auto.
type LogOutput int

const (
	// OutputPipe is a file or a pipe: auto means JSON.
	OutputPipe LogOutput = iota
	// OutputTerminal is a terminal: auto means text.
	OutputTerminal
	// OutputJournal is systemd's journal (JOURNAL_STREAM names standard
	// error): auto writes entries with the journal's native protocol, with
	// their priority and every attribute as a field; text and json lines
	// carry the "<N>" priority prefix journald reads.
	OutputJournal
)

// NewLogger builds edgemc's logger writing to w (standard error). format is
// "auto", "text" or "json"; out says what w is (see [LogOutput]). level is
// "debug", "info", "warn" or "error". Attributes whose key names a token,
// secret, password or authorization are redacted, as a second line of
// defence. Records marked with RefusedKey are sampled: per message and
// reason, the first 10 of every 10 s are written and the rest summed up in
// one line.
func NewLogger(format, level string, w io.Writer, out LogOutput) (*slog.Logger, error) {
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
	lvl, ok := levels[level]
	if !ok {
		return nil, &SettingError{Setting: "log-level", Value: level, Reason: "must be one of debug, info, warn, error"}
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: redact}
	var newHandler func(io.Writer) slog.Handler
	switch {
	case format == "auto" && out == OutputJournal:
		return sampled(newJournalHandler(lvl, journal.Send, w)), nil
	case format == "text" || format == "auto" && out == OutputTerminal:
		newHandler = func(w io.Writer) slog.Handler { return slog.NewTextHandler(w, opts) }
	case format == "json" || format == "auto":
		newHandler = func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, opts) }
	default:
		return nil, &SettingError{Setting: "log-format", Value: format, Reason: "must be one of auto, text, json"}
	}
	if out == OutputJournal {
		return sampled(newLevelPrefixHandler(w, newHandler)), nil
	}
	return sampled(newHandler(w)), nil
}

// sampled is h with refusal lines sampled.
func sampled(h slog.Handler) *slog.Logger {
	return slog.New(newSamplingHandler(h, logSampleFirst, logSampleEvery))
}

// redact hides the value of any attribute whose key says it carries a
// secret, e.g. "token", "join_token", "binding_token", "authorization".
func redact(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindGroup {
		return a
	}
	k := strings.ToLower(a.Key)
	for _, suffix := range []string{"token", "secret", "password", "authorization"} {
		if strings.HasSuffix(k, suffix) {
			return slog.String(a.Key, "REDACTED")
		}
	}
	return a
}

// LogValue lists every setting by name for the start-up log: paths and
// addresses only, never the contents of the files they name.
func (c Config) LogValue() slog.Value {
	table := settings()
	attrs := make([]slog.Attr, 0, len(table)+1)
	attrs = append(attrs, slog.String("config", c.ConfigFile))
	for _, s := range table {
		attrs = append(attrs, slog.Attr{Key: s.name, Value: s.value(&c)})
	}
	return slog.GroupValue(attrs...)
}

// value is the setting's current value in c, for logging.
func (s setting) value(c *Config) slog.Value {
	switch p := s.field(c).(type) {
	case *string:
		return slog.StringValue(*p)
	case *uint32:
		return slog.Uint64Value(uint64(*p))
	case *time.Duration:
		return slog.StringValue(p.String())
	case *bool:
		return slog.BoolValue(*p)
	case *[]string:
		return slog.AnyValue(*p)
	}
	return slog.Value{}
}
