package appliance

import (
	"context"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/edgemc/edgemc/gc"
	"github.com/edgemc/edgemc/gc/mh"
	"github.com/edgemc/edgemc/gc/tracectx"
	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/web"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// maxClientString bounds every string a client reports before it is kept
// or logged.
const maxClientString = 256

// mhRegistrar tells media handlers about meetings; *mhClient satisfies it.
type mhRegistrar interface {
	// lease holds connections to the handlers until release.
	lease(handlers []store.Assignment) mhLease
}

// mhLease is one meeting's use of its handlers' connections.
type mhLease interface {
	// register tells every handler, in the background, that this MC holds
	// meetingID; report gets the outcome of every attempt. It never
	// blocks; cancelling ctx stops it.
	register(ctx context.Context, meetingID string, report func(mh.Result))
	release()
}

// mediaMetrics is what media coordination reports; *web.Metrics satisfies it.
type mediaMetrics interface {
	MHNotification(connected bool)
	MHNotificationUnmatched(reason string)
	ParticipantMHStatus(state string)
	ParticipantMHStatusIgnored(reason string)
}

type nopMediaMetrics struct{}

func (nopMediaMetrics) MHNotification(bool)               {}
func (nopMediaMetrics) MHNotificationUnmatched(string)    {}
func (nopMediaMetrics) ParticipantMHStatus(string)        {}
func (nopMediaMetrics) ParticipantMHStatusIgnored(string) {}

// mhClient adapts the MH client to mhRegistrar and keeps count of the
// registrations running, so that a stop can wait for them.
type mhClient struct {
	c  *mh.Client
	wg sync.WaitGroup
}

func (m *mhClient) lease(handlers []store.Assignment) mhLease {
	hs := make([]mh.Handler, len(handlers))
	for i, a := range handlers {
		hs[i] = mh.Handler{ID: a.MHID, GRPCEndpoint: a.GRPCEndpoint}
	}
	return &mhLeaseAdapter{l: m.c.Lease(hs), wg: &m.wg}
}

// wait waits for the registrations still running (their meetings have been
// cancelled), bounded by ctx.
func (m *mhClient) wait(ctx context.Context) error { return waitGroup(ctx, &m.wg) }

type mhLeaseAdapter struct {
	l  *mh.Lease
	wg *sync.WaitGroup
}

func (a *mhLeaseAdapter) register(ctx context.Context, meetingID string, report func(mh.Result)) {
	a.wg.Go(func() { a.l.Register(ctx, meetingID, report) })
}

func (a *mhLeaseAdapter) release() { a.l.Release() }

// registerMHs tells the meeting's media handlers that this MC holds it, in
// the background, replacing a registration still running. It runs on the
// meeting goroutine; the join that caused it does not wait.
func (m *meeting) registerMHs(why string) {
	if m.deps.mh == nil || len(m.assignments) == 0 || m.stopped {
		return
	}
	if m.mhCancel != nil {
		m.mhCancel()
	}
	if m.mhLease == nil {
		lease := m.deps.mh.lease(m.assignments)
		stop := context.AfterFunc(m.ctx, lease.release)
		m.mhLease = lease
		m.mhRelease = func() {
			if stop() {
				lease.release()
			}
		}
	}
	ctx, cancel := context.WithCancel(m.ctx)
	if m.trace.Valid() {
		ctx = tracectx.With(ctx, m.trace)
	}
	m.mhCancel = cancel
	m.media.registering(m.deps.now())
	m.log.Info("registering the meeting with its media handlers", "why", why, "media_handlers", len(m.assignments))
	media, now := m.media, m.deps.now
	m.mhLease.register(ctx, m.id, func(r mh.Result) { media.registered(r, now()) })
}

// dropMHs stops any registration and gives up the handlers' connections,
// when the meeting's handlers change.
func (m *meeting) dropMHs() {
	if m.mhCancel != nil {
		m.mhCancel()
		m.mhCancel = nil
	}
	if m.mhRelease != nil {
		m.mhRelease()
		m.mhLease, m.mhRelease = nil, nil
	}
}

// arrived is called on the meeting goroutine once a participant has joined
// (reconnect false) or reconnected: the first participant of an empty
// meeting, and the first one back after a restart recovered the meeting,
// make the meeting register with its media handlers. A meeting that is
// redirecting its clients (drain) redirects the newcomer too.
func (m *meeting) arrived(p *participant, reconnect bool) {
	if !reconnect {
		m.media.add(p.rec.ID, p.rec.UserID)
	}
	switch {
	case m.recovered:
		m.recovered = false
		m.registerMHs("first participant back after a restart")
	case !reconnect && len(m.participants) == 1:
		m.registerMHs("first participant")
	}
	if m.redirectTo != "" && p.conn != nil {
		p.conn.Send(m.redirectMsg())
	}
}

// mediaState is a meeting's media coordination state: what its media
// handlers answered RegisterMeeting, and per participant what the MHs and
// the client say about their connections. The meeting owns it; it is
// synchronised on its own so that gRPC notifications, client reports and
// status reads do not queue behind the meeting's mailbox. The meeting
// goroutine alone adds and removes participants and changes assignments.
type mediaState struct {
	mu       sync.Mutex
	handlers []store.Assignment
	regs     map[string]*web.MHRegistration // by MH id
	subs     map[string][]string            // join-token subject → participant ids
	parts    map[string]*participantMedia   // by participant id
}

type participantMedia struct {
	sub    string
	mh     map[string]time.Time    // MH id → connected since, as the MH says
	client map[string]clientReport // media handler URL → last client report
}

type clientReport struct {
	state, reason, code string
	observed            time.Time
}

func newMediaState(handlers []store.Assignment) *mediaState {
	s := &mediaState{regs: map[string]*web.MHRegistration{}, subs: map[string][]string{}, parts: map[string]*participantMedia{}}
	s.setHandlers(handlers)
	return s
}

// setHandlers takes a new media-handler list: registrations start over,
// and what participants' MHs and clients said of handlers no longer
// assigned is forgotten.
func (s *mediaState) setHandlers(handlers []store.Assignment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers = handlers
	clear(s.regs)
	ids, urls := map[string]bool{}, map[string]bool{}
	for _, a := range handlers {
		s.regs[a.MHID] = &web.MHRegistration{MHID: a.MHID, GRPCEndpoint: a.GRPCEndpoint, State: web.MHPending}
		ids[a.MHID], urls[a.WebTransportEndpoint] = true, true
	}
	for _, p := range s.parts {
		for id := range p.mh {
			if !ids[id] {
				delete(p.mh, id)
			}
		}
		for u := range p.client {
			if !urls[u] {
				delete(p.client, u)
			}
		}
	}
}

// add makes a participant known by its id and join-token subject.
func (s *mediaState) add(pid, sub string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parts[pid] != nil {
		return
	}
	s.parts[pid] = &participantMedia{sub: sub, mh: map[string]time.Time{}, client: map[string]clientReport{}}
	s.subs[sub] = append(s.subs[sub], pid)
}

// remove forgets a participant that left.
func (s *mediaState) remove(pid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[pid]
	if p == nil {
		return
	}
	delete(s.parts, pid)
	ids := s.subs[p.sub]
	for i, id := range ids {
		if id == pid {
			ids = append(ids[:i:i], ids[i+1:]...)
			break
		}
	}
	if len(ids) == 0 {
		delete(s.subs, p.sub)
	} else {
		s.subs[p.sub] = ids
	}
}

// clear forgets everything: the meeting has ended.
func (s *mediaState) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.parts)
	clear(s.subs)
}

