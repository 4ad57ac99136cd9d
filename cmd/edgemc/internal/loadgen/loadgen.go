// Package loadgen generates signaling load against an edgemc over loopback:
// it opens WebTransport sessions, joins them into meetings at a target rate,
// optionally host-mutes, reconnects (session binding) and leaves, and reports
// joins per second, join latency percentiles, failures by reason and the
// fan-out latency of a host-mute (from the host's send until the last
// participant of the meeting has it).
//
// The same generator drives the benchmark floor, a bare WebTransport server
// (Protocol Echo, webtransport/wtbench): any answer to the first frame counts
// as a join and a host's later frame, relayed as is, is expected at every
// other session of its meeting.
//
// Held sessions can ride out restarts of the server (Config.Rejoin and
// Config.Restarts): every lost session reconnects with its session binding,
// and the run says when all of them are back.
//
// A run is bounded in sessions (MaxSessions) and time (Config.MaxDuration),
// and refuses any target that is not a loopback address.
package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// Protocol is what the target server speaks.
type Protocol string

const (
	// Signaling is edgemc's protocol: JoinRequest → JoinResponse, and a
	// HostMuteRequest → ParticipantMuteUpdate to every participant.
	Signaling Protocol = "signaling"
	// Echo is the bare floor: the first frame is echoed, and a host's later
	// frames are relayed to every other session of its meeting.
	Echo Protocol = "echo"
)

// Bounds of a run.
const (
	MaxSessions = 20000
	MaxRunTime  = time.Hour
)

// Config describes a run. Zero values take the documented defaults.
type Config struct {
	URL      string // https://127.0.0.1:PORT/ (loopback only)
	Dial     webtransport.DialOptions
	Protocol Protocol // default Signaling
	// Meetings are the meeting ids; session i joins Meetings[i%len], and
	// session i < len(Meetings) is that meeting's host.
	Meetings []string
	Sessions int
	// Rate is the target joins per second (open loop: join i starts at
	// i/Rate and its latency counts from then); 0 joins as fast as
	// Concurrency allows.
	Rate        float64
	Concurrency int           // joins in flight at most, default 64
	JoinTimeout time.Duration // per join, default 10 s

	// Mutes is the number of host-mute rounds per meeting once every
	// session has joined. Each round waits until every other participant
	// has the update (or MuteTimeout) before the next, after MuteGap.
	Mutes int
	// MuteMeetings limits the host-mute rounds to the first MuteMeetings
	// meetings (0: every meeting), so that one meeting is measured while
	// the others idle.
	MuteMeetings int
	// Settle is a pause after the joins before the first round, so that
	// the joins' own broadcasts have drained.
	Settle      time.Duration
	MuteGap     time.Duration // default 20 ms
	MuteTimeout time.Duration // default 5 s

	// Reconnects is how many participants drop their connection after the
	// mutes and rejoin with their session binding (Signaling only).
	Reconnects int
	// Hold keeps the sessions open this long after the joins.
	Hold time.Duration
	// Restarts, when set, holds the sessions (after Hold) until it is
	// closed. Each value received announces a restart of the server: every
	// session is then expected to be lost and to come back (Rejoin), and
	// EventRestored is observed once all have.
	Restarts <-chan struct{}
	// Rejoin reconnects a session lost while held with its session binding
	// (Signaling only), retrying every attempt (RejoinTimeout each) after a
	// backoff from 100 ms doubling to 2 s, jittered, until it is back, it is
	// refused for good (NOT_FOUND, UNAUTHORIZED, FORBIDDEN,
	// INVALID_REQUEST) or the hold ends.
	Rejoin        bool
	RejoinTimeout time.Duration // default 3 s
	// Resume keeps each session's TLS session ticket, so that its
	// reconnections resume the TLS session when the server allows it.
	Resume bool
	// Leave closes sessions cleanly at the end (a leave); otherwise they
	// are dropped as a lost network would.
	Leave bool
	// MaxDuration bounds the whole run, default 5 min, at most MaxRunTime.
	MaxDuration time.Duration

	Tokens Tokens // required for Signaling
	// Assign, when set, creates each meeting before the joins.
	Assign func(ctx context.Context, meetingID string) error
	// Observe, when set, is told when each phase ends.
	Observe func(Event)
}

