package netlimit

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	for in, want := range map[any]string{
		"192.0.2.7:4433":                                      "192.0.2.7/32",
		"[::ffff:192.0.2.7]:1":                                "192.0.2.7/32",
		"[2001:db8:1:2:3:4:5:6]:443":                          "2001:db8:1:2::/64",
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 9}:     "127.0.0.2/32",
		&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 9}: "2001:db8::/64",
	} {
		if got := Key(in); got.String() != want {
			t.Errorf("Key(%v) = %v, want %s", in, got, want)
		}
	}
	for _, bad := range []any{"", "no port", 42, nil} {
		if got := Key(bad); got != (netip.Prefix{}) {
			t.Errorf("Key(%v) = %v, want the zero prefix", bad, got)
		}
	}
}

func TestCounter(t *testing.T) {
	c := &Counter{Max: 3, PerAddress: 2}
	a, b := Key("192.0.2.1:1"), Key("192.0.2.2:1")
	for i, want := range []Bound{Within, Within, PerAddress} {
		if got := c.Take(a); got != want {
			t.Fatalf("take %d from a: %v, want %v", i, got, want)
		}
	}
	if got := c.Take(b); got != Within {
		t.Fatalf("b: %v", got)
	}
	if got := c.Take(b); got != Total {
		t.Fatalf("b past the total: %v, want Total", got)
	}
	c.Release(a)
	if got := c.Take(b); got != Within || c.Len() != 3 {
		t.Fatalf("after a release: %v with %d taken", got, c.Len())
	}
	if unbounded := (&Counter{}); unbounded.Take(a) != Within || unbounded.Take(a) != Within {
		t.Fatal("a zero Counter refused")
	}
}

// A listener refuses connections past its bounds at once and takes new ones
// when earlier ones close.
func TestListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan string, 8)
	l := &Listener{Listener: inner, Limits: &Counter{Max: 3, PerAddress: 2}, Refused: func(r string) { refused <- r }}
	defer l.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	// accept dials from the address and returns the server's side.
	dial := func(from string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	accept := func(from string) net.Conn {
		t.Helper()
		dial(from)
		select {
		case c := <-accepted:
			return c
		case r := <-refused:
			t.Fatalf("a connection from %s refused: %s", from, r)
		case <-time.After(5 * time.Second):
			t.Fatalf("a connection from %s not accepted", from)
		}
		return nil
	}
	refuse := func(from, want string) {
		t.Helper()
		c := dial(from)
		select {
		case r := <-refused:
			if r != want {
				t.Fatalf("a connection from %s refused for %s, want %s", from, r, want)
			}
		case <-accepted:
			t.Fatalf("a connection from %s accepted, want refused", from)
		case <-time.After(5 * time.Second):
			t.Fatalf("a connection from %s neither accepted nor refused", from)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var ne net.Error
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("a refused connection reads %v, want it closed", err)
		}
	}
	first := accept("127.0.0.1")
	accept("127.0.0.1")
	refuse("127.0.0.1", RefusedMaxConnectionsPerAddress)
	accept("127.0.0.2")
	refuse("127.0.0.3", RefusedMaxConnections)
	first.Close()
	first.Close() // a second Close gives nothing back twice
	accept("127.0.0.3")
	if n := l.Limits.Len(); n != 3 {
		t.Fatalf("%d places taken, want 3", n)
	}
}
