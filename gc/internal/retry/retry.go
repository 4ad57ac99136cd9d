// Package retry is the exponential backoff of edgemc's control-plane
// clients: the Global Controller link and the Auth Controller token source.
package retry

import "time"

// Backoff is the wait after the attempt-th consecutive failure (1-based):
// base doubled attempt-1 times, capped at limit. Callers add their jitter.
func Backoff(base, limit time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
