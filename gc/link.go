package gc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/internal/retry"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/gc/tracectx"
)

// Defaults of LinkConfig, from the Dark Tower contract.
const (
	DefaultBackoffBase           = time.Second
	DefaultBackoffMax            = 30 * time.Second
	DefaultFastInterval          = 10 * time.Second
	DefaultComprehensiveInterval = 30 * time.Second
	DefaultRPCTimeout            = 10 * time.Second
	DefaultConnectTimeout        = 5 * time.Second
	// DefaultMinInterval is edgemc's own floor, not the contract's, on the
	// heartbeat intervals of a GC's registration answer.
	DefaultMinInterval = time.Second
)

// ErrUnknownMC is returned when the GC answers NOT_FOUND: it does not (or no
// longer) know this MC, which must register again.
var ErrUnknownMC = errors.New("gc: GC does not know this MC")

// RejectedError is an explicit refusal of a registration by the GC.
type RejectedError struct {
	Message string // the GC's reason, as it sent it
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("gc: registration rejected by GC: %q", e.Message)
}

// Observer receives link events, e.g. for metrics. Methods must not block.
type Observer interface {
	// Heartbeat reports one heartbeat: kind "fast" or "comprehensive";
	// outcome "ok", "not_found" or "error".
	Heartbeat(kind, outcome string, d time.Duration)
	// Registration reports one attempt: "accepted", "rejected" or "error".
	Registration(outcome string)
}

type nopObserver struct{}

func (nopObserver) Heartbeat(string, string, time.Duration) {}
func (nopObserver) Registration(string)                     {}

// LinkConfig configures a Link. Zero durations select the contract defaults.
type LinkConfig struct {
	// Target is the GC address: "host:port" or "http://host:port" for
	// plaintext gRPC, "https://host[:port]" for TLS.
	Target string
	// Credentials secure an https:// Target, e.g.
	// (*tlsfiles.ClientTrust).Credentials; nil trusts the system roots.
	Credentials credentials.TransportCredentials
	// Tokens, when set, supplies the service token sent as
	// "authorization: Bearer <token>" on every call (FileToken, or the Auth
	// Controller's token source). Registration waits until it has one.
	Tokens TokenSource

	ID, Region, GRPCEndpoint, WebTransportEndpoint string
	MaxMeetings, MaxParticipants                   uint32

	// BackoffBase and BackoffMax shape the registration retry delay, whose
	// ceiling doubles from BackoffBase up to BackoffMax (1 s, 30 s); each
	// wait is drawn between half the ceiling and all of it.
	BackoffBase, BackoffMax time.Duration
	// FastInterval and ComprehensiveInterval apply when the GC's
	// registration response leaves its interval at 0 (10 s, 30 s).
	FastInterval, ComprehensiveInterval time.Duration
	// MinInterval is the shortest heartbeat interval accepted from the GC
	// (1 s): a shorter one is raised to it, with a warning, so that a
	// misconfigured GC cannot make its MCs hammer it.
	MinInterval time.Duration
	// RPCTimeout bounds each call (10 s); ConnectTimeout each connection
	// attempt (5 s).
	RPCTimeout, ConnectTimeout time.Duration

	Logger   *slog.Logger // nil discards the link's log
	Observer Observer
}

// LinkStatus is a snapshot of the link, for the status page. LastError never
// carries secrets. A zero LastRegistered means the GC has never accepted
// this MC since it started.
type LinkStatus struct {
	Registered                                  bool
	LastRegistered, LastFast, LastComprehensive time.Time
	ConsecutiveFailures                         int
	NextRetry                                   time.Time
	// DownSince is when the link stopped working: the first failed call
	// (or NOT_FOUND answer) since the last one that succeeded. Zero while
	// the link works.
	DownSince                           time.Time
	FastInterval, ComprehensiveInterval time.Duration
	LastError                           string
	// WaitingForToken is true while registration waits for the MC's
	// service token (from the Auth Controller).
	WaitingForToken bool
}

// Link keeps the MC registered with the GC and heartbeating.
type Link struct {
	cfg    LinkConfig
	load   LoadReporter
	sys    SystemSampler
	log    *slog.Logger
	obs    Observer
	conn   *grpc.ClientConn
	client internalpb.GlobalControllerServiceClient
	// wait sleeps between registration attempts; tests replace it.
	wait func(ctx context.Context, d time.Duration) error
	// randN returns a uniform random number in [0, n), for backoff
	// jitter; tests replace it.
	randN func(n int64) int64
	// clampWarned is set once a too-short interval from the GC was logged;
	// only Run's goroutine uses it.
	clampWarned bool

	mu     sync.Mutex
	status LinkStatus
}