// Phases reported through Config.Observe.
const (
	EventPrepared    = "prepared"    // the meetings exist and the tokens are minted; the joins start now
	EventJoined      = "joined"      // every join has succeeded or failed; sessions are held
	EventMuted       = "muted"       // the host-mute rounds are over
	EventReconnected = "reconnected" // the reconnections are over
	// EventRestored: after a restart was announced (Config.Restarts), every
	// session that was joined is back (Joined of them; Recovered got their
	// participant back; Resumed resumed their TLS session) or was refused
	// for good (Failed: its meeting or token is gone).
	EventRestored = "restored"
)

// Event is the end of a phase.
type Event struct {
	Name   string `json:"event"`
	Joined int    `json:"joined"`
	Failed int    `json:"failed"`
	// EventRestored only: how many came back with their participant and
	// with a resumed TLS session, and the seconds from the announcement
	// until the last was back.
	Recovered int     `json:"recovered,omitempty"`
	Resumed   int     `json:"resumed,omitempty"`
	Seconds   float64 `json:"seconds,omitempty"`
}

// Report is a run's outcome. Latencies are in milliseconds.
type Report struct {
	Protocol       Protocol       `json:"protocol"`
	Sessions       int            `json:"sessions"`
	Meetings       int            `json:"meetings"`
	Joined         int            `json:"joined"`
	Failures       map[string]int `json:"failures,omitempty"` // join failures by reason
	JoinSeconds    float64        `json:"join_seconds"`
	JoinsPerSecond float64        `json:"joins_per_second"`
	JoinLatency    Summary        `json:"join_latency"`
	// FanOut is per host-mute round: the host's send until the last other
	// participant of the meeting received the update.
	FanOut         Summary        `json:"fanout_latency"`
	FanOutFailures map[string]int `json:"fanout_failures,omitempty"`
	Reconnect      Summary        `json:"reconnect_latency"`
	ReconnectFails map[string]int `json:"reconnect_failures,omitempty"`
	Recovered      int            `json:"recovered"` // reconnections that got their participant back
	Lost           int            `json:"lost"`      // held sessions the server or network ended
	// Rejoin is per session lost while held (Config.Rejoin): from the
	// loss until it was back; RejoinFailures counts failed attempts.
	Rejoin         Summary        `json:"rejoin_latency"`
	RejoinFailures map[string]int `json:"rejoin_failures,omitempty"`
	Resumed        int            `json:"resumed"` // reconnections that resumed their TLS session
}

// JoinError is a failed join; Reason is the key it is counted under in
// Report.Failures ("dial", "timeout", "closed", an ErrorCode name, ...).
type JoinError struct {
	Reason string
	Err    error
}

func (e *JoinError) Error() string { return "loadgen: join: " + e.Reason + ": " + e.Err.Error() }

func (e *JoinError) Unwrap() error { return e.Err }

// ErrConfig is matched by every configuration error of Run.
var ErrConfig = errors.New("loadgen: invalid configuration")

func (c *Config) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)
	}
	if err := CheckLoopbackURL(c.URL); err != nil {
		return err
	}
	if c.Protocol == "" {
		c.Protocol = Signaling
	}
	switch {
	case c.Protocol != Signaling && c.Protocol != Echo:
		return bad("unknown protocol %q", c.Protocol)
	case c.Sessions < 1 || c.Sessions > MaxSessions:
		return bad("sessions must be 1 to %d", MaxSessions)
	case len(c.Meetings) < 1 || len(c.Meetings) > c.Sessions:
		return bad("meetings must be 1 to the number of sessions")
	case c.Rate < 0 || c.Concurrency < 0 || c.Mutes < 0 || c.MuteMeetings < 0 || c.Reconnects < 0 || c.Hold < 0 || c.Settle < 0 || c.MaxDuration < 0 || c.RejoinTimeout < 0:
		return bad("negative rate, concurrency, mutes, reconnects, hold or duration")
	case c.MaxDuration > MaxRunTime:
		return bad("duration is at most %v", MaxRunTime)
	case c.Protocol == Signaling && c.Tokens == nil:
		return bad("the signaling protocol needs a token source")
	case c.Protocol == Echo && (c.Reconnects > 0 || c.Rejoin):
		return bad("reconnections need the signaling protocol")
	case c.Reconnects > c.Sessions-len(c.Meetings):
		return bad("at most %d participants (sessions that are not hosts) can reconnect", c.Sessions-len(c.Meetings))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 64
	}
	def(&c.JoinTimeout, 10*time.Second)
	def(&c.MuteGap, 20*time.Millisecond)
	def(&c.MuteTimeout, 5*time.Second)
	def(&c.MaxDuration, 5*time.Minute)
	def(&c.RejoinTimeout, 3*time.Second)
	return nil
}

