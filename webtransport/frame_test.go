package webtransport_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

func TestFrameRoundTrip(t *testing.T) {
	msgs := []*pb.ClientMessage{
		joinRequest("m1"),
		{},
		{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: true}}, TraceParent: "00-abc"},
	}
	var stream []byte
	for _, m := range msgs {
		var err error
		if stream, err = webtransport.AppendFrame(stream, m); err != nil {
			t.Fatal(err)
		}
	}
	r := bytes.NewReader(stream)
	var buf []byte
	for i, want := range msgs {
		b, err := webtransport.ReadFrame(r, buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got := new(pb.ClientMessage)
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("frame %d: got %v, want %v", i, got, want)
		}
		buf = b
	}
	if _, err := webtransport.ReadFrame(r, buf); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestReadFrameTruncated(t *testing.T) {
	f, err := webtransport.AppendFrame(nil, joinRequest("m"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 3, 4, len(f) - 1} {
		if _, err := webtransport.ReadFrame(bytes.NewReader(f[:n]), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%d of %d bytes: %v, want io.ErrUnexpectedEOF", n, len(f), err)
		}
	}
}

// headerOnly yields a frame header and fails any read past it, proving the
// size check happens before the payload is read or allocated.
type headerOnly struct{ hdr []byte }

func (h *headerOnly) Read(p []byte) (int, error) {
	if len(h.hdr) == 0 {
		return 0, errors.New("payload read")
	}
	n := copy(p, h.hdr)
	h.hdr = h.hdr[n:]
	return n, nil
}

func TestReadFrameTooLarge(t *testing.T) {
	for _, n := range []uint32{webtransport.MaxFrameSize + 1, 1 << 31, ^uint32(0)} {
		// The least of a few tries: other goroutines of the test binary
		// allocate too, but not during every one of them.
		least := ^uint64(0)
		for range 5 {
			r := &headerOnly{hdr: binary.BigEndian.AppendUint32(nil, n)}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := webtransport.ReadFrame(r, nil)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, webtransport.ErrFrameTooLarge) {
				t.Fatalf("length %d: %v, want ErrFrameTooLarge", n, err)
			}
			least = min(least, after.TotalAlloc-before.TotalAlloc)
		}
		if least > 4096 {
			t.Errorf("length %d: %d bytes allocated", n, least)
		}
	}
}

func TestAppendFrameTooLarge(t *testing.T) {
	m := joinRequest("m")
	m.GetJoinRequest().JoinToken = strings.Repeat("x", webtransport.MaxFrameSize)
	dst := []byte("keep")
	out, err := webtransport.AppendFrame(dst, m)
	if !errors.Is(err, webtransport.ErrFrameTooLarge) || string(out) != "keep" {
		t.Fatalf("AppendFrame: %q, %v; want dst unchanged and ErrFrameTooLarge", out, err)
	}
	sm := &pb.ServerMessage{Message: &pb.ServerMessage_Error{Error: &pb.ErrorMessage{Message: strings.Repeat("x", webtransport.MaxFrameSize)}}}
	if _, err := webtransport.EncodeServerMessage(sm); !errors.Is(err, webtransport.ErrFrameTooLarge) {
		t.Fatalf("EncodeServerMessage: %v, want ErrFrameTooLarge", err)
	}
}

func TestEncodeServerMessageIsAFrame(t *testing.T) {
	want := joinResponse("p1")
	f, err := webtransport.EncodeServerMessage(want)
	if err != nil {
		t.Fatal(err)
	}
	b, err := webtransport.ReadFrame(bytes.NewReader(f), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := new(pb.ServerMessage)
	if err := proto.Unmarshal(b, got); err != nil || !proto.Equal(got, want) {
		t.Fatalf("got %v (%v), want %v", got, err, want)
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader and the
// ClientMessage decoder, as a client's stream would.
func FuzzReadFrame(f *testing.F) {
	valid, _ := webtransport.AppendFrame(nil, joinRequest("meeting"))
	two, _ := webtransport.AppendFrame(append([]byte(nil), valid...), &pb.ClientMessage{TraceState: "x"})
	f.Add(valid)
	f.Add(two)
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add(binary.BigEndian.AppendUint32(nil, webtransport.MaxFrameSize+1))
	f.Add(binary.BigEndian.AppendUint32(nil, webtransport.MaxFrameSize))
	f.Add(valid[:len(valid)-1])
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var buf []byte
		for {
			b, err := webtransport.ReadFrame(r, buf)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, webtransport.ErrFrameTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if len(b) > webtransport.MaxFrameSize {
				t.Fatalf("payload of %d bytes", len(b))
			}
			m, err := webtransport.DecodeClientMessage(b)
			if err != nil {
				var de *webtransport.DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("decode error %T, want *DecodeError", err)
				}
				continue
			}
			// Whatever decodes re-encodes into a frame that decodes the same.
			again, err := webtransport.AppendFrame(nil, m)
			if err != nil {
				continue // re-encoding may not be smaller, and may pass the limit
			}
			b2, err := webtransport.ReadFrame(bytes.NewReader(again), nil)
			if err != nil {
				t.Fatalf("re-read: %v", err)
			}
			m2, err := webtransport.DecodeClientMessage(b2)
			if err != nil {
				t.Fatalf("re-decode: %v", err)
			}
			det := proto.MarshalOptions{Deterministic: true}
			e1, _ := det.Marshal(m)
			e2, _ := det.Marshal(m2)
			if !bytes.Equal(e1, e2) {
				t.Fatalf("round trip changed the message: %v / %v", m, m2)
			}
			buf = b
		}
	})
}
