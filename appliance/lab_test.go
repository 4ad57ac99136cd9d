package appliance

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/edgemc/edgemc/web"
)

// TestLabJoinInfoWaitsForTheDemoMeeting: the lab hands out no token for a
// demo meeting the appliance does not hold yet. Before the lab runs (so
// before its GC has assigned the meeting) join-info is "not ready"; once it
// runs, join-info waits for the assignment and the token's meeting is held.
func TestLabJoinInfoWaitsForTheDemoMeeting(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID = "mc-lab-test"
	cfg.DataDir = t.TempDir()
	cfg.WebTransportListen, cfg.GRPCListen, cfg.HTTPListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.DrainTimeout = 10 * time.Second
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := newAppliance(cfg, RunOptions{Version: "test", Logger: log, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	lab := a.labHandle()

	early, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if j, err := lab.JoinInfo(early, web.RoleHost, "Ada"); !errors.Is(err, web.ErrLabNotReady) || j.Token != "" {
		t.Fatalf("join-info before the demo meeting is assigned: token %t, err %v; want ErrLabNotReady", j.Token != "", err)
	}

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("appliance run: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := lab.JoinInfo(ctx, web.RoleHost, "Ada")
	if err != nil {
		t.Fatalf("join-info once the lab runs: %v", err)
	}
	if j.Token == "" || j.MeetingID != DemoMeetingID || !a.holdsDemo() {
		t.Fatalf("join-info %+v; demo meeting held: %v", j.MeetingID, a.holdsDemo())
	}
}
