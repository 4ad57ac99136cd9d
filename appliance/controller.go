package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgemc/edgemc/gc"
	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/store"
)

// joinVerifier checks a participant's join token.
type joinVerifier interface {
	VerifyJoin(ctx context.Context, token string) (*auth.JoinClaims, error)
}

// endNotifier tells the GC that a meeting ended.
type endNotifier interface {
	NotifyMeetingEnded(ctx context.Context, meetingID string) error
}

// metricsSink is what the controller and its meetings report; *web.Metrics
// satisfies it.
type metricsSink interface {
	meetingMetrics
	JoinDone(d time.Duration, outcome string)
	RateLimited(outcome string)
}

type controllerConfig struct {
	MaxMeetings, MaxParticipants uint32
	Grace                        time.Duration // disconnect grace
	EmptyTimeout                 time.Duration // how long a meeting may stay empty
	PerIdentity                  uint32        // participants per (meeting, token subject); 0: no limit
	MessageRate, MessageBurst    uint32        // each session's message budget; 0: no limit
	Now                          func() time.Time
}

// Controller owns the set of meetings. It satisfies gc.Assigner (meetings
// are created by the GC's assignments), gc.LoadReporter and
// webtransport.Handler (see session.go).
type Controller struct {
	cfg      controllerConfig
	ctx      context.Context // parent of every meeting; cancel ends them
	cancel   context.CancelFunc
	log      *slog.Logger
	db       *store.DB
	verifier joinVerifier
	metrics  metricsSink
	media    mediaMetrics
	notifier atomic.Pointer[endNotifier]
	deps     meetingDeps // shared by every meeting

	assignMu sync.Mutex // serialises creation of meetings
	mu       sync.Mutex
	meetings map[string]*meeting

	participants seatCounter // roster entries over all meetings
	draining     atomic.Bool
	sessions     sync.WaitGroup
	meetingsWG   sync.WaitGroup
	notifyWG     sync.WaitGroup
}

func newController(cfg controllerConfig, log *slog.Logger, db *store.DB, v joinVerifier, b *binder, m metricsSink) *Controller {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Controller{cfg: cfg, ctx: ctx, cancel: cancel, log: log, db: db, verifier: v, metrics: m, meetings: map[string]*meeting{}}
	c.media, _ = m.(mediaMetrics) // *web.Metrics has them; test sinks need not
	if c.media == nil {
		c.media = nopMediaMetrics{}
	}
	c.participants.max = int64(cfg.MaxParticipants)
	c.deps = meetingDeps{
		store:    db,
		binder:   b,
		metrics:  m,
		seats:    &c.participants,
		log:      log,
		now:      cfg.Now,
		grace:    cfg.Grace,
		empty:    cfg.EmptyTimeout,
		perSub:   int(cfg.PerIdentity),
		draining: c.Draining,
		stopped:  c.stopped,
	}
	return c
}

// SetRegistrar sets how meetings are registered with their media handlers;
// call it before any meeting starts.
func (c *Controller) SetRegistrar(r mhRegistrar) { c.deps.mh = r }

// SetNotifier sets where meeting ends are reported (the GC link).
func (c *Controller) SetNotifier(n endNotifier) { c.notifier.Store(&n) }

// Draining reports whether the controller has begun to drain.
func (c *Controller) Draining() bool { return c.draining.Load() }

// BeginDrain refuses new meetings and sessions from now on.
func (c *Controller) BeginDrain() { c.draining.Store(true) }

func (c *Controller) lookup(id string) *meeting {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.meetings[id]
}

// stopped forgets a meeting that is no longer held and, if it ended, tells
// the GC.
func (c *Controller) stopped(m *meeting, ended bool) {
	c.mu.Lock()
	if c.meetings[m.id] == m {
		delete(c.meetings, m.id)
	}
	c.mu.Unlock()
	if ended {
		c.meetingEnded(m.id)
	}
}

func (c *Controller) start(m *meeting) {
	c.mu.Lock()
	c.meetings[m.id] = m
	c.mu.Unlock()
	c.meetingsWG.Go(m.run)
}

// seatCounter counts participants over all meetings against a maximum.
type seatCounter struct {
	n   atomic.Int64
	max int64
}

func (s *seatCounter) take() bool {
	for {
		n := s.n.Load()
		if n >= s.max {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *seatCounter) add(n int) { s.n.Add(int64(n)) }

func (s *seatCounter) count() uint32 { return uint32(max(s.n.Load(), 0)) }

func (c *Controller) meetingEnded(id string) {
	n := c.notifier.Load()
	if n == nil || *n == nil {
		return
	}
	c.notifyWG.Go(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), 10*time.Second)
		defer cancel()
		if err := (*n).NotifyMeetingEnded(ctx, id); err != nil {
			c.log.Warn("could not tell the GC a meeting ended", "meeting", id, "err", err)
		}
	})
}

// Load reports capacity and health for heartbeats and assignments.
func (c *Controller) Load() gc.Load {
	c.mu.Lock()
	meetings := len(c.meetings)
	c.mu.Unlock()
	l := gc.Load{
		MaxMeetings:         c.cfg.MaxMeetings,
		CurrentMeetings:     uint32(meetings),
		MaxParticipants:     c.cfg.MaxParticipants,
		CurrentParticipants: c.participants.count(),
	}
	switch {
	case c.Draining():
		l.Health = internalpb.HealthStatus_DRAINING
	case c.db.Check() != nil:
		l.Health = internalpb.HealthStatus_UNHEALTHY
	case l.Capacity().Degraded():
		l.Health = internalpb.HealthStatus_DEGRADED
	default:
		l.Health = internalpb.HealthStatus_HEALTHY
	}
	return l
}

