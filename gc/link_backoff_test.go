package gc

import (
	"testing"
	"time"
)

// TestReconnectBackoffWithinAHeartbeat: the channel's reconnection pace
// never exceeds half a fast heartbeat (jitter included, a returning GC is
// reached by the next heartbeat) nor the registration cap, and never goes
// below the registration base.
func TestReconnectBackoffWithinAHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		base, limit, fast, want time.Duration
	}{
		{time.Second, 30 * time.Second, 10 * time.Second, 5 * time.Second},
		{time.Second, 2 * time.Second, 10 * time.Second, 2 * time.Second},
		{100 * time.Millisecond, 2 * time.Second, 250 * time.Millisecond, 125 * time.Millisecond},
		{time.Second, 30 * time.Second, time.Second, time.Second},
	} {
		b := reconnectBackoff(LinkConfig{BackoffBase: tc.base, BackoffMax: tc.limit, FastInterval: tc.fast})
		if b.BaseDelay != tc.base || b.MaxDelay != tc.want {
			t.Errorf("base %v, max %v, fast %v: backoff %v..%v, want %v..%v", tc.base, tc.limit, tc.fast, b.BaseDelay, b.MaxDelay, tc.base, tc.want)
		}
	}
}
