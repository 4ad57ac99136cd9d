package loadgen

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrNotLoopback refuses a target outside this machine: load is only ever
// generated over loopback.
var ErrNotLoopback = errors.New("loadgen: target is not a loopback address")

// CheckLoopbackURL accepts an https URL whose host is a loopback IP or
// "localhost".
func CheckLoopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("loadgen: %q is not an https URL", raw)
	}
	return checkLoopbackHost(u.Host)
}

// checkLoopbackHost accepts host or host:port naming a loopback IP or
// "localhost"; no other name is resolved.
func checkLoopbackHost(hostport string) error {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrNotLoopback, hostport)
}

// Summary is a latency distribution in milliseconds.
type Summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize sorts d and returns its nearest-rank percentiles.
func Summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(d)))) - 1
		return ms(d[max(0, min(i, len(d)-1))])
	}
	return Summary{Count: len(d), P50: rank(0.50), P99: rank(0.99), P999: rank(0.999), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// tally collects latencies and failure reasons from many goroutines.
type tally struct {
	mu       sync.Mutex
	lat      []time.Duration
	failures map[string]int
}

func (t *tally) ok(d time.Duration) {
	t.mu.Lock()
	t.lat = append(t.lat, d)
	t.mu.Unlock()
}

func (t *tally) fail(reason string) {
	t.mu.Lock()
	if t.failures == nil {
		t.failures = map[string]int{}
	}
	t.failures[reason]++
	t.mu.Unlock()
}

func (t *tally) count() (ok, failed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, n := range t.failures {
		failed += n
	}
	return len(t.lat), failed
}