// AssignMeeting creates (or confirms) a meeting the GC assigns to this MC.
func (c *Controller) AssignMeeting(ctx context.Context, id string, mhs []gc.MHAssignment, gcID string) (internalpb.RejectionReason, error) {
	if c.Draining() {
		return internalpb.RejectionReason_REJECTION_REASON_DRAINING, nil
	}
	c.assignMu.Lock()
	defer c.assignMu.Unlock()
	assignments := make([]store.Assignment, len(mhs))
	for i, a := range mhs {
		assignments[i] = store.Assignment{MHID: a.MHID, WebTransportEndpoint: a.WebTransportEndpoint, GRPCEndpoint: a.GRPCEndpoint}
	}
	if m := c.lookup(id); m != nil {
		// Idempotent: the meeting is already held here; take the new MH list.
		// It is acknowledged only once stored.
		var werr error
		err := m.do(ctx, func() { werr = m.reassign(assignments, gcID) })
		switch {
		case err == nil && werr == nil:
			return internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED, nil
		case err == nil:
			return refusedByStore(fmt.Errorf("store meeting %s: %w", id, werr))
		case !errors.Is(err, errMeetingGone):
			return 0, err
		}
	}
	if r := gc.CheckCapacity(c.Load()); r != internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED {
		return r, nil
	}
	gen, err := c.db.Acquire(id)
	if err != nil {
		return refusedByStore(fmt.Errorf("acquire meeting %s: %w", id, err))
	}
	st := store.Meeting{ID: id, Generation: gen, Assignments: assignments, AssignedBy: gcID, CreatedAt: c.cfg.Now()}
	if err := c.db.PutMeeting(gen, st); err != nil {
		return refusedByStore(fmt.Errorf("store meeting %s: %w", id, err))
	}
	c.start(newMeeting(c.ctx, &c.deps, st))
	c.log.InfoContext(ctx, "meeting assigned", "meeting", id, "generation", gen, "media_handlers", len(mhs))
	return internalpb.RejectionReason_REJECTION_REASON_UNSPECIFIED, nil
}

// refusedByStore is the answer to an assignment the store could not hold:
// the GC is told UNHEALTHY (accepted=false), never that it was accepted.
func refusedByStore(err error) (internalpb.RejectionReason, error) {
	return internalpb.RejectionReason_REJECTION_REASON_UNHEALTHY, err
}

// recoverConcurrency is how many meetings are recovered at once: their
// store writes share group commits instead of waiting for one fdatasync
// each.
const recoverConcurrency = 64

// recover reloads every meeting held before a restart, under a new
// generation, with every participant disconnected and a fresh grace period.
func (c *Controller) recover() (int, error) {
	states, err := c.db.LoadAll()
	if err != nil {
		return 0, fmt.Errorf("read stored meetings: %w", err)
	}
	now := c.cfg.Now()
	var g errgroup.Group
	g.SetLimit(recoverConcurrency)
	for _, st := range states {
		g.Go(func() error { return c.recoverMeeting(st, now) })
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return len(states), nil
}

// recoverMeeting takes over one stored meeting under a new generation and
// starts it.
func (c *Controller) recoverMeeting(st store.MeetingState, now time.Time) error {
	gen, err := c.db.Acquire(st.Meeting.ID)
	if err != nil {
		return fmt.Errorf("acquire meeting %s: %w", st.Meeting.ID, err)
	}
	st.Meeting.Generation = gen
	if err := c.db.PutMeeting(gen, st.Meeting); err != nil {
		return fmt.Errorf("store meeting %s: %w", st.Meeting.ID, err)
	}
	m := newMeeting(c.ctx, &c.deps, st.Meeting)
	bindings := map[string]store.Binding{}
	for _, b := range st.Bindings {
		bindings[b.ParticipantID] = b
	}
	sort.Slice(st.Participants, func(i, j int) bool { return st.Participants[i].JoinedAt.Before(st.Participants[j].JoinedAt) })
	for _, p := range st.Participants {
		if err := m.restore(p, bindings[p.ID], now); err != nil {
			return fmt.Errorf("restore meeting %s: %w", st.Meeting.ID, err)
		}
		m.media.add(p.ID, p.UserID)
	}
	// Its media handlers are told again when the first participant is back.
	m.recovered = true
	c.participants.add(len(st.Participants))
	m.publish()
	c.start(m)
	c.log.Info("meeting recovered", "meeting", st.Meeting.ID, "generation", gen, "participants", len(st.Participants))
	return nil
}

// running returns the meetings running now, in no order.
func (c *Controller) running() []*meeting {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Values(c.meetings))
}

// Snapshots returns the state of every meeting, sorted by id.
func (c *Controller) Snapshots() []MeetingSnapshot {
	c.mu.Lock()
	out := make([]MeetingSnapshot, 0, len(c.meetings))
	for _, m := range c.meetings {
		out = append(out, *m.snapshot.Load())
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// WaitSessions waits until every session handler has returned, or ctx ends.
func (c *Controller) WaitSessions(ctx context.Context) error {
	return waitGroup(ctx, &c.sessions)
}

// Stop stops every meeting goroutine after it has handled what is queued,
// and waits for them and for pending GC notifications (bounded by ctx).
func (c *Controller) Stop(ctx context.Context) error {
	c.cancel()
	if err := waitGroup(ctx, &c.meetingsWG); err != nil {
		return err
	}
	return waitGroup(ctx, &c.notifyWG)
}

func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
