package appliance

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/shirou/gopsutil/v3/process"

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
			})
		}
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

func (a *appliance) system(ctx context.Context) web.System {
	s := web.System{Goroutines: runtime.NumGoroutine()}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if cpu, mem, err := a.sys.Sample(ctx); err == nil {
		s.CPUPercent, s.MemoryPercent = cpu, mem
	}
	if a.self != nil {
		if mi, err := a.self.MemoryInfoWithContext(ctx); err == nil {
			s.RSSBytes = mi.RSS
		}
	}
	return s
}

// selfProcess is the handle status reads use for the process's own figures:
// one for the appliance's life, not one per read (each holds an OS handle
// until the garbage collector frees it). Nil if it cannot be had.
func selfProcess() *process.Process {
	p, err := process.NewProcess(int32(os.Getpid()))
	if err != nil {
		return nil
	}
	return p
}

// wtURL is the WebTransport URL clients use: the advertised one, or in lab
// mode the loopback address actually bound.
func (a *appliance) wtURL() string {
	if u, ok := a.wt.Addr().(*net.UDPAddr); ok && a.lab != nil {
		return fmt.Sprintf("https://127.0.0.1:%d/", u.Port)
	}
	return a.cfg.WebTransportAdvertise
}
