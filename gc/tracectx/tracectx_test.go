package tracectx

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

const validParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestParse(t *testing.T) {
	cases := []struct {
		name, parent string
		ok           bool
	}{
		{"valid", validParent, true},
		{"not sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"future version with more fields", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-holds", true},
		{"empty", "", false},
		{"upper-case hex", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"version 00 with more", validParent + "-x", false},
		{"future version, junk after", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false},
		{"short", validParent[:54], false},
		{"wrong separator", strings.Replace(validParent, "-", "_", 1), false},
		{"not hex", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false},
		{"too long", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + strings.Repeat("a", 300), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, ok := Parse(tc.parent, "")
			if ok != tc.ok {
				t.Fatalf("Parse(%q) ok = %v, want %v", tc.parent, ok, tc.ok)
			}
			if ok && tr.TraceIDString() != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Fatalf("trace id %s", tr.TraceIDString())
			}
		})
	}
	if tr, _ := Parse(validParent, ""); tr.Parent() != validParent {
		t.Fatalf("Parent() = %q, want %q", tr.Parent(), validParent)
	}
}

func TestTraceState(t *testing.T) {
	good := []string{"rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7", "tenant@vendor=x", "a=b,,c=d", "1tenant@sys=v"}
	bad := []string{"", "=x", "Rojo=1", "a=b,a=c", "a=", "a=b=c", "a=b\x01", "1abc=x", "a@toolongsystemid15=x",
		strings.Repeat("a", 600) + "=1", strings.Repeat("k=v,", 33)}
	for _, s := range good {
		if !ValidState(s) {
			t.Errorf("ValidState(%q) = false", s)
		}
	}
	for _, s := range bad {
		if ValidState(s) {
			t.Errorf("ValidState(%q) = true", s)
		}
	}
	// A bad tracestate is dropped alone; a bad traceparent takes it along.
	if tr, ok := Parse(validParent, "Bad State"); !ok || tr.State != "" {
		t.Fatalf("bad state: %+v %v", tr, ok)
	}
	if tr, ok := Parse("junk", "rojo=1"); ok || tr.State != "" {
		t.Fatalf("bad parent: %+v %v", tr, ok)
	}
}

func TestContinueAndOutbound(t *testing.T) {
	ctx, tr, ok := Continue(context.Background(), validParent, "rojo=1")
	if !ok {
		t.Fatal("valid traceparent refused")
	}
	parent, _ := Parse(validParent, "")
	if tr.TraceID != parent.TraceID || tr.SpanID == parent.SpanID || tr.State != "rojo=1" {
		t.Fatalf("child %+v of %+v", tr, parent)
	}
	if got := Outbound(ctx); got != tr {
		t.Fatalf("Outbound = %+v, want the request's span %+v", got, tr)
	}
	h := http.Header{}
	SetHeader(ctx, h)
	if h.Get("traceparent") != tr.Parent() || h.Get("tracestate") != "rojo=1" {
		t.Fatalf("headers %v", h)
	}
	fresh := Outbound(context.Background())
	if !fresh.Valid() || fresh.TraceID == tr.TraceID || fresh.Flags != Sampled {
		t.Fatalf("a call outside a request got %+v", fresh)
	}
}

func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewLogHandler(slog.NewTextHandler(&buf, nil))).With("component", "x")
	ctx, tr, _ := Continue(context.Background(), validParent, "")
	log.InfoContext(ctx, "traced")
	log.Info("untraced")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "trace_id="+tr.TraceIDString()) || strings.Contains(lines[1], "trace_id") {
		t.Fatalf("log:\n%s", buf.String())
	}
}

// FuzzParse: no input panics; whatever is accepted is well formed and
// survives a round trip; nothing malformed is kept.
func FuzzParse(f *testing.F) {
	f.Add(validParent, "rojo=00f067aa0ba902b7")
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-x", "a@b=c,d=e")
	f.Add("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "=")
	f.Fuzz(func(t *testing.T, parent, state string) {
		tr, ok := Parse(parent, state)
		if !ok {
			if tr != (Trace{}) {
				t.Fatalf("refused input left %+v", tr)
			}
			return
		}
		if !tr.Valid() {
			t.Fatalf("accepted an invalid trace %+v", tr)
		}
		if tr.State != "" && (tr.State != state || !ValidState(state)) {
			t.Fatalf("kept state %q from %q", tr.State, state)
		}
		again, ok := Parse(tr.Parent(), tr.State)
		if !ok || again.TraceID != tr.TraceID || again.SpanID != tr.SpanID || again.State != tr.State {
			t.Fatalf("round trip of %q: %+v %v", tr.Parent(), again, ok)
		}
	})
}
