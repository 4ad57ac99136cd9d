package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// ackedJoin is a join whose JoinResponse reached the client.
type ackedJoin struct {
	meeting, sub string
	resp         *pb.JoinResponse
}

// TestFaultSIGKILLUnderJoinLoad kills edgemc with SIGKILL while workers
// join as fast as they can, then restarts it on the same data directory:
// the store opens, and every participant that had received a JoinResponse
// gets its place back by reconnecting with its binding within the grace.
func TestFaultSIGKILLUnderJoinLoad(t *testing.T) {
	t.Parallel()
	s := faultSettings(t)
	workers := pick(s, 8, 32)
	killAfter := pick(s, 120, 1000)
	issuer := devissuer.NewIssuer()
	dir := t.TempDir()
	// The workers are one load generator, on one address: as many of its
	// sessions may wait for their join as there are workers.
	pending := fmt.Sprintf("--max-pending-sessions-per-address=%d", workers)
	mc := startFaultMC(t, dir, issuer, pending)
	meetings := []string{"m-kill-0", "m-kill-1", "m-kill-2", "m-kill-3"}
	for _, m := range meetings {
		mc.mustAssign(t, m)
	}

	var (
		mu     sync.Mutex
		acked  []ackedJoin
		conns  []*webtransport.ClientConn
		errs   []error
		killed bool
	)
	kill := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				meeting, sub := meetings[(w+i)%len(meetings)], fmt.Sprintf("user-%d-%d", w, i)
				conn, resp, err := mc.join(ctx, sub, &pb.JoinRequest{MeetingId: meeting})
				mu.Lock()
				if err != nil {
					if !killed {
						errs = append(errs, err)
					}
					mu.Unlock()
					return
				}
				acked = append(acked, ackedJoin{meeting, sub, resp})
				conns = append(conns, conn)
				if len(acked) == killAfter {
					close(kill)
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-kill:
	case <-time.After(waitTimeout):
		t.Fatalf("fewer than %d joins within %v", killAfter, waitTimeout)
	}
	mu.Lock()
	killed = true
	mu.Unlock()
	if err := mc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	mc.Wait()
	cancel() // joins in flight wait for a server that is gone
	wg.Wait()
	for _, c := range conns {
		c.Abort()
	}
	if len(errs) > 0 {
		t.Fatalf("%d joins failed before the kill, first: %v", len(errs), errs[0])
	}
	t.Logf("SIGKILL after %d acknowledged joins (%d workers)", len(acked), workers)

	restart := time.Now()
	mc = startFaultMC(t, dir, issuer, pending)
	if n := mc.WaitMsg("recovered meetings from the store").Fields["meetings"]; n != float64(len(meetings)) {
		t.Errorf("recovered %v meetings, want %d", n, len(meetings))
	}
	lost := reconnectAll(t, mc, acked, workers)
	t.Logf("restart and %d reconnections took %v; %d lost", len(acked), time.Since(restart), len(lost))
	for i, err := range lost {
		if i == 5 {
			t.Errorf("... and %d more", len(lost)-5)
			break
		}
		t.Error(err)
	}
}

// reconnectAll reconnects every acknowledged join with its binding, with
// workers at a time, and returns one error per participant not recovered.
func reconnectAll(t *testing.T, mc *faultMC, acked []ackedJoin, workers int) []error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	var (
		mu   sync.Mutex
		lost []error
		wg   sync.WaitGroup
	)
	todo := make(chan ackedJoin)
	for range workers {
		wg.Go(func() {
			for j := range todo {
				conn, resp, err := mc.join(ctx, j.sub, &pb.JoinRequest{
					MeetingId: j.meeting, CorrelationId: j.resp.CorrelationId, BindingToken: j.resp.BindingToken,
				})
				if err == nil {
					conn.Abort()
					if resp.ParticipantId != j.resp.ParticipantId {
						err = fmt.Errorf("%s in %s came back as a new participant %s, not %s", j.sub, j.meeting, resp.ParticipantId, j.resp.ParticipantId)
					}
				}
				if err != nil {
					mu.Lock()
					lost = append(lost, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, j := range acked {
		todo <- j
	}
	close(todo)
	wg.Wait()
	return lost
}
