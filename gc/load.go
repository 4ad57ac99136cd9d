package gc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/mem"

	"github.com/edgemc/edgemc/gc/capacity"
	"github.com/edgemc/edgemc/gc/internalpb"
)

// Load is the MC's capacity and health as reported to the GC.
type Load struct {
	MaxMeetings, CurrentMeetings, MaxParticipants, CurrentParticipants uint32
	Health                                                             internalpb.HealthStatus
}

// Capacity is the part of l that the capacity policy reads.
func (l Load) Capacity() capacity.Load {
	return capacity.Load{
		MaxMeetings: l.MaxMeetings, Meetings: l.CurrentMeetings,
		MaxParticipants: l.MaxParticipants, Participants: l.CurrentParticipants,
	}
}

// LoadReporter supplies the current Load.
type LoadReporter interface {
	Load() Load
}

// CheckCapacity applies the assignment rule: a draining or unhealthy MC
// refuses with that reason; otherwise the capacity policy decides, and both a
// full appliance and one shedding load refuse with AT_CAPACITY.
func CheckCapacity(l Load) internalpb.RejectionReason {
	switch {
	case l.Health == internalpb.HealthStatus_DRAINING:
		return internalpb.RejectionReason_REJECTION_REASON_DRAINING
	case l.Health == internalpb.HealthStatus_UNHEALTHY:
		return internalpb.RejectionReason_REJECTION_REASON_UNHEALTHY
	case l.Capacity().Admit() != capacity.Admit:
		return internalpb.RejectionReason_REJECTION_REASON_AT_CAPACITY
	}
	return internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED
}

// SystemSampler reports host CPU and memory use, each in percent (0..100).
type SystemSampler interface {
	Sample(ctx context.Context) (cpuPercent, memPercent float64, err error)
}

// minCPUWindow is the shortest interval a CPU figure is computed over;
// samples requested sooner repeat the previous figure, so that several
// readers (heartbeats, status page) do not turn it into noise.
const minCPUWindow = time.Second

type gopsutilSampler struct {
	mu      sync.Mutex
	last    cpu.TimesStat
	lastAt  time.Time
	lastCPU float64
}

// NewGopsutilSampler returns a SystemSampler reading the host through
// gopsutil. CPU use is measured between successive samples (since boot on
// the first one). It is safe for concurrent use.
func NewGopsutilSampler() SystemSampler { return &gopsutilSampler{} }

func (s *gopsutilSampler) Sample(ctx context.Context) (float64, float64, error) {
	cpuPct, err := s.cpuPercent(ctx)
	if err != nil {
		return 0, 0, err
	}
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("gc: reading memory use: %w", err)
	}
	return cpuPct, clampPercent(vm.UsedPercent), nil
}

func (s *gopsutilSampler) cpuPercent(ctx context.Context) (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if !s.lastAt.IsZero() && now.Sub(s.lastAt) < minCPUWindow {
		return s.lastCPU, nil
	}
	times, err := cpu.TimesWithContext(ctx, false)
	if err != nil {
		return 0, fmt.Errorf("gc: reading CPU times: %w", err)
	}
	if len(times) == 0 {
		return 0, errors.New("gc: no CPU times reported")
	}
	cur := times[0]
	s.lastCPU = busyPercent(s.last, cur)
	s.last, s.lastAt = cur, now
	return s.lastCPU, nil
}

// busyPercent is the share of non-idle CPU time between two readings.
func busyPercent(prev, cur cpu.TimesStat) float64 {
	total := func(t cpu.TimesStat) float64 {
		// Guest time is already counted in User/Nice on Linux.
		return t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	}
	dTotal := total(cur) - total(prev)
	dIdle := (cur.Idle + cur.Iowait) - (prev.Idle + prev.Iowait)
	if dTotal <= 0 {
		return 0
	}
	return clampPercent(100 * (dTotal - dIdle) / dTotal)
}

func clampPercent(p float64) float64 {
	switch {
	case p != p || p < 0: // NaN or negative
		return 0
	case p > 100:
		return 100
	}
	return p
}