// NewLink validates cfg and prepares the connection; nothing is sent until
// Run. sys may be nil (comprehensive heartbeats then report 0 % CPU/memory).
func NewLink(cfg LinkConfig, load LoadReporter, sys SystemSampler) (*Link, error) {
	if cfg.ID == "" {
		return nil, errors.New("gc: link needs the MC id")
	}
	if load == nil {
		return nil, errors.New("gc: link needs a LoadReporter")
	}
	setDefault(&cfg.BackoffBase, DefaultBackoffBase)
	setDefault(&cfg.BackoffMax, DefaultBackoffMax)
	setDefault(&cfg.FastInterval, DefaultFastInterval)
	setDefault(&cfg.ComprehensiveInterval, DefaultComprehensiveInterval)
	setDefault(&cfg.RPCTimeout, DefaultRPCTimeout)
	setDefault(&cfg.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&cfg.MinInterval, DefaultMinInterval)
	cfg.BackoffMax = max(cfg.BackoffMax, cfg.BackoffBase)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	addr, useTLS, err := parseTarget(cfg.Target)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	switch {
	case useTLS && cfg.Credentials != nil:
		creds = cfg.Credentials
	case useTLS:
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           reconnectBackoff(cfg),
			MinConnectTimeout: cfg.ConnectTimeout,
		}),
		grpc.WithUserAgent("edgemc"),
		grpc.WithChainUnaryInterceptor(tracectx.UnaryClientInterceptor()),
	}
	if cfg.Tokens != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(BearerCredentials(cfg.Tokens)))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("gc: GC client for %q: %w", cfg.Target, err)
	}
	l := &Link{
		cfg: cfg, load: load, sys: sys, log: cfg.Logger, obs: cfg.Observer,
		conn: conn, client: internalpb.NewGlobalControllerServiceClient(conn),
		wait: sleepCtx, randN: rand.Int64N,
	}
	l.status.FastInterval, l.status.ComprehensiveInterval = cfg.FastInterval, cfg.ComprehensiveInterval
	return l, nil
}

