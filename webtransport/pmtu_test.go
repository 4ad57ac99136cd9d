package webtransport_test

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"github.com/edgemc/edgemc/webtransport"
)

// TestNoPathMTUProbes checks that the server sends no path MTU probes:
// every datagram it sends fits the initial QUIC packet size, also after
// many round trips, each of which gives quic-go a chance to probe.
func TestNoPathMTUProbes(t *testing.T) {
	ts := startServer(t, webtransport.ServerConfig{}, newEchoHandler())
	relay := startRelay(t, ts.srv.Addr().String())
	ts.url = "https://" + relay.addr + "/meeting"
	c := ts.dial(t)
	for range 100 {
		if err := c.Send(joinRequest("m")); err != nil {
			t.Fatal(err)
		}
		if _, err := recv(t, c); err != nil {
			t.Fatal(err)
		}
	}
	// quic-go's packets start at 1280 bytes of UDP payload; its first probe
	// would be 1366.
	if got := relay.largestFromServer.Load(); got > 1280 {
		t.Fatalf("the server sent a %d-byte datagram: a path MTU probe", got)
	}
	if relay.largestFromServer.Load() == 0 {
		t.Fatal("the relay saw no datagram from the server")
	}
}

// relay forwards UDP datagrams between one client and a server, noting the
// largest datagram the server sent.
type relay struct {
	addr              string
	largestFromServer atomic.Int64
}

func startRelay(t *testing.T, server string) *relay {
	t.Helper()
	front, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serverAddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: front.LocalAddr().String()}
	var client atomic.Pointer[net.Addr]
	done := make(chan struct{}, 2)
	go func() { // client → server
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 65536)
		for {
			n, from, err := front.ReadFrom(buf)
			if err != nil {
				return
			}
			client.Store(&from)
			if _, err := back.Write(buf[:n]); err != nil && !errors.Is(err, net.ErrClosed) {
				t.Errorf("relay to server: %v", err)
			}
		}
	}()
	go func() { // server → client
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 65536)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			if int64(n) > r.largestFromServer.Load() {
				r.largestFromServer.Store(int64(n))
			}
			if to := client.Load(); to != nil {
				_, _ = front.WriteTo(buf[:n], *to)
			}
		}
	}()
	t.Cleanup(func() {
		front.Close()
		back.Close()
		<-done
		<-done
	})
	return r
}
