package appliance

import (
	"time"

	"golang.org/x/time/rate"
)

// budgetWindow is how long the messages a session sends over its budget are
// counted before the count starts again.
const budgetWindow = 10 * time.Second

// spendResult is what a session's message budget says about one message.
type spendResult int

const (
	withinBudget    spendResult = iota
	firstOverBudget             // dropped; the first drop of a window is answered
	overBudget                  // dropped silently
	exhausted                   // more than a burst dropped in one window: close the session
)

// budget is one session's message budget: a token bucket of rate messages
// per second with a burst. Messages over it are dropped; a session that has
// more than a burst of them dropped within budgetWindow is closed. Only the
// session's own goroutine uses it.
type budget struct {
	lim         *rate.Limiter // nil: no limit
	burst       int
	windowStart time.Time
	dropped     int
}

func (c *Controller) newBudget() *budget {
	if c.cfg.MessageRate == 0 || c.cfg.MessageBurst == 0 {
		return &budget{}
	}
	burst := int(c.cfg.MessageBurst)
	return &budget{lim: rate.NewLimiter(rate.Limit(c.cfg.MessageRate), burst), burst: burst}
}

func (b *budget) spend(now time.Time) spendResult {
	if b.lim == nil || b.lim.AllowN(now, 1) {
		return withinBudget
	}
	if now.Sub(b.windowStart) > budgetWindow {
		b.windowStart, b.dropped = now, 0
	}
	b.dropped++
	switch {
	case b.dropped > b.burst:
		return exhausted
	case b.dropped == 1:
		return firstOverBudget
	}
	return overBudget
}