// reconnectBackoff paces the gRPC channel's own reconnection attempts. They
// are capped at half a fast heartbeat (and at BackoffMax), so that a GC that
// comes back after a long outage is reached by the next heartbeat: with the
// registration cap of 30 s, a channel left waiting out its backoff would
// fail several 10 s heartbeats fast against a GC that is already back. The
// pace of RPCs (registration backoff, heartbeat intervals) is the link's.
func reconnectBackoff(cfg LinkConfig) backoff.Config {
	limit := max(min(cfg.BackoffMax, cfg.FastInterval/2), cfg.BackoffBase)
	return backoff.Config{BaseDelay: cfg.BackoffBase, Multiplier: 2, Jitter: 0.2, MaxDelay: limit}
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// parseTarget turns a gc-url into a gRPC dial address and whether to use TLS.
func parseTarget(target string) (addr string, useTLS bool, err error) {
	return ParseTarget("GC target", target)
}

// ParseTarget turns a gRPC URL of a Dark Tower service ("host:port",
// "http://host[:port]" for plaintext, "https://host[:port]" for TLS) into a
// dial address and whether to use TLS. what names the URL in errors.
func ParseTarget(what, target string) (addr string, useTLS bool, err error) {
	if target == "" {
		return "", false, fmt.Errorf("gc: empty %s", what)
	}
	if !strings.Contains(target, "://") {
		if _, _, err := net.SplitHostPort(target); err != nil {
			return "", false, fmt.Errorf("gc: %s %q: %w", what, target, err)
		}
		return target, false, nil
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", false, fmt.Errorf("gc: %s: %w", what, err)
	}
	port := map[string]string{"http": "80", "https": "443"}[u.Scheme]
	switch {
	case port == "":
		return "", false, fmt.Errorf("gc: %s %q: scheme must be http or https", what, target)
	case u.Hostname() == "":
		return "", false, fmt.Errorf("gc: %s %q has no host", what, target)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.User != nil:
		return "", false, fmt.Errorf("gc: %s %q must be scheme://host[:port] only", what, target)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	return net.JoinHostPort(u.Hostname(), port), u.Scheme == "https", nil
}

// Close releases the connection to the GC. Call it after Run has returned
// and any final heartbeat was sent.
func (l *Link) Close() error { return l.conn.Close() }

// Status returns a snapshot of the link state.
func (l *Link) Status() LinkStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status
}

// Run registers and heartbeats until ctx is done, then returns nil. GC
// failures are logged and retried, never returned.
func (l *Link) Run(ctx context.Context) error {
	// flaps counts registrations the GC forgot before a single heartbeat
	// succeeded; they are spaced by the backoff so that a confused GC is
	// not hammered.
	for flaps := 0; ; {
		fast, comp, ok := l.register(ctx)
		if !ok {
			return nil
		}
		if l.heartbeat(ctx, fast, comp) {
			flaps = 0
		} else {
			flaps++
		}
		if ctx.Err() != nil {
			return nil
		}
		if flaps > 0 && l.wait(ctx, l.retryDelay(flaps)) != nil {
			return nil
		}
	}
}

// register retries RegisterMC with jittered exponential backoff until the GC
// accepts (returning the heartbeat intervals) or ctx is done (ok false).
func (l *Link) register(ctx context.Context) (fast, comp time.Duration, ok bool) {
	if !l.awaitToken(ctx) {
		return 0, 0, false
	}
	for attempt := 1; ; attempt++ {
		resp, err := l.registerOnce(ctx)
		if ctx.Err() != nil {
			return 0, 0, false
		}
		if err == nil {
			fast, comp = l.intervals(resp)
			l.update(func(s *LinkStatus) {
				s.Registered, s.LastRegistered = true, time.Now()
				s.ConsecutiveFailures, s.NextRetry, s.LastError, s.DownSince = 0, time.Time{}, "", time.Time{}
				s.FastInterval, s.ComprehensiveInterval = fast, comp
			})
			l.obs.Registration("accepted")
			l.log.Info("registered with GC", "gc", l.cfg.Target, "id", l.cfg.ID,
				"fast_interval", fast, "comprehensive_interval", comp)
			return fast, comp, true
		}
		delay := l.retryDelay(attempt)
		l.fail(err, time.Now().Add(delay))
		if rej := (*RejectedError)(nil); errors.As(err, &rej) {
			l.obs.Registration("rejected")
			l.log.Warn("GC REJECTED registration; retrying", "gc", l.cfg.Target, "id", l.cfg.ID,
				"gc_message", rej.Message, "retry_in", delay)
		} else {
			l.obs.Registration("error")
			l.log.Warn("GC registration failed; retrying", "gc", l.cfg.Target, "error", err, "retry_in", delay)
		}
		if l.wait(ctx, delay) != nil {
			return 0, 0, false
		}
	}
}

// awaitToken waits until the token source has a token (at once for a
// token file), so that registration is attempted as soon as the Auth
// Controller has answered, not at the next backoff step.
func (l *Link) awaitToken(ctx context.Context) bool {
	if l.cfg.Tokens == nil {
		return true
	}
	l.update(func(s *LinkStatus) { s.WaitingForToken = true })
	defer l.update(func(s *LinkStatus) { s.WaitingForToken = false })
	return WaitToken(ctx, l.cfg.Tokens) == nil
}

func (l *Link) registerOnce(ctx context.Context) (*internalpb.RegisterMCResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RPCTimeout)
	defer cancel()
	resp, err := l.client.RegisterMC(ctx, &internalpb.RegisterMCRequest{
		Id:                   l.cfg.ID,
		Region:               l.cfg.Region,
		GrpcEndpoint:         l.cfg.GRPCEndpoint,
		WebtransportEndpoint: l.cfg.WebTransportEndpoint,
		MaxMeetings:          l.cfg.MaxMeetings,
		MaxParticipants:      l.cfg.MaxParticipants,
	})
	if err != nil {
		return nil, fmt.Errorf("gc: RegisterMC: %w", err)
	}
	if !resp.GetAccepted() {
		return nil, &RejectedError{Message: resp.GetMessage()}
	}
	return resp, nil
}

// Heartbeat kinds, as the Observer and the log name them.
const (
	heartbeatFast          = "fast"
	heartbeatComprehensive = "comprehensive"
)

