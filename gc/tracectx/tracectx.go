// Package tracectx carries W3C trace context (traceparent and tracestate)
// through edgemc: it parses the headers strictly, keeps the current trace in
// a context.Context, stamps outbound gRPC metadata and HTTP headers, reads
// inbound gRPC metadata, and adds trace_id to every log record written with
// a traced context.
//
// No tracing backend is involved: edgemc records nothing but the trace id
// in its logs. Each request edgemc handles gets its own span id, the parent
// of every call it makes on the request's behalf; a call made outside any
// request starts a new trace.
//
// Malformed values are dropped, never repaired or echoed: an invalid
// traceparent takes its tracestate with it (as the W3C recommendation asks),
// an invalid tracestate alone is dropped alone.
package tracectx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// Header names, as used in HTTP and gRPC metadata.
const (
	TraceParentHeader = "traceparent"
	TraceStateHeader  = "tracestate"
)

// Limits from the W3C recommendation.
const (
	maxStateBytes   = 512
	maxStateMembers = 32
	// maxParentBytes bounds a traceparent of a future version, which may
	// append fields to the version 00 form.
	maxParentBytes = 256
)

// Trace is one position in a trace: the trace id, the current span id, the
// trace flags and the vendors' tracestate. The zero Trace is not valid.
type Trace struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
	State   string // "" when there is none
}

// Valid reports whether t has a trace id and a span id.
func (t Trace) Valid() bool { return t.TraceID != [16]byte{} && t.SpanID != [8]byte{} }

// TraceIDString is the trace id in lower-case hex, as logs show it.
func (t Trace) TraceIDString() string { return hex.EncodeToString(t.TraceID[:]) }

// Parent is t as a version 00 traceparent header value.
func (t Trace) Parent() string {
	var b [55]byte
	copy(b[:], "00-")
	hex.Encode(b[3:35], t.TraceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], t.SpanID[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{t.Flags})
	return string(b[:])
}

// Child is a new span of the same trace: same trace id, flags and state,
// a fresh span id.
func (t Trace) Child() Trace {
	t.SpanID = newSpanID()
	return t
}

// Sampled is the trace flag a new trace starts with: edgemc logs the trace
// id of everything it does, so callers downstream may record it too.
const Sampled byte = 0x01

// New starts a new trace with a random trace id and span id.
func New() Trace {
	var t Trace
	for t.TraceID == [16]byte{} {
		_, _ = rand.Read(t.TraceID[:])
	}
	t.SpanID = newSpanID()
	t.Flags = Sampled
	return t
}

func newSpanID() [8]byte {
	var id [8]byte
	for id == [8]byte{} {
		_, _ = rand.Read(id[:])
	}
	return id
}

// Parse reads a traceparent header value and, when it is valid, the
// tracestate that came with it. ok is false for a missing or malformed
// traceparent; a malformed tracestate is dropped (State ""), the trace kept.
func Parse(traceparent, tracestate string) (t Trace, ok bool) {
	t, ok = parseParent(traceparent)
	if !ok {
		return Trace{}, false
	}
	if ValidState(tracestate) {
		t.State = tracestate
	}
	return t, true
}

// parseParent implements the traceparent grammar: version "-" trace-id "-"
// parent-id "-" flags, lower-case hex, neither id all zeros, version ff
// invalid; version 00 has exactly these four fields, a later version may
// carry more after a "-".
func parseParent(s string) (Trace, bool) {
	var t Trace
	if len(s) < 55 || len(s) > maxParentBytes {
		return t, false
	}
	version, ok := lowerHex(s[0:2])
	if !ok || version[0] == 0xff || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return t, false
	}
	switch {
	case version[0] == 0 && len(s) != 55:
		return t, false
	case len(s) > 55 && s[55] != '-':
		return t, false
	}
	id, ok1 := lowerHex(s[3:35])
	span, ok2 := lowerHex(s[36:52])
	flags, ok3 := lowerHex(s[53:55])
	if !ok1 || !ok2 || !ok3 {
		return t, false
	}
	copy(t.TraceID[:], id)
	copy(t.SpanID[:], span)
	t.Flags = flags[0]
	if version[0] != 0 {
		t.Flags &= Sampled // only the flags this version defines
	}
	return t, t.Valid()
}

// lowerHex decodes s when it is lower-case hex only.
func lowerHex(s string) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return nil, false
		}
	}
	b, err := hex.DecodeString(s)
	return b, err == nil
}

// ValidState reports whether s is a well-formed, non-empty tracestate: at
// most 512 bytes, at most 32 comma-separated list members, each key=value
// with the recommendation's character sets and no key repeated.
func ValidState(s string) bool {
	if s == "" || len(s) > maxStateBytes {
		return false
	}
	members := 0
	seen := map[string]bool{}
	for m := range strings.SplitSeq(s, ",") {
		m = strings.Trim(m, " \t")
		if m == "" {
			continue // empty list members are allowed
		}
		members++
		key, value, ok := strings.Cut(m, "=")
		if !ok || members > maxStateMembers || !validKey(key) || !validValue(value) || seen[key] {
			return false
		}
		seen[key] = true
	}
	return members > 0
}

// validKey: simple-key, or tenant-id "@" system-id.
func validKey(k string) bool {
	tenant, system, multi := strings.Cut(k, "@")
	if !multi {
		return len(k) <= 256 && keyChars(k, true)
	}
	return len(tenant) <= 241 && len(system) <= 14 && keyChars(tenant, false) && keyChars(system, true)
}

// keyChars: lcalpha followed by lcalpha / DIGIT / "_" / "-" / "*" / "/";
// a tenant id may also start with a digit.
func keyChars(s string, alphaFirst bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		lower, digit := c >= 'a' && c <= 'z', c >= '0' && c <= '9'
		switch {
		case i == 0 && (lower || digit && !alphaFirst):
		case i > 0 && (lower || digit || c == '_' || c == '-' || c == '*' || c == '/'):
		default:
			return false
		}
	}
	return true
}

// validValue: 1 to 256 printable ASCII characters except "," and "=", not
// ending in a space.
func validValue(v string) bool {
	if v == "" || len(v) > 256 || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

type ctxKey struct{}

// With returns ctx carrying t.
func With(ctx context.Context, t Trace) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// From returns the trace ctx carries, if any.
func From(ctx context.Context) (Trace, bool) {
	t, ok := ctx.Value(ctxKey{}).(Trace)
	return t, ok && t.Valid()
}

// Continue returns ctx carrying a new span of the trace given by the
// traceparent and tracestate values, when they are valid; otherwise ctx
// unchanged and ok false.
func Continue(ctx context.Context, traceparent, tracestate string) (context.Context, Trace, bool) {
	t, ok := Parse(traceparent, tracestate)
	if !ok {
		return ctx, Trace{}, false
	}
	t = t.Child()
	return With(ctx, t), t, true
}

// Outbound is the trace a call made under ctx carries: the current one, or
// a new trace when ctx has none.
func Outbound(ctx context.Context) Trace {
	if t, ok := From(ctx); ok {
		return t
	}
	return New()
}