// registering marks every handler's registration as under way.
func (s *mediaState) registering(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.regs {
		r.State, r.Attempts, r.LastError, r.UpdatedAt = web.MHRegistering, 0, "", now
	}
}

// registered records one attempt's outcome.
func (s *mediaState) registered(res mh.Result, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.regs[res.MHID]
	if r == nil {
		return
	}
	r.Attempts, r.UpdatedAt = res.Attempt, now
	switch {
	case res.Err == nil:
		r.State, r.LastError = web.MHRegistered, ""
	case res.Final:
		r.State, r.LastError = web.MHFailed, res.Err.Error()
	default:
		r.State, r.LastError = web.MHRegistering, res.Err.Error()
	}
}

// Reasons a media handler's notification is not kept.
const (
	unknownMeeting     = "unknown_meeting"
	unknownParticipant = "unknown_participant"
	unknownHandler     = "unknown_handler"
)

// mhEvent applies a media handler's notification to every participant
// whose join token has its subject. It returns "" when it was kept, else
// why not.
func (s *mediaState) mhEvent(e gc.MediaEvent, now time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	pids := s.subs[e.ParticipantID]
	if len(pids) == 0 {
		return unknownParticipant
	}
	if s.regs[e.HandlerID] == nil {
		return unknownHandler
	}
	for _, pid := range pids {
		p := s.parts[pid]
		switch _, was := p.mh[e.HandlerID]; {
		case e.Connected && !was:
			p.mh[e.HandlerID] = now
		case !e.Connected:
			delete(p.mh, e.HandlerID)
		}
	}
	return ""
}

// clientChange is a client's report that changed what was known.
type clientChange struct {
	url, state, was, reason, code string
}

// clientUpdate keeps a client's latest report per media handler URL it
// was given; it returns the reports that changed the state, the states of
// those kept (for metrics) and how many named a URL it was not given.
func (s *mediaState) clientUpdate(pid string, statuses []*pb.MhConnectionStatus, now time.Time) (changes []clientChange, kept []string, ignored int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.parts[pid]
	if p == nil {
		return nil, nil, len(statuses)
	}
	for _, st := range statuses {
		url := st.GetMhUrl()
		if !s.given(url) {
			ignored++
			continue
		}
		r := clientReport{
			state:  stateName(st.GetState()),
			reason: truncate(st.GetFailureReason(), maxClientString),
			code:   truncate(st.GetFailureCode(), maxClientString),
		}
		if st.GetObservedAt() != nil && st.GetObservedAt().IsValid() {
			r.observed = st.GetObservedAt().AsTime()
		} else {
			r.observed = now
		}
		kept = append(kept, r.state)
		prev, had := p.client[url]
		p.client[url] = r
		if !had || prev.state != r.state || prev.reason != r.reason || prev.code != r.code {
			changes = append(changes, clientChange{url: url, state: r.state, was: prev.state, reason: r.reason, code: r.code})
		}
	}
	return changes, kept, ignored
}

