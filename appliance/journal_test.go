package appliance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// journalEntry is one entry a journalHandler sent.
type journalEntry struct {
	msg    string
	prio   journal.Priority
	fields map[string]string
}

// journalRecorder stands in for journal.Send.
type journalRecorder struct {
	mu      sync.Mutex
	entries []journalEntry
	err     error
}

func (r *journalRecorder) send(msg string, prio journal.Priority, fields map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.entries = append(r.entries, journalEntry{msg, prio, fields})
	return nil
}

func TestJournalHandler(t *testing.T) {
	rec := &journalRecorder{}
	log := slog.New(newJournalHandler(slog.LevelInfo, rec.send, nil))
	ctl := log.With("component", "controller")
	ctl.Warn("meeting ended", "meeting", "demo", "join_token", "abc.def.ghi", "took", 1500*time.Millisecond)
	ctl.WithGroup("store").Error("write failed", "err", errors.New("disk full"), slog.Group("op", "kind", "put participant"))
	log.Debug("not shown")
	log.Info("edgemc starting", "settings", DefaultConfig())

	if len(rec.entries) != 3 {
		t.Fatalf("%d entries, want 3 (debug filtered): %+v", len(rec.entries), rec.entries)
	}
	want := []struct {
		prio   journal.Priority
		msg    string
		fields map[string]string
	}{
		{journal.PriWarning, "meeting ended component=controller meeting=demo join_token=REDACTED took=1.5s",
			map[string]string{"SYSLOG_IDENTIFIER": "edgemc", "COMPONENT": "controller", "MEETING": "demo", "JOIN_TOKEN": "REDACTED", "TOOK": "1.5s"}},
		{journal.PriErr, `write failed component=controller store.err="disk full" store.op.kind="put participant"`,
			map[string]string{"SYSLOG_IDENTIFIER": "edgemc", "COMPONENT": "controller", "STORE_ERR": "disk full", "STORE_OP_KIND": "put participant"}},
	}
	for i, w := range want {
		e := rec.entries[i]
		if e.prio != w.prio || e.msg != w.msg || fmt.Sprint(e.fields) != fmt.Sprint(w.fields) {
			t.Errorf("entry %d:\n got %d %q %v\nwant %d %q %v", i, e.prio, e.msg, e.fields, w.prio, w.msg, w.fields)
		}
	}
	if got := rec.entries[2].fields["SETTINGS_DATA_DIR"]; got != "./edgemc-data" {
		t.Errorf("SETTINGS_DATA_DIR = %q; fields %v", got, rec.entries[2].fields)
	}
}

// TestJournalFallback: an entry the journal refuses goes to standard error
// with the priority prefix journald reads there.
func TestJournalFallback(t *testing.T) {
	var buf bytes.Buffer
	rec := &journalRecorder{err: errors.New("no journal")}
	slog.New(newJournalHandler(slog.LevelInfo, rec.send, &buf)).Warn("meeting ended", "meeting", "demo", "note", "two\nlines")
	if got, want := buf.String(), "<4>meeting ended meeting=demo note=\"two\\nlines\"\n"; got != want {
		t.Errorf("fallback %q, want %q", got, want)
	}
}

func TestJournalField(t *testing.T) {
	for key, want := range map[string]string{
		"meeting":                   "MEETING",
		"settings.data-dir":         "SETTINGS_DATA_DIR",
		"message":                   "ATTR_MESSAGE",
		"priority":                  "ATTR_PRIORITY",
		"_hidden":                   "HIDDEN",
		"2fa":                       "ATTR_2FA",
		"é":                         "ATTR_",
		strings.Repeat("a", 70):     strings.Repeat("A", 64),
		"webtransport.listen-addr":  "WEBTRANSPORT_LISTEN_ADDR",
		"participant_id":            "PARTICIPANT_ID",
		"grpc.peer.addr":            "GRPC_PEER_ADDR",
		"comprehensive_interval_ns": "COMPREHENSIVE_INTERVAL_NS",
	} {
		if got := journalField(key); got != want {
			t.Errorf("journalField(%q) = %q, want %q", key, got, want)
		}
	}
}

// TestLevelPrefix: text and JSON under systemd carry the priority prefix
// journald reads, and the rest of each line is unchanged.
func TestLevelPrefix(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger("json", "debug", &buf, OutputJournal)
	if err != nil {
		t.Fatal(err)
	}
	log = log.With("component", "x")
	log.Debug("d")
	log.Info("i")
	log.Warn("w")
	log.Error("e", "secret", "hush")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	prefixes := []string{"<7>", "<6>", "<4>", "<3>"}
	if len(lines) != len(prefixes) {
		t.Fatalf("%d lines: %q", len(lines), buf.String())
	}
	for i, l := range lines {
		rest, ok := strings.CutPrefix(l, prefixes[i])
		var v map[string]any
		if !ok || json.Unmarshal([]byte(rest), &v) != nil || v["component"] != "x" {
			t.Errorf("line %d = %q, want %s and a JSON record", i, l, prefixes[i])
		}
	}
	if strings.Contains(buf.String(), "hush") {
		t.Error("secret logged")
	}
	if log, _ := NewLogger("auto", "info", &buf, OutputJournal); log == nil {
		t.Fatal("no logger")
	} else if sh, ok := log.Handler().(*samplingHandler); !ok {
		t.Errorf("auto under the journal uses %T, want refusals sampled", log.Handler())
	} else if _, ok := sh.inner.(*journalHandler); !ok {
		t.Errorf("auto under the journal writes with %T, want the native protocol", sh.inner)
	}
}

// TestJournalReal writes through journald itself when this machine runs
// one (the package test does so under systemd-nspawn otherwise), and reads
// the entry back by its field and priority.
func TestJournalReal(t *testing.T) {
	if !journal.Enabled() {
		t.Skip("no journald on this machine (/run/systemd/journal/socket); make test-package checks the journal under systemd-nspawn")
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		t.Skip("journalctl is not installed")
	}
	log, err := NewLogger("auto", "info", nil, OutputJournal)
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("test-%d", time.Now().UnixNano())
	log.Warn("edgemc journal test", "edgemc_test", id)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("journalctl", "-o", "json", "-p", "warning", "EDGEMC_TEST="+id).Output()
		if err == nil && strings.Contains(string(out), `"MESSAGE":"edgemc journal test edgemc_test=`+id+`"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry not found in the journal: %v %s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
