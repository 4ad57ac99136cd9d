package gc

import (
	"context"
	"net"
	"testing"

	"github.com/edgemc/edgemc/gc/devgc"
)

// TestWithDevGC runs what `edgemc lab` runs: a link registered with the
// development GC, which then assigns a meeting through the authenticated
// server with a service token.
func TestWithDevGC(t *testing.T) {
	ctx := testCtx(t)
	dev := devgc.New(devgc.Config{FastInterval: fastConfig("").FastInterval})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	defer stop()
	go dev.Serve(serveCtx, lis)

	e := newServerEnv(t)
	cfg := fastConfig("http://" + lis.Addr().String())
	cfg.GRPCEndpoint = "http://" + e.addr
	ev := make(events, 1000)
	cfg.Observer = ev
	startLink(t, cfg, &fixedLoad{l: defaultLoad}, nil)
	ev.await(t, ctx, "register:accepted")
	ev.await(t, ctx, "fast:ok")
	ev.await(t, ctx, "comprehensive:ok")

	st := dev.Status()
	if len(st.MCs) != 1 || st.MCs[0].GRPCEndpoint != cfg.GRPCEndpoint || st.MCs[0].CurrentParticipants != 42 {
		t.Fatalf("dev GC status: %+v", st.MCs)
	}
	if err := dev.AssignDemo(ctx, st.MCs[0].GRPCEndpoint, "demo", e.gcTok); err != nil {
		t.Fatal(err)
	}
	e.a.mu.Lock()
	_, held := e.a.held["demo"]
	e.a.mu.Unlock()
	if !held {
		t.Fatal("demo meeting not assigned")
	}
}