// given reports whether url is one of the meeting's media handler URLs,
// which every participant is given in its JoinResponse (s.mu held).
func (s *mediaState) given(url string) bool {
	for _, a := range s.handlers {
		if a.WebTransportEndpoint == url {
			return true
		}
	}
	return false
}

// stateName is a ConnectionState as status and logs show it (values outside
// the contract's enum are UNSPECIFIED).
func stateName(c pb.ConnectionState) string {
	switch c {
	case pb.ConnectionState_CONNECTION_STATE_CONNECTED:
		return "CONNECTED"
	case pb.ConnectionState_CONNECTION_STATE_FAILED:
		return "FAILED"
	case pb.ConnectionState_CONNECTION_STATE_DISCONNECTED:
		return "DISCONNECTED"
	}
	return "UNSPECIFIED"
}

// registrations is the status of each handler's registration, in
// assignment order.
func (s *mediaState) registrations() []web.MHRegistration {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]web.MHRegistration, 0, len(s.handlers))
	for _, a := range s.handlers {
		if r := s.regs[a.MHID]; r != nil {
			out = append(out, *r)
		}
	}
	return out
}

// participant is pid's media as both sides see it; nil for a meeting
// without media handlers.
func (s *mediaState) participant(pid string) *web.ParticipantMedia {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.handlers) == 0 {
		return nil
	}
	out := &web.ParticipantMedia{Total: len(s.handlers), Handlers: make([]web.ParticipantMHLink, 0, len(s.handlers))}
	p := s.parts[pid]
	for _, a := range s.handlers {
		l := web.ParticipantMHLink{MHID: a.MHID, URL: a.WebTransportEndpoint}
		if p != nil {
			l.MHSince, l.MHConnected = p.mh[a.MHID]
			if r, ok := p.client[a.WebTransportEndpoint]; ok {
				l.ClientState, l.ClientFailureReason, l.ClientFailureCode, l.ClientObservedAt = r.state, r.reason, r.code, r.observed
			}
		}
		if l.MHConnected {
			out.Connected++
		}
		l.Disagree = l.MHConnected && (l.ClientState == "FAILED" || l.ClientState == "DISCONNECTED") ||
			!l.MHConnected && l.ClientState == "CONNECTED"
		out.Handlers = append(out.Handlers, l)
	}
	return out
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// MediaEvent takes a media handler's notification (gc.MediaCoordinator).
// Notifications about meetings, participants or handlers it does not know
// are counted and dropped.
func (c *Controller) MediaEvent(ctx context.Context, e gc.MediaEvent) {
	c.media.MHNotification(e.Connected)
	log := c.log.With("meeting", e.MeetingID, "mh_id", e.HandlerID)
	reason := unknownMeeting
	if m := c.lookup(e.MeetingID); m != nil {
		reason = m.media.mhEvent(e, c.cfg.Now())
	}
	if reason != "" {
		c.media.MHNotificationUnmatched(reason)
		log.DebugContext(ctx, "media handler notification not kept", "reason", reason, "connected", e.Connected)
		return
	}
	if e.Connected {
		log.InfoContext(ctx, "media handler: participant connected", "user", e.ParticipantID)
	} else {
		log.InfoContext(ctx, "media handler: participant disconnected", "user", e.ParticipantID, "reason", e.Reason.String())
	}
}

// mediaUpdate keeps a client's MediaConnectionUpdate. Reports for URLs the
// participant was not given are counted and dropped; a state that changed
// is logged, with the client's strings cut to 256 bytes.
func (c *Controller) mediaUpdate(ctx context.Context, m *meeting, pid string, u *pb.MediaConnectionUpdate) {
	changes, kept, ignored := m.media.clientUpdate(pid, u.GetStatuses(), c.cfg.Now())
	for _, state := range kept {
		c.media.ParticipantMHStatus(strings.ToLower(state)) // the metric's labels are the state names in lower case
	}
	log := c.log.With("meeting", m.id, "participant", pid)
	if ignored > 0 {
		for range ignored {
			c.media.ParticipantMHStatusIgnored("unknown_url")
		}
		log.DebugContext(ctx, "media connection report for a media handler URL the participant was not given", "reports", ignored)
	}
	for _, ch := range changes {
		attrs := []any{"mh_url", ch.url, "state", ch.state, "was", ch.was}
		if ch.reason != "" || ch.code != "" {
			attrs = append(attrs, "failure_reason", ch.reason, "failure_code", ch.code)
		}
		if ch.state == "FAILED" {
			log.WarnContext(ctx, "client reports its media handler connection FAILED", attrs...)
		} else {
			log.InfoContext(ctx, "client reports its media handler connection", attrs...)
		}
	}
}