// run is one Run's state.
type run struct {
	cfg      Config
	clients  []*client
	meetings []*meetingRun

	joins, fanout, reconnects, rejoins tally
	recovered, lost, resumed           atomic.Int64

	readCtx context.Context // ends every reader at the very end
	readers sync.WaitGroup

	observeMu sync.Mutex // Observe is called from one goroutine at a time

	// Rejoins while held (Config.Rejoin): holdCtx ends them; rejoinMu
	// guards starting one against the end of the hold.
	holdCtx    context.Context
	rejoinMu   sync.Mutex
	holdOver   bool
	rejoining  sync.WaitGroup
	handshakes chan struct{} // bounds handshakes in flight while rejoining
	restart    restartState
}

// restartState tracks the sessions expected back after an announced
// restart.
type restartState struct {
	mu        sync.Mutex
	epoch     int64 // announcements so far
	start     time.Time
	expected  int // sessions held when the restart was announced
	waiting   int // of them, not back yet
	recovered int
	resumed   int
	gone      int // refused for good
}

// meetingRun is one meeting of the run.
type meetingRun struct {
	id      string
	host    *client
	members []*client // every session of the meeting, host included
	cur     atomic.Pointer[round]
}

// round is one host-mute awaiting its arrivals.
type round struct {
	left atomic.Int64
	end  atomic.Int64 // UnixNano of the last arrival
	done chan struct{}
}

// arrive counts one participant's receipt of the current round's update.
func (m *meetingRun) arrive(now time.Time) {
	rd := m.cur.Load()
	if rd != nil && rd.left.Add(-1) == 0 {
		rd.end.Store(now.UnixNano())
		close(rd.done)
	}
}

// client is one session. Its fields change only between phases; readers
// only touch the atomics.
type client struct {
	idx       int
	sub, name string
	m         *meetingRun
	host      bool
	token     string

	conn                      *webtransport.ClientConn
	pid, correlation, binding string
	joined, lost, ending      atomic.Bool
	readerDone                chan struct{}
	// epoch is the restart announcement this session last came back
	// after (restartState.epoch); rejoin goroutines own the fields above
	// while the session is lost.
	epoch   atomic.Int64
	held    atomic.Bool            // joined at least once
	gone    atomic.Bool            // a rejoin was refused for good
	tickets tls.ClientSessionCache // Config.Resume
}

