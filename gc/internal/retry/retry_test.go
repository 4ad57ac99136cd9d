package retry

import (
	"slices"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for attempt := 1; attempt <= 8; attempt++ {
		got = append(got, Backoff(time.Second, 30*time.Second, attempt))
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Fatalf("delays = %v, want %v", got, want)
	}
	if d := Backoff(time.Second, 30*time.Second, 1000); d != 30*time.Second {
		t.Fatalf("attempt 1000: %v", d)
	}
}
