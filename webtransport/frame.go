// Package webtransport is edgemc's client endpoint: an HTTP/3 WebTransport
// server that participants' browsers and SDKs join, the signaling framing
// (a 4-byte big-endian length, then that many bytes of protobuf, at most
// 64 KiB), the self-signed certificate browsers pin with
// serverCertificateHashes, and a small client used by tests, the CLI and
// load generators.
//
// One WebTransport session is one participant in one meeting. It carries
// exactly one bidirectional stream, opened by the client. Inbound frames are
// read and decoded by a per-session reader; outbound frames go through a
// bounded per-session queue drained by the session's own writer, so a client
// that cannot keep up (a frame of its waits longer than SlowClientTimeout) is
// dropped instead of slowing anyone else down, while a burst it reads in
// time drops nobody.
package webtransport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	"github.com/edgemc/edgemc/webtransport/signalingpb"
)

// MaxFrameSize is the largest payload a signaling frame may carry, in bytes.
const MaxFrameSize = 65536

// frameHeaderSize is the size of the big-endian length prefix.
const frameHeaderSize = 4

// ErrFrameTooLarge reports a frame whose length prefix exceeds MaxFrameSize.
// The stream cannot be framed any further after it.
var ErrFrameTooLarge = errors.New("webtransport: frame larger than 64 KiB")

// DecodeError reports a well-framed payload that is not a valid protobuf
// message. The framing is intact, so the session can continue.
type DecodeError struct{ Err error }

func (e *DecodeError) Error() string { return "webtransport: undecodable message: " + e.Err.Error() }

func (e *DecodeError) Unwrap() error { return e.Err }

// ReadFrame reads one frame from r and returns its payload. The payload lives
// in buf when buf is large enough, so it is only valid until buf is reused.
// The length prefix is checked against MaxFrameSize before any allocation.
// It returns io.EOF only when r ends cleanly between two frames.
func ReadFrame(r io.Reader, buf []byte) ([]byte, error) {
	if cap(buf) < frameHeaderSize {
		buf = make([]byte, 0, 512)
	}
	hdr := buf[:frameHeaderSize]
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if n > MaxFrameSize {
		return nil, fmt.Errorf("%w: length prefix %d", ErrFrameTooLarge, n)
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	payload := buf[:n]
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return payload, nil
}

// AppendFrame appends m, framed, to dst. On error dst is returned unchanged.
func AppendFrame(dst []byte, m proto.Message) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	out, err := proto.MarshalOptions{}.MarshalAppend(dst, m)
	if err != nil {
		return dst[:start], fmt.Errorf("webtransport: encode %T: %w", m, err)
	}
	n := len(out) - start - frameHeaderSize
	if n > MaxFrameSize {
		return out[:start], fmt.Errorf("%w: %T encodes to %d bytes", ErrFrameTooLarge, m, n)
	}
	binary.BigEndian.PutUint32(out[start:], uint32(n))
	return out, nil
}

// Frame is an encoded, framed ServerMessage. It is immutable once built, so
// one Frame can be handed to any number of sessions (fan-out encodes once).
type Frame []byte

// EncodeServerMessage encodes and frames m.
func EncodeServerMessage(m *signalingpb.ServerMessage) (Frame, error) {
	b, err := AppendFrame(make([]byte, 0, frameHeaderSize+proto.Size(m)), m)
	if err != nil {
		return nil, err
	}
	return Frame(b), nil
}

// DecodeClientMessage decodes one frame payload; a failure is a
// *DecodeError. Decoding copies everything it keeps, so b may be reused.
func DecodeClientMessage(b []byte) (*signalingpb.ClientMessage, error) {
	m := new(signalingpb.ClientMessage)
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, &DecodeError{Err: err}
	}
	return m, nil
}

// DecodeServerMessage is DecodeClientMessage's counterpart for clients.
func DecodeServerMessage(b []byte) (*signalingpb.ServerMessage, error) {
	m := new(signalingpb.ServerMessage)
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, &DecodeError{Err: err}
	}
	return m, nil
}