// Run performs one load run and reports it. It returns an error only for a
// bad configuration or when the meetings or tokens cannot be prepared;
// failed joins and mutes are counted in the Report.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.check(); err != nil {
		return Report{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancel()
	readCtx, stopReaders := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReaders()
	holdCtx, endHold := context.WithCancel(ctx)
	defer endHold()
	r := &run{cfg: cfg, readCtx: readCtx, holdCtx: holdCtx, handshakes: make(chan struct{}, cfg.Concurrency)}
	for _, id := range cfg.Meetings {
		r.meetings = append(r.meetings, &meetingRun{id: id})
	}
	for i := range cfg.Sessions {
		m := r.meetings[i%len(r.meetings)]
		c := &client{idx: i, sub: fmt.Sprint("loadgen-", i), name: fmt.Sprint("lg-", i), m: m, host: i < len(r.meetings)}
		if c.host {
			m.host = c
		}
		if cfg.Resume {
			c.tickets = tls.NewLRUClientSessionCache(1)
		}
		m.members = append(m.members, c)
		r.clients = append(r.clients, c)
	}
	if err := r.prepare(ctx); err != nil {
		return Report{}, err
	}
	r.observe(EventPrepared)

	joinTime := r.joinAll(ctx)
	r.observe(EventJoined)
	holdUntil := time.Now().Add(cfg.Hold)
	if cfg.Mutes > 0 {
		sleep(ctx, cfg.Settle)
		r.muteAll(ctx)
		r.observe(EventMuted)
	}
	if cfg.Reconnects > 0 {
		r.reconnectAll(ctx)
		r.observe(EventReconnected)
	}
	sleep(ctx, time.Until(holdUntil))
	if cfg.Restarts != nil {
		r.awaitRestarts(ctx)
	}
	r.rejoinMu.Lock()
	r.holdOver = true
	r.rejoinMu.Unlock()
	endHold()
	r.rejoining.Wait()
	r.closeAll()
	stopReaders()
	r.readers.Wait()
	return r.report(joinTime), nil
}

// prepare creates the meetings and mints every session's token, so that
// neither counts in the join figures.
func (r *run) prepare(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(4, runtime.GOMAXPROCS(0)))
	if r.cfg.Assign != nil {
		for _, m := range r.meetings {
			g.Go(func() error { return r.cfg.Assign(gctx, m.id) })
		}
		if err := g.Wait(); err != nil {
			return fmt.Errorf("loadgen: creating meetings: %w", err)
		}
		g, gctx = errgroup.WithContext(ctx)
		g.SetLimit(max(4, runtime.GOMAXPROCS(0)))
	}
	if r.cfg.Protocol == Echo {
		return nil
	}
	for _, c := range r.clients {
		g.Go(func() (err error) {
			c.token, err = r.cfg.Tokens.JoinToken(gctx, c.sub, c.m.id, c.host)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("loadgen: minting tokens: %w", err)
	}
	return nil
}

func (r *run) observe(name string) {
	ok, failed := r.joins.count()
	r.observeEvent(Event{Name: name, Joined: ok, Failed: failed})
}

func (r *run) observeEvent(e Event) {
	if r.cfg.Observe == nil {
		return
	}
	r.observeMu.Lock()
	defer r.observeMu.Unlock()
	r.cfg.Observe(e)
}

// joinAll joins every session, paced by Rate or limited by Concurrency, and
// returns the time from the first join's start to the last one's end.
func (r *run) joinAll(ctx context.Context) time.Duration {
	start := time.Now()
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, c := range r.clients {
		var at time.Time // latency counts from here
		if r.cfg.Rate > 0 {
			at = start.Add(time.Duration(float64(i) / r.cfg.Rate * float64(time.Second)))
			if !sleep(ctx, time.Until(at)) {
				break
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		if at.IsZero() {
			at = time.Now() // closed loop: from the join's own start
		}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, resp, err := r.handshake(ctx, c, c.token, false, r.cfg.JoinTimeout)
			if err != nil {
				r.joins.fail(reason(err))
				return
			}
			r.joins.ok(time.Since(at))
			r.attach(c, conn, resp)
		})
	}
	wg.Wait()
	return time.Since(start)
}

// handshake dials and joins within timeout. A failure is a *JoinError.
func (r *run) handshake(ctx context.Context, c *client, token string, rebind bool, timeout time.Duration) (*webtransport.ClientConn, *pb.JoinResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(stage string, err error) error {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			stage = "timeout"
		}
		return &JoinError{Reason: stage, Err: err}
	}
	opts := r.cfg.Dial
	if c.tickets != nil {
		opts.SessionCache = c.tickets
	}
	conn, err := webtransport.Dial(ctx, r.cfg.URL, opts)
	if err != nil {
		return nil, nil, fail("dial", err)
	}
	jr := &pb.JoinRequest{MeetingId: c.m.id, JoinToken: token, ParticipantName: c.name}
	if rebind {
		jr.CorrelationId, jr.BindingToken = c.correlation, c.binding
	}
	if err := conn.Send(&pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: jr}}); err != nil {
		conn.Abort()
		return nil, nil, fail("send", err)
	}
	b, err := conn.RecvFrame(ctx)
	if err != nil {
		conn.Abort()
		var closed *webtransport.SessionClosedError
		if errors.As(err, &closed) {
			return nil, nil, fail("closed", err)
		}
		return nil, nil, fail("read", err)
	}
	if r.cfg.Protocol == Echo {
		return conn, nil, nil
	}
	msg, err := webtransport.DecodeServerMessage(b)
	switch {
	case err != nil:
		err = fail("undecodable", err)
	case msg.GetJoinResponse() != nil:
		return conn, msg.GetJoinResponse(), nil
	case msg.GetError() != nil:
		err = &JoinError{Reason: msg.GetError().GetCode().String(), Err: errors.New(msg.GetError().GetMessage())}
	default:
		err = fail("unexpected_message", fmt.Errorf("first answer is field %d", messageKind(b)))
	}
	conn.Close()
	return nil, nil, err
}

