package gctest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Flood is an attacker's raw HTTP/2 connection to a gRPC server: it opens
// calls by sending their HEADERS and never their request bodies, and it
// reads (and counts) whatever the server answers. It acknowledges the
// server's SETTINGS and PINGs, as any HTTP/2 client does, so that the
// server has no protocol reason to drop it.
type Flood struct {
	conn net.Conn
	addr string

	wmu  sync.Mutex // guards the framer's writes, hbuf and next
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	next uint32 // next stream id

	// Counts of what the server sent.
	answered   atomic.Int64    // trailers-only answers (calls ended with a status)
	reset      atomic.Int64    // RST_STREAMs, e.g. for calls past the stream limit
	ended      atomic.Int64    // calls ended by either
	endedIDs   map[uint32]bool // read's own
	maxStreams atomic.Int64    // the server's SETTINGS_MAX_CONCURRENT_STREAMS, -1 if none
	goAway     atomic.Bool
	done       chan struct{} // closed when the connection has ended
}

// DialFlood opens a connection from the address from (nil: any) to the
// gRPC server at addr (host:port, plaintext HTTP/2) and sends the client
// preface.
func DialFlood(ctx context.Context, addr string, from net.IP) (*Flood, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	f := &Flood{conn: conn, addr: addr, next: 1, done: make(chan struct{}), endedIDs: map[uint32]bool{}}
	f.maxStreams.Store(-1)
	f.fr = http2.NewFramer(conn, conn)
	f.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	f.enc = hpack.NewEncoder(&f.hbuf)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		conn.Close()
		return nil, err
	}
	if err := f.fr.WriteSettings(); err != nil {
		conn.Close()
		return nil, err
	}
	go f.read()
	return f, nil
}

// Open sends the HEADERS of n calls of method (e.g.
// "/dark_tower.internal.v1.MeetingControllerService/AssignMeetingWithMh"),
// with the given extra headers (such as "authorization" or "grpc-timeout").
// Their bodies never come.
func (f *Flood) Open(n int, method string, headers map[string]string) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	for range n {
		f.hbuf.Reset()
		for _, h := range [][2]string{
			{":method", "POST"}, {":scheme", "http"}, {":path", method}, {":authority", f.addr},
			{"content-type", "application/grpc"}, {"te", "trailers"},
		} {
			_ = f.enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
		}
		for k, v := range headers {
			_ = f.enc.WriteField(hpack.HeaderField{Name: k, Value: v})
		}
		err := f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.next, BlockFragment: f.hbuf.Bytes(), EndHeaders: true})
		if err != nil {
			return fmt.Errorf("stream %d: %w", f.next, err)
		}
		f.next += 2
	}
	return nil
}

// Ping sends n PINGs at once.
func (f *Flood) Ping(n int) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	for i := range n {
		if err := f.fr.WritePing(false, [8]byte{byte(i)}); err != nil {
			return err
		}
	}
	return nil
}

// Answered is the number of calls the server ended with a status (such as
// UNAUTHENTICATED) so far.
func (f *Flood) Answered() int64 { return f.answered.Load() }

// Reset is the number of RST_STREAM frames the server sent so far.
func (f *Flood) Reset() int64 { return f.reset.Load() }

// Ended is the number of calls the server ended so far, with a status or a
// reset.
func (f *Flood) Ended() int64 { return f.ended.Load() }

// MaxStreams is the concurrent-stream limit the server advertised, -1 if
// none (yet).
func (f *Flood) MaxStreams() int64 { return f.maxStreams.Load() }

// GoAway reports whether the server has sent GOAWAY.
func (f *Flood) GoAway() bool { return f.goAway.Load() }

// Done is closed when the connection has ended (closed by either side).
func (f *Flood) Done() <-chan struct{} { return f.done }

// Close closes the connection.
func (f *Flood) Close() error { return f.conn.Close() }

func (f *Flood) read() {
	defer close(f.done)
	defer f.conn.Close()
	for {
		fr, err := f.fr.ReadFrame()
		if err != nil {
			return
		}
		switch fr := fr.(type) {
		case *http2.SettingsFrame:
			if fr.IsAck() {
				continue
			}
			if v, ok := fr.Value(http2.SettingMaxConcurrentStreams); ok {
				f.maxStreams.Store(int64(v))
			}
			f.write(func() error { return f.fr.WriteSettingsAck() })
		case *http2.PingFrame:
			if !fr.IsAck() {
				f.write(func() error { return f.fr.WritePing(true, fr.Data) })
			}
		case *http2.MetaHeadersFrame:
			if fr.StreamEnded() {
				f.answered.Add(1)
				f.end(fr.StreamID)
			}
		case *http2.RSTStreamFrame:
			f.reset.Add(1)
			f.end(fr.StreamID)
		case *http2.GoAwayFrame:
			f.goAway.Store(true)
		}
	}
}

// end counts a call's end once, however many frames end it (a status may
// be followed by a reset).
func (f *Flood) end(id uint32) {
	if !f.endedIDs[id] {
		f.endedIDs[id] = true
		f.ended.Add(1)
	}
}

func (f *Flood) write(w func() error) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	_ = w()
}
