package web

import (
	"context"
	"slices"
	"sync"
	"time"
)

// fakeSource is a StatusSource whose status tests change at will.
type fakeSource struct {
	mu sync.Mutex
	s  Status
}

func (f *fakeSource) Status(context.Context) Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.s
	s.Meetings = slices.Clone(s.Meetings)
	for i := range s.Meetings {
		s.Meetings[i].Participants = slices.Clone(s.Meetings[i].Participants)
	}
	return s
}

func (f *fakeSource) update(fn func(*Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.s)
}

// fakeLab mints a fixed token and records what it was asked.
type fakeLab struct {
	mu    sync.Mutex
	calls []string
	err   error
}

const labToken = "lab-join-token-ABCDEF0123456789"

func (l *fakeLab) JoinInfo(_ context.Context, role, name string) (LabJoin, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, role+"/"+name)
	if l.err != nil {
		return LabJoin{}, l.err
	}
	return LabJoin{
		URL:        "https://127.0.0.1:4433/signaling",
		CertSHA256: []byte{0xde, 0xad, 0xbe, 0xef},
		MeetingID:  "lab-meeting",
		Token:      labToken,
	}, nil
}

// sampleStatus is a full, realistic status with one meeting of two
// participants, one of them disconnected.
func sampleStatus() Status {
	t0 := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	now := time.Now().UTC().Truncate(time.Second)
	return Status{
		Identity: Identity{
			ID: "mc-lab-1", Region: "eu-west", Version: "1.2.3",
			WebTransportURL: "https://127.0.0.1:4433/signaling", GRPCEndpoint: "127.0.0.1:50051",
			CertSHA256:   "3f1a9c0e5b7d2f4a6c8e0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8a0c2e4b6d8f0a",
			CertNotAfter: now.Add(240 * time.Hour), StartedAt: t0,
		},
		Health: HealthHealthy,
		GC: GCStatus{
			Configured: true, Target: "127.0.0.1:50052", Registered: true,
			LastRegistered: t0, LastFast: now.Add(-3 * time.Second), LastComprehensive: now.Add(-20 * time.Second),
			FastInterval: 10 * time.Second, ComprehensiveInterval: 30 * time.Second,
		},
		Capacity: Capacity{MaxMeetings: 100, Meetings: 1, MaxParticipants: 1000, Participants: 2},
		System:   System{CPUPercent: 12.5, MemoryPercent: 41.2, RSSBytes: 48 << 20, Goroutines: 57},
		Store: StoreStatus{
			Path: "/var/lib/edgemc/state.db", OK: true, FileSize: 1 << 20, Meetings: 1, MaxGeneration: 7,
		},
		Meetings: []Meeting{{
			ID: "meeting-1", Generation: 7, CreatedAt: t0, MediaHandlers: []string{"mh-1"},
			Participants: []Participant{
				{ID: "p-1", Name: "Alice", Role: "host", Connected: true, JoinedAt: t0},
				{ID: "p-2", Name: "Bob", Role: "participant", AudioHostMuted: true, VideoSelfMuted: true,
					DisconnectedSince: now.Add(-5 * time.Second), JoinedAt: t0},
			},
		}},
	}
}