// reason is the failure key of a handshake error.
func reason(err error) string {
	var je *JoinError
	if errors.As(err, &je) {
		return je.Reason
	}
	return "other"
}

// attach makes conn the client's session and starts its reader.
func (r *run) attach(c *client, conn *webtransport.ClientConn, resp *pb.JoinResponse) {
	c.conn = conn
	if resp != nil {
		c.pid, c.correlation, c.binding = resp.GetParticipantId(), resp.GetCorrelationId(), resp.GetBindingToken()
	}
	c.lost.Store(false)
	c.joined.Store(true)
	c.held.Store(true)
	done := make(chan struct{})
	c.readerDone = done
	r.readers.Go(func() {
		defer close(done)
		for {
			b, err := conn.RecvFrame(r.readCtx)
			if err != nil {
				if !c.ending.Load() && r.readCtx.Err() == nil {
					c.lost.Store(true)
					r.lost.Add(1)
					r.startRejoin(c, conn, done, err)
				}
				return
			}
			if !c.host && messageKind(b) == muteUpdateField {
				c.m.arrive(time.Now())
			}
		}
	})
}

// muteUpdateField is ServerMessage.participant_mute_update, and also
// ClientMessage.host_mute_request: the floor relays the host's request as
// is.
const muteUpdateField protowire.Number = 8

// messageKind returns the field number of the first length-delimited field
// numbered 1 to 11 (the ServerMessage oneof) in an encoded ServerMessage, 0
// when there is none or the encoding is broken.
func messageKind(b []byte) protowire.Number {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0
		}
		b = b[n:]
		if typ == protowire.BytesType && num >= 1 && num <= 11 {
			if _, n := protowire.ConsumeBytes(b); n < 0 {
				return 0
			}
			return num
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0
		}
		b = b[n:]
	}
	return 0
}

// muteAll runs the host-mute rounds of every meeting concurrently.
func (r *run) muteAll(ctx context.Context) {
	var wg sync.WaitGroup
	meetings := r.meetings
	if n := r.cfg.MuteMeetings; n > 0 && n < len(meetings) {
		meetings = meetings[:n]
	}
	for _, m := range meetings {
		wg.Go(func() { r.muteMeeting(ctx, m) })
	}
	wg.Wait()
}

func (r *run) muteMeeting(ctx context.Context, m *meetingRun) {
	if m.host == nil || !m.host.joined.Load() {
		return
	}
	var receivers []*client
	for _, c := range m.members {
		if !c.host && c.joined.Load() {
			receivers = append(receivers, c)
		}
	}
	if len(receivers) == 0 {
		return
	}
	target := receivers[0].pid
	for k := range r.cfg.Mutes {
		if !sleep(ctx, r.cfg.MuteGap) {
			return
		}
		expected := 0
		for _, c := range receivers {
			if !c.lost.Load() {
				expected++
			}
		}
		rd := &round{done: make(chan struct{})}
		rd.left.Store(int64(expected))
		m.cur.Store(rd)
		start := time.Now()
		err := m.host.conn.Send(&pb.ClientMessage{Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{
			ParticipantId: target, AudioMuted: k%2 == 0, Reason: "loadgen",
		}}})
		if err != nil {
			m.cur.Store(nil)
			r.fanout.fail("send")
			return
		}
		t := time.NewTimer(r.cfg.MuteTimeout)
		select {
		case <-rd.done:
			r.fanout.ok(time.Unix(0, rd.end.Load()).Sub(start))
		case <-t.C:
			r.fanout.fail("timeout")
		case <-ctx.Done():
		}
		t.Stop()
		m.cur.Store(nil)
		if rd.left.Load() > 0 {
			return // a timeout or the end of the run: later rounds would be confused by stragglers
		}
	}
}

