package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// formatV1 is the first byte of every value edgemc writes. A value that starts with any other byte was written by
// a format this code does not know and is reported as corrupt rather than guessed at.
const formatV1 byte = 1

// Participant flag bits (one byte in the encoded participant).
const (
	flagAudioSelfMuted byte = 1 << iota
	flagVideoSelfMuted
	flagAudioHostMuted
	flagVideoHostMuted
	flagConnected
	flagsKnown = flagAudioSelfMuted | flagVideoSelfMuted | flagAudioHostMuted | flagVideoHostMuted | flagConnected
)

// Decoding errors, wrapped in a *CorruptError by the callers that know the bucket and key.
var (
	errShort       = errors.New("value truncated")
	errVersion     = errors.New("unknown format version")
	errTrailing    = errors.New("trailing bytes after value")
	errBadFlags    = errors.New("unknown flag bits")
	errBadTime     = errors.New("invalid time")
	errBadCount    = errors.New("element count exceeds value size")
	errEmptyRecord = errors.New("empty value")
)

// Values are encoded as: one format byte, then fields in a fixed order. Strings are a uvarint length followed by
// the bytes; times are a presence byte (0 = zero time) then a varint of Unix seconds and a uvarint of nanoseconds.
// A record's key (meeting id, participant id, correlation id) is not repeated in its value.

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// reader decodes fields from a value; the first failure sticks and later reads return zero values, so decoders read
// every field and check err once.
type reader struct {
	b   []byte
	err error
}

func newReader(v []byte) *reader {
	r := &reader{b: v}
	switch {
	case len(v) == 0:
		r.err = errEmptyRecord
	case v[0] != formatV1:
		r.err = fmt.Errorf("%w %d", errVersion, v[0])
	default:
		r.b = v[1:]
	}
	return r
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 1 {
		r.err = errShort
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errShort
		return ""
	}
	s := string(r.b[:n]) // copies: bbolt memory is only valid inside its transaction
	r.b = r.b[n:]
	return s
}

func (r *reader) uint64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) time() time.Time {
	switch r.byte() {
	case 0:
		return time.Time{}
	case 1:
	default:
		if r.err == nil {
			r.err = errBadTime
		}
		return time.Time{}
	}
	sec, nsec := r.varint(), r.uvarint()
	if r.err != nil {
		return time.Time{}
	}
	if nsec >= uint64(time.Second) {
		r.err = errBadTime
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec)).UTC()
	if t.IsZero() {
		return time.Time{}
	}
	return t
}

// count reads an element count and rejects counts that could not fit in the rest of the value, given that each
// element takes at least minSize bytes, so a corrupt count never drives a large allocation.
func (r *reader) count(minSize int) int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b)/minSize) {
		r.err = errBadCount
		return 0
	}
	return int(n)
}

func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = errTrailing
	}
	return r.err
}

// Generation counters: format byte + 8-byte big-endian counter.

func encodeGeneration(g uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{formatV1}, g)
}

func decodeGeneration(v []byte) (uint64, error) {
	r := newReader(v)
	g := r.uint64()
	return g, r.done()
}

// Nonce entries: format byte + expiry time.

func encodeNonce(expires time.Time) []byte {
	return appendTime([]byte{formatV1}, expires)
}

func decodeNonce(v []byte) (time.Time, error) {
	r := newReader(v)
	t := r.time()
	return t, r.done()
}

func encodeMeeting(m Meeting) []byte {
	b := []byte{formatV1}
	b = binary.AppendUvarint(b, uint64(len(m.Assignments)))
	for _, a := range m.Assignments {
		b = appendString(b, a.MHID)
		b = appendString(b, a.WebTransportEndpoint)
		b = appendString(b, a.GRPCEndpoint)
	}
	b = appendString(b, m.AssignedBy)
	return appendTime(b, m.CreatedAt)
}

// decodeMeeting decodes a meeting value stored under key id. Generation is not part of the value; the caller fills
// it from the meeting's generation counter.
func decodeMeeting(id string, v []byte) (Meeting, error) {
	r := newReader(v)
	m := Meeting{ID: id}
	if n := r.count(3); n > 0 {
		m.Assignments = make([]Assignment, n)
		for i := range m.Assignments {
			m.Assignments[i] = Assignment{MHID: r.string(), WebTransportEndpoint: r.string(), GRPCEndpoint: r.string()}
		}
	}
	m.AssignedBy = r.string()
	m.CreatedAt = r.time()
	if err := r.done(); err != nil {
		return Meeting{}, err
	}
	return m, nil
}

func encodeParticipant(p Participant) []byte {
	var flags byte
	for _, f := range []struct {
		set bool
		bit byte
	}{
		{p.AudioSelfMuted, flagAudioSelfMuted},
		{p.VideoSelfMuted, flagVideoSelfMuted},
		{p.AudioHostMuted, flagAudioHostMuted},
		{p.VideoHostMuted, flagVideoHostMuted},
		{p.Connected, flagConnected},
	} {
		if f.set {
			flags |= f.bit
		}
	}
	b := make([]byte, 0, 32+len(p.UserID)+len(p.Name)+len(p.Role)+len(p.HostMutedBy))
	b = append(b, formatV1)
	b = appendString(b, p.UserID)
	b = appendString(b, p.Name)
	b = appendString(b, p.Role)
	b = append(b, flags)
	b = appendString(b, p.HostMutedBy)
	b = appendTime(b, p.JoinedAt)
	return appendTime(b, p.DisconnectedSince)
}

// decodeParticipant decodes a roster value stored under key id.
func decodeParticipant(id string, v []byte) (Participant, error) {
	r := newReader(v)
	p := Participant{ID: id, UserID: r.string(), Name: r.string(), Role: r.string()}
	flags := r.byte()
	if r.err == nil && flags&^flagsKnown != 0 {
		r.err = errBadFlags
	}
	p.AudioSelfMuted = flags&flagAudioSelfMuted != 0
	p.VideoSelfMuted = flags&flagVideoSelfMuted != 0
	p.AudioHostMuted = flags&flagAudioHostMuted != 0
	p.VideoHostMuted = flags&flagVideoHostMuted != 0
	p.Connected = flags&flagConnected != 0
	p.HostMutedBy = r.string()
	p.JoinedAt = r.time()
	p.DisconnectedSince = r.time()
	if err := r.done(); err != nil {
		return Participant{}, err
	}
	return p, nil
}

func encodeBinding(b Binding) []byte {
	v := []byte{formatV1}
	v = appendString(v, b.ParticipantID)
	v = appendString(v, b.UserID)
	v = appendString(v, b.Nonce)
	return appendTime(v, b.ExpiresAt)
}

// decodeBinding decodes a binding value stored under key correlationID.
func decodeBinding(correlationID string, v []byte) (Binding, error) {
	r := newReader(v)
	b := Binding{CorrelationID: correlationID, ParticipantID: r.string(), UserID: r.string(), Nonce: r.string()}
	b.ExpiresAt = r.time()
	if err := r.done(); err != nil {
		return Binding{}, err
	}
	return b, nil
}