// heartbeat sends fast and comprehensive heartbeats, one of each at once and
// then at their intervals, until ctx is done or the GC forgets the MC. It
// reports whether any heartbeat was acknowledged.
func (l *Link) heartbeat(ctx context.Context, fast, comp time.Duration) (acked bool) {
	fastTick, compTick := time.NewTicker(fast), time.NewTicker(comp)
	defer fastTick.Stop()
	defer compTick.Stop()
	// send sends one heartbeat and reports whether the GC still knows the MC.
	send := func(kind string) bool {
		err := l.sendHeartbeat(ctx, kind, l.load.Load())
		acked = acked || err == nil
		if !errors.Is(err, ErrUnknownMC) {
			return true
		}
		l.log.Info("GC no longer knows this MC; registering again", "gc", l.cfg.Target)
		return false
	}
	if !send(heartbeatFast) || !send(heartbeatComprehensive) {
		return acked
	}
	for {
		var kind string
		select {
		case <-ctx.Done():
			return acked
		case <-fastTick.C:
			kind = heartbeatFast
		case <-compTick.C:
			kind = heartbeatComprehensive
		}
		if !send(kind) {
			return acked
		}
	}
}

// sendHeartbeat sends one heartbeat of kind reporting load; a comprehensive
// one also reports CPU and memory use (0 % without a SystemSampler or when
// sampling fails). A NOT_FOUND answer becomes ErrUnknownMC.
func (l *Link) sendHeartbeat(ctx context.Context, kind string, load Load) error {
	start := time.Now()
	var cpuPct, memPct float64
	if kind == heartbeatComprehensive && l.sys != nil {
		var err error
		if cpuPct, memPct, err = l.sys.Sample(ctx); err != nil {
			l.log.Debug("sampling CPU/memory failed; reporting 0", "error", err)
			cpuPct, memPct = 0, 0
		}
	}
	rctx, cancel := context.WithTimeout(ctx, l.cfg.RPCTimeout)
	defer cancel()
	// A failed call returns a nil response, whose GetAcknowledged is false.
	var resp interface{ GetAcknowledged() bool }
	var err error
	if kind == heartbeatFast {
		resp, err = l.client.FastHeartbeat(rctx, &internalpb.FastHeartbeatRequest{
			ControllerId: l.cfg.ID,
			Capacity:     wireCapacity(load),
			Health:       load.Health,
		})
	} else {
		resp, err = l.client.ComprehensiveHeartbeat(rctx, &internalpb.ComprehensiveHeartbeatRequest{
			ControllerId:       l.cfg.ID,
			Capacity:           wireCapacity(load),
			Health:             load.Health,
			CpuUsagePercent:    float32(clampPercent(cpuPct)),
			MemoryUsagePercent: float32(clampPercent(memPct)),
		})
	}
	return l.heartbeatDone(ctx, kind, start, resp.GetAcknowledged(), err)
}

// heartbeatDone records the outcome of one heartbeat. A NOT_FOUND answer
// becomes ErrUnknownMC.
func (l *Link) heartbeatDone(ctx context.Context, kind string, start time.Time, acked bool, err error) error {
	d := time.Since(start)
	if status.Code(err) == codes.NotFound {
		l.update(func(s *LinkStatus) {
			s.Registered = false
			if s.DownSince.IsZero() {
				s.DownSince = time.Now()
			}
		})
		l.obs.Heartbeat(kind, "not_found", d)
		return fmt.Errorf("gc: %s heartbeat: %w", kind, ErrUnknownMC)
	}
	if err == nil && !acked {
		err = errors.New("not acknowledged")
	}
	if err != nil {
		err = fmt.Errorf("gc: %s heartbeat: %w", kind, err)
		if ctx.Err() == nil { // not merely shutting down
			l.fail(err, time.Time{})
			l.obs.Heartbeat(kind, "error", d)
			l.log.Warn("GC heartbeat failed; will retry", "kind", kind, "gc", l.cfg.Target, "error", err)
		}
		return err
	}
	l.update(func(s *LinkStatus) {
		if kind == heartbeatFast {
			s.LastFast = time.Now()
		} else {
			s.LastComprehensive = time.Now()
		}
		s.ConsecutiveFailures, s.LastError, s.DownSince = 0, "", time.Time{}
	})
	l.obs.Heartbeat(kind, "ok", d)
	return nil
}