// reconnectAll drops and rejoins Reconnects participants, spread over the
// meetings, with their session bindings.
func (r *run) reconnectAll(ctx context.Context) {
	sem := make(chan struct{}, r.cfg.Concurrency)
	var wg sync.WaitGroup
	n := 0
	for _, c := range r.clients {
		if n == r.cfg.Reconnects {
			break
		}
		if c.host || !c.joined.Load() || c.lost.Load() {
			continue
		}
		n++
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			r.reconnect(ctx, c)
		})
	}
	wg.Wait()
}

func (r *run) reconnect(ctx context.Context, c *client) {
	c.ending.Store(true)
	c.conn.Abort()
	<-c.readerDone
	c.ending.Store(false)
	c.joined.Store(false)
	token, err := r.cfg.Tokens.JoinToken(ctx, c.sub, c.m.id, false)
	if err != nil {
		r.reconnects.fail("token")
		return
	}
	start := time.Now()
	conn, resp, err := r.handshake(ctx, c, token, true, r.cfg.JoinTimeout)
	if err != nil {
		r.reconnects.fail(reason(err))
		return
	}
	r.reconnects.ok(time.Since(start))
	r.reattach(c, conn, resp)
}

// reattach gives c its new session, counting whether the server kept c's
// participant and whether TLS resumed, and says which.
func (r *run) reattach(c *client, conn *webtransport.ClientConn, resp *pb.JoinResponse) outcome {
	out := outcomeNew
	if resp.GetParticipantId() == c.pid {
		r.recovered.Add(1)
		out |= outcomeRecovered
	}
	if conn.Resumed() {
		r.resumed.Add(1)
		out |= outcomeResumed
	}
	r.attach(c, conn, resp)
	return out
}

// startRejoin starts bringing back a session lost while held
// (Config.Rejoin); conn is the lost session, done closes when its reader
// has returned, and err is how the session ended.
func (r *run) startRejoin(c *client, conn *webtransport.ClientConn, done <-chan struct{}, err error) {
	if !r.cfg.Rejoin {
		return
	}
	r.rejoinMu.Lock()
	defer r.rejoinMu.Unlock()
	if r.holdOver {
		return
	}
	lostAt := time.Now()
	var closed *webtransport.SessionClosedError
	byServer := errors.As(err, &closed)
	r.rejoining.Go(func() {
		<-done
		if byServer {
			// Close the connection as a client does when told to go.
			conn.Close()
		} else {
			conn.Abort()
		}
		c.joined.Store(false)
		r.rejoin(c, lostAt)
	})
}

// Backoff between a lost session's attempts to come back.
const (
	rejoinBackoffMin = 100 * time.Millisecond
	rejoinBackoffMax = 2 * time.Second
)

// rejoin reconnects c with its binding until it is back or the hold ends.
// At most Concurrency handshakes are in flight.
func (r *run) rejoin(c *client, lostAt time.Time) {
	ctx := r.holdCtx
	backoff := rejoinBackoffMin
	for {
		token, err := r.cfg.Tokens.JoinToken(ctx, c.sub, c.m.id, c.host)
		if err != nil {
			r.rejoins.fail("token")
			return
		}
		select {
		case r.handshakes <- struct{}{}:
		case <-ctx.Done():
			return
		}
		conn, resp, err := r.handshake(ctx, c, token, true, r.cfg.RejoinTimeout)
		<-r.handshakes
		if err == nil {
			r.rejoins.ok(time.Since(lostAt))
			r.back(c, r.reattach(c, conn, resp))
			return
		}
		if ctx.Err() != nil {
			return
		}
		why := reason(err)
		r.rejoins.fail(why)
		if refusedForGood(why) {
			c.gone.Store(true)
			r.back(c, outcomeGone)
			return
		}
		// Full jitter between half and all of the backoff.
		if !sleep(ctx, backoff/2+rand.N(backoff/2)) {
			return
		}
		backoff = min(2*backoff, rejoinBackoffMax)
	}
}

