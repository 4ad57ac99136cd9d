// Package netlimit bounds what peers hold at once, in all and per client
// address, so that no one address can take every place: a Counter of places,
// and a listener that closes a connection past its bounds as soon as it is
// accepted. A client address is an IPv4 address or an IPv6 /64, since one
// host usually holds a whole /64.
package netlimit

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
)

// Bound says which bound refused a place.
type Bound int

const (
	Within     Bound = iota // not refused
	Total                   // Counter.Max places are taken
	PerAddress              // Counter.PerAddress places are taken by the client's address
)

// Key is the client address of addr (an IP address with a port, as a
// net.Addr of the tcp or udp kind, or its "host:port" string): the address
// itself for IPv4, its /64 for IPv6. Anything else is the zero Key, which
// all such peers share.
func Key(addr any) netip.Prefix {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	case string:
		ap, _ = netip.ParseAddrPort(a)
	}
	ip := ap.Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits) // the zero Prefix for an invalid address
	return p
}

// Counter counts places taken, in all and by client address. Zero bounds
// mean no bound. It is safe for concurrent use.
type Counter struct {
	Max, PerAddress int

	mu   sync.Mutex
	n    int
	from map[netip.Prefix]int
}

// Take takes a place for the client at key, or says which bound refused it.
func (c *Counter) Take(key netip.Prefix) Bound {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.Max > 0 && c.n >= c.Max:
		return Total
	case c.PerAddress > 0 && c.from[key] >= c.PerAddress:
		return PerAddress
	}
	if c.from == nil {
		c.from = map[netip.Prefix]int{}
	}
	c.n++
	c.from[key]++
	return Within
}

// Release gives back a place taken for key.
func (c *Counter) Release(key netip.Prefix) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n--
	if c.from[key]--; c.from[key] <= 0 {
		delete(c.from, key)
	}
}

// Len is the number of places taken.
func (c *Counter) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Listener wraps a net.Listener: a connection past the bounds of its Counter
// is closed as soon as it is accepted, which costs the server nothing more,
// and Accept goes on to the next one. A connection accepted holds its place
// until it is closed.
type Listener struct {
	net.Listener
	Limits *Counter
	// Refused is told the reason of each connection refused (for
	// metrics): RefusedMaxConnections or RefusedMaxConnectionsPerAddress.
	// Nil is allowed; it must not block.
	Refused func(reason string)
	// Logger gets a warning for each refusal, marked "refused" for
	// sampling; nil discards.
	Logger *slog.Logger
}

// Accept returns the next connection within the bounds.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := Key(c.RemoteAddr())
		b := l.Limits.Take(key)
		if b == Within {
			return &conn{Conn: c, limits: l.Limits, key: key}, nil
		}
		c.Close()
		reason := refusedReason(b)
		if l.Refused != nil {
			l.Refused(reason)
		}
		if l.Logger != nil {
			l.Logger.Warn("connection refused", "refused", reason, "remote", c.RemoteAddr().String())
		}
	}
}

// Reasons a Listener gives for a refused connection.
const (
	RefusedMaxConnections           = "max_connections"
	RefusedMaxConnectionsPerAddress = "max_connections_per_address"
)

func refusedReason(b Bound) string {
	if b == PerAddress {
		return RefusedMaxConnectionsPerAddress
	}
	return RefusedMaxConnections
}

// conn gives its place back when it is closed.
type conn struct {
	net.Conn
	limits *Counter
	key    netip.Prefix
	once   sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.limits.Release(c.key) })
	return err
}