// SendFinalHeartbeat sends one fast heartbeat saying DRAINING, whatever the
// LoadReporter says, so the GC stops assigning meetings here at once. Used
// on shutdown; it may run before or after Run has returned.
func (l *Link) SendFinalHeartbeat(ctx context.Context) error {
	load := l.load.Load()
	load.Health = internalpb.HealthStatus_DRAINING
	return l.sendHeartbeat(ctx, heartbeatFast, load)
}

// NotifyMeetingEnded tells the GC that a meeting held here has ended.
func (l *Link) NotifyMeetingEnded(ctx context.Context, meetingID string) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RPCTimeout)
	defer cancel()
	resp, err := l.client.NotifyMeetingEnded(ctx, &internalpb.NotifyMeetingEndedRequest{
		MeetingId: meetingID,
		Region:    l.cfg.Region,
	})
	switch {
	case status.Code(err) == codes.NotFound:
		return fmt.Errorf("gc: NotifyMeetingEnded: %w", ErrUnknownMC)
	case err != nil:
		return fmt.Errorf("gc: NotifyMeetingEnded: %w", err)
	case !resp.GetAcknowledged():
		return errors.New("gc: NotifyMeetingEnded: not acknowledged")
	}
	return nil
}

func wireCapacity(l Load) *internalpb.ControllerCapacity {
	return &internalpb.ControllerCapacity{
		MaxMeetings:         l.MaxMeetings,
		CurrentMeetings:     l.CurrentMeetings,
		MaxParticipants:     l.MaxParticipants,
		CurrentParticipants: l.CurrentParticipants,
	}
}

func (l *Link) update(f func(*LinkStatus)) {
	l.mu.Lock()
	f(&l.status)
	l.mu.Unlock()
}

func (l *Link) fail(err error, nextRetry time.Time) {
	l.update(func(s *LinkStatus) {
		if s.DownSince.IsZero() {
			s.DownSince = time.Now()
		}
		s.ConsecutiveFailures++
		s.LastError = err.Error()
		s.NextRetry = nextRetry
	})
}

// retryDelay is the wait after the attempt-th consecutive failure: the
// backoff ceiling with equal jitter, so that MCs that lost the GC together
// do not come back to it in lockstep.
func (l *Link) retryDelay(attempt int) time.Duration {
	return equalJitter(retry.Backoff(l.cfg.BackoffBase, l.cfg.BackoffMax, attempt), l.randN)
}

// equalJitter draws a wait uniformly from [d-d/2, d] with randN (uniform in
// [0, n)): never less than half the ceiling, so retries stay spaced.
func equalJitter(d time.Duration, randN func(int64) int64) time.Duration {
	half := d / 2
	return d - half + time.Duration(randN(int64(half)+1))
}

// intervals returns the heartbeat intervals of a registration answer. An
// interval raised to MinInterval is logged once per Link, at WARN, with the
// intervals the GC sent.
func (l *Link) intervals(resp *internalpb.RegisterMCResponse) (fast, comp time.Duration) {
	fastMS, compMS := resp.GetFastHeartbeatIntervalMs(), resp.GetComprehensiveHeartbeatIntervalMs()
	fast, fastRaised := l.gcInterval(fastMS, l.cfg.FastInterval)
	comp, compRaised := l.gcInterval(compMS, l.cfg.ComprehensiveInterval)
	if (fastRaised || compRaised) && !l.clampWarned {
		l.clampWarned = true
		l.log.Warn("GC asked for heartbeats more often than the minimum; using the minimum", "gc", l.cfg.Target,
			"fast_interval_received", time.Duration(fastMS)*time.Millisecond,
			"comprehensive_interval_received", time.Duration(compMS)*time.Millisecond,
			"minimum", l.cfg.MinInterval)
	}
	return fast, comp
}

// gcInterval converts an interval of the GC's answer, in milliseconds: def
// for 0 (none given) or more than a day, otherwise the GC's value, raised to
// MinInterval if shorter (raised reports whether it was).
func (l *Link) gcInterval(ms uint64, def time.Duration) (d time.Duration, raised bool) {
	if ms == 0 || ms > uint64(24*time.Hour/time.Millisecond) {
		return def, false
	}
	d = time.Duration(ms) * time.Millisecond
	return max(d, l.cfg.MinInterval), d < l.cfg.MinInterval
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