// awaitRestarts holds the sessions until Config.Restarts is closed,
// announcing each restart it receives.
func (r *run) awaitRestarts(ctx context.Context) {
	for {
		select {
		case _, ok := <-r.cfg.Restarts:
			if !ok {
				return
			}
			r.announceRestart()
		case <-ctx.Done():
			return
		}
	}
}

// announceRestart expects every session that has joined to be lost and come
// back from now on.
func (r *run) announceRestart() {
	st := &r.restart
	st.mu.Lock()
	defer st.mu.Unlock()
	st.epoch++
	st.start = time.Now()
	st.expected, st.recovered, st.resumed, st.gone = 0, 0, 0, 0
	for _, c := range r.clients {
		if c.held.Load() && !c.gone.Load() {
			st.expected++
		}
	}
	st.waiting = st.expected
}

// How a lost session came back.
type outcome int

const (
	outcomeNew       outcome = 0 // joined again, as a new participant
	outcomeRecovered outcome = 1 << iota
	outcomeResumed
	outcomeGone // refused for good
)

// refusedForGood reports whether a failed rejoin cannot succeed later.
func refusedForGood(reason string) bool {
	switch reason {
	case "NOT_FOUND", "UNAUTHORIZED", "FORBIDDEN", "INVALID_REQUEST":
		return true
	}
	return false
}

// back counts c as settled after the last announced restart; the last one
// is observed as EventRestored.
func (r *run) back(c *client, out outcome) {
	st := &r.restart
	st.mu.Lock()
	if st.epoch == 0 || c.epoch.Load() == st.epoch {
		st.mu.Unlock()
		return
	}
	c.epoch.Store(st.epoch)
	st.waiting--
	if out&outcomeRecovered != 0 {
		st.recovered++
	}
	if out&outcomeResumed != 0 {
		st.resumed++
	}
	if out&outcomeGone != 0 {
		st.gone++
	}
	ev := Event{Name: EventRestored, Joined: st.expected - st.gone, Failed: st.gone, Recovered: st.recovered, Resumed: st.resumed,
		Seconds: time.Since(st.start).Seconds()}
	done := st.waiting == 0
	st.mu.Unlock()
	if done {
		r.observeEvent(ev)
	}
}

// closeAll ends every open session: a clean close (leave) or a drop.
func (r *run) closeAll() {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, c := range r.clients {
		if !c.joined.Load() {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.ending.Store(true)
			if r.cfg.Leave {
				c.conn.Close()
			} else {
				c.conn.Abort()
			}
		})
	}
	wg.Wait()
}

func (r *run) report(joinTime time.Duration) Report {
	rep := Report{
		Protocol:       r.cfg.Protocol,
		Sessions:       r.cfg.Sessions,
		Meetings:       len(r.meetings),
		Failures:       r.joins.failures,
		JoinSeconds:    joinTime.Seconds(),
		JoinLatency:    Summarize(r.joins.lat),
		FanOut:         Summarize(r.fanout.lat),
		FanOutFailures: r.fanout.failures,
		Reconnect:      Summarize(r.reconnects.lat),
		ReconnectFails: r.reconnects.failures,
		Recovered:      int(r.recovered.Load()),
		Lost:           int(r.lost.Load()),
		Rejoin:         Summarize(r.rejoins.lat),
		RejoinFailures: r.rejoins.failures,
		Resumed:        int(r.resumed.Load()),
	}
	rep.Joined = rep.JoinLatency.Count
	if joinTime > 0 {
		rep.JoinsPerSecond = float64(rep.Joined) / joinTime.Seconds()
	}
	return rep
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
