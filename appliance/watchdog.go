package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// probe is a round trip through a part of the appliance that must keep
// moving (the store's committer, the meeting actors); it returns an error if
// the part does not answer before ctx ends.
type probe struct {
	name string
	ping func(ctx context.Context) error
}

// watchdog tells systemd the appliance is alive only after every probe has
// answered: a hung fsync or a stuck meeting actor stops the pings, and
// systemd restarts the process once its WatchdogSec passes.
type watchdog struct {
	every  time.Duration // ping interval (half of systemd's WatchdogSec)
	probes []probe
	notify func() error // sends WATCHDOG=1
	log    *slog.Logger
}

func (w *watchdog) run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	var failing string // the failure last logged; "" while healthy
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := w.check(ctx)
		switch {
		case err == nil:
			if failing != "" {
				w.log.Info("watchdog probes answer again; pinging systemd")
				failing = ""
			}
			if err := w.notify(); err != nil {
				w.log.Debug("watchdog ping failed", "err", err)
			}
		case ctx.Err() != nil:
			return
		case err.Error() != failing:
			failing = err.Error()
			w.log.Error("watchdog probe failed; not pinging systemd", "err", err)
		}
	}
}

// check runs every probe, each bounded by the ping interval.
func (w *watchdog) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, w.every)
	defer cancel()
	for _, p := range w.probes {
		if err := p.ping(ctx); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

// Ping is a round trip through every meeting's mailbox, in turn; a meeting
// that ended meanwhile is skipped. It fails if one does not answer before
// ctx ends.
func (c *Controller) Ping(ctx context.Context) error {
	for _, m := range c.running() {
		if err := m.ping(ctx); err != nil {
			return fmt.Errorf("meeting %s: %w", m.id, err)
		}
	}
	return nil
}

// ping is a round trip through the meeting's mailbox that gives up when ctx
// ends (do would wait for the op once queued).
func (m *meeting) ping(ctx context.Context) error {
	ran := make(chan struct{})
	if err := m.post(ctx, func() { close(ran) }); err != nil {
		if errors.Is(err, errMeetingGone) {
			return nil
		}
		return err
	}
	select {
	case <-ran:
		return nil
	case <-m.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
