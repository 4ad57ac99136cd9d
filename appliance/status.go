package appliance

import (
	"context"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"

	"github.com/edgemc/edgemc/gc"
	"github.com/edgemc/edgemc/web"
)

// Status gathers what the status page, the JSON API and the readiness probe
// show. It never includes a secret, a join token or a binding token.
func (a *appliance) Status(ctx context.Context) web.Status {
	load := a.ctrl.Load()
	cert := a.certs.Current()
	s := web.Status{
		Identity: web.Identity{
			ID:              a.cfg.ID,
			Region:          a.cfg.Region,
			Version:         a.opts.Version,
			WebTransportURL: a.wtURL(),
			GRPCEndpoint:    a.grpcAdvertise(),
			CertSHA256:      cert.HashHex(),
			CertNotAfter:    cert.NotAfter,
			StartedAt:       a.started,
		},
		Health:   load.Health.String(),
		Draining: a.ctrl.Draining(),
		Capacity: web.Capacity{
			MaxMeetings:     int(load.MaxMeetings),
			Meetings:        int(load.CurrentMeetings),
			MaxParticipants: int(load.MaxParticipants),
			Participants:    int(load.CurrentParticipants),
		},
		System: a.system(ctx),
		Store:  a.storeStatus(),
	}
	if a.link != nil {
		s.GC = gcStatus(a.cfg.GCURL, a.link.Status())
	}
	s.ControlPlane = a.controlPlaneLinks()
	s.AC = a.acStatus()
	for _, m := range a.ctrl.Snapshots() {
		wm := web.Meeting{ID: m.ID, Generation: m.Generation, CreatedAt: m.CreatedAt, MediaHandlers: []string{}, Participants: []web.Participant{}}
		for _, mh := range m.Assignments {
			wm.MediaHandlers = append(wm.MediaHandlers, mh.MHID)
		}
		for _, p := range m.Participants {
			wm.Participants = append(wm.Participants, web.Participant{
				ID: p.ID, Name: p.Name, Role: p.Role,
				AudioSelfMuted: p.AudioSelfMuted, VideoSelfMuted: p.VideoSelfMuted,
				AudioHostMuted: p.AudioHostMuted, VideoHostMuted: p.VideoHostMuted,
				Connected: p.Connected, DisconnectedSince: p.DisconnectedSince, JoinedAt: p.JoinedAt,
				Media: m.media.participant(p.ID),
			})
		}
		wm.MHRegistrations = m.media.registrations()
		s.Meetings = append(s.Meetings, wm)
	}
	if s.Meetings == nil {
		s.Meetings = []web.Meeting{}
	}
	if a.lab != nil {
		s.Lab = a.lab.info()
	}
	return s
}

func gcStatus(target string, l gc.LinkStatus) web.GCStatus {
	return web.GCStatus{
		Configured: true, Target: target, Registered: l.Registered,
		LastRegistered: l.LastRegistered, LastFast: l.LastFast, LastComprehensive: l.LastComprehensive,
		NextRetry: l.NextRetry, DownSince: l.DownSince, ConsecutiveFailures: l.ConsecutiveFailures, LastError: l.LastError,
		FastInterval: l.FastInterval, ComprehensiveInterval: l.ComprehensiveInterval,
		WaitingForToken: l.WaitingForToken,
	}
}

func (a *appliance) storeStatus() web.StoreStatus {
	st := web.StoreStatus{Path: a.db.Path(), OK: true}
	if err := a.db.Check(); err != nil {
		st.OK, st.Error = false, "store unavailable"
		return st
	}
	stats, err := a.db.Stats()
	if err != nil {
		st.OK, st.Error = false, "store unreadable"
		return st
	}
	st.FileSize, st.Meetings, st.MaxGeneration = stats.FileSize, stats.Meetings, stats.MaxGeneration
	return st
}

// system reads host CPU and memory use (as the comprehensive heartbeat
// reports them), and the process's RSS and goroutines the way the Prometheus
// process and Go collectors do (process_resident_memory_bytes, go_goroutines).
func (a *appliance) system(ctx context.Context) web.System {
	s := web.System{Goroutines: runtime.NumGoroutine()}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if cpu, mem, err := a.sys.Sample(ctx); err == nil {
		s.CPUPercent, s.MemoryPercent = cpu, mem
	}
	s.ProcessCPUPercent = a.procCPU.sample(time.Now())
	if p, err := procfs.NewProc(os.Getpid()); err == nil {
		if st, err := p.Stat(); err == nil {
			s.RSSBytes = uint64(st.ResidentMemory())
		}
	}
	return s
}

// wtURL is the WebTransport URL clients use: the advertised one, or in lab
// mode the address actually bound, as a client on this machine dials it.
func (a *appliance) wtURL() string {
	if a.lab != nil {
		return "https://" + dialable(a.wt.Addr().String()) + "/"
	}
	return a.cfg.WebTransportAdvertise
}

// processCPU measures edgemc's own CPU use, as a share of all the host's
// CPUs (the scale of the host CPU figure beside it), over at least a second
// so that several status pages reading it do not turn it into noise.
type processCPU struct {
	mu      sync.Mutex
	lastCPU time.Duration // user + system time at lastAt
	lastAt  time.Time
	percent float64
}

func (p *processCPU) sample(now time.Time) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	p.mu.Lock()
	defer p.mu.Unlock()
	switch wall := now.Sub(p.lastAt); {
	case p.lastAt.IsZero():
		p.lastCPU, p.lastAt = used, now
	case wall >= time.Second:
		p.percent = min(100, max(0, float64(used-p.lastCPU)/float64(wall)/float64(runtime.NumCPU())*100))
		p.lastCPU, p.lastAt = used, now
	}
	return p.percent
}
