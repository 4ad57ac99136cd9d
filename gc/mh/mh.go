// Package mh is edgemc's client of Dark Tower's media handlers (MHs): it
// tells the MHs of a meeting that this MC holds it
// (MediaHandlerService.RegisterMeeting), which an MH needs before it keeps
// the meeting's clients.
//
// One gRPC connection per MH endpoint is shared by every meeting that uses
// that MH (a Lease holds it) and closed when the last Lease is released.
// A registration calls every MH of the meeting in parallel, each up to
// three times (1 s, then 2 s apart); an attempt waits up to 5 s for a
// connection, then up to 10 s for the answer; accepted=false is a failure. Cancelling its context stops it at
// once. Each call carries the MC's service token and trace context.
package mh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/edgemc/edgemc/gc"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/gc/tracectx"
)

// Defaults of Config, as Dark Tower's MC uses them.
const (
	DefaultAttempts       = 3
	DefaultConnectTimeout = 5 * time.Second
	DefaultRPCTimeout     = 10 * time.Second
)

// DefaultDelays are the waits before the second and third attempts.
var DefaultDelays = []time.Duration{time.Second, 2 * time.Second}

// reconnect paces the connection attempts of a channel while a call waits
// for it (ConnectTimeout), so that an MH that comes back is reached within
// that wait.
var reconnect = backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 2, Jitter: 0.2, MaxDelay: 2 * time.Second}

// ErrRefused is a RegisterMeeting answered accepted=false.
var ErrRefused = errors.New("media handler answered accepted=false")

// Handler is one MH of a meeting.
type Handler struct {
	ID           string
	GRPCEndpoint string // "host:port", "http://host:port" or "https://host:port"
}

// Result is the outcome of one RegisterMeeting attempt.
type Result struct {
	MHID    string
	Attempt int           // 1-based
	Err     error         // nil when the MH accepted
	Final   bool          // no attempt follows for this MH in this registration
	Took    time.Duration // connection and call
}

// Observer is told about every attempt (metrics); it must not block.
type Observer interface {
	RegisterMeeting(ok bool, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) RegisterMeeting(bool, time.Duration) {}

// Config configures a Client. Zero values take the defaults.
type Config struct {
	MCID, MCGRPCEndpoint string
	// Tokens supplies the MC's service token; registration waits until it
	// has one.
	Tokens gc.TokenSource
	// Credentials secure https endpoints; nil is TLS trusting the system
	// roots. Give ones that build their TLS configuration per connection
	// (tlsfiles.ClientTrust.Credentials) to follow a CA bundle that changes
	// on disk.
	Credentials credentials.TransportCredentials

	Attempts                   int
	Delays                     []time.Duration // before attempt 2, 3, ...; the last repeats
	ConnectTimeout, RPCTimeout time.Duration

	Logger   *slog.Logger // nil discards
	Observer Observer
}

// Client registers meetings with their MHs. It is safe for concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger
	obs Observer

	mu     sync.Mutex
	conns  map[string]*pooled // by endpoint
	closed bool
}

type pooled struct {
	cc     *grpc.ClientConn
	client internalpb.MediaHandlerServiceClient
	refs   int
}

// New returns a Client; it connects to nothing until a Lease is used.
func New(cfg Config) (*Client, error) {
	if cfg.MCID == "" || cfg.Tokens == nil {
		return nil, errors.New("mh: the MC id and a token source are required")
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = DefaultAttempts
	}
	if len(cfg.Delays) == 0 {
		cfg.Delays = DefaultDelays
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = DefaultRPCTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	return &Client{cfg: cfg, log: cfg.Logger, obs: cfg.Observer, conns: map[string]*pooled{}}, nil
}

// Conns is the number of open MH connections.
func (c *Client) Conns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}

// Close closes every connection; Leases used afterwards fail their calls.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for ep, p := range c.conns {
		p.cc.Close()
		delete(c.conns, ep)
	}
	return nil
}

// Lease is one meeting's hold on the connections to its MHs.
type Lease struct {
	c       *Client
	mhs     []Handler
	conns   map[string]*pooled // by endpoint; nil for an unusable endpoint
	errs    map[string]error   // why an endpoint is unusable
	release sync.Once
}

// Lease takes a reference to a connection for each MH endpoint, opening
// those not open yet. Release gives them back.
func (c *Client) Lease(mhs []Handler) *Lease {
	l := &Lease{c: c, mhs: mhs, conns: map[string]*pooled{}, errs: map[string]error{}}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range mhs {
		ep := h.GRPCEndpoint
		if _, done := l.conns[ep]; done || l.errs[ep] != nil {
			continue
		}
		p, err := c.conn(ep)
		if err != nil {
			l.errs[ep] = err
			continue
		}
		p.refs++
		l.conns[ep] = p
	}
	return l
}

// conn returns the pooled connection to ep, opening it if needed (c.mu held).
func (c *Client) conn(ep string) (*pooled, error) {
	if c.closed {
		return nil, errors.New("mh: client closed")
	}
	if p := c.conns[ep]; p != nil {
		return p, nil
	}
	addr, useTLS, err := gc.ParseTarget("media handler endpoint", ep)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if useTLS {
		creds = c.cfg.Credentials
		if creds == nil {
			creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
		}
	}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithPerRPCCredentials(gc.BearerCredentials(c.cfg.Tokens)),
		grpc.WithChainUnaryInterceptor(tracectx.UnaryClientInterceptor()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnect, MinConnectTimeout: c.cfg.ConnectTimeout}),
		grpc.WithUserAgent("edgemc"),
	)
	if err != nil {
		return nil, fmt.Errorf("mh: client for %q: %w", ep, err)
	}
	p := &pooled{cc: cc, client: internalpb.NewMediaHandlerServiceClient(cc)}
	c.conns[ep] = p
	return p, nil
}

// Release gives the Lease's connections back; a connection no Lease holds
// any more is closed. Calls of the Lease still running fail. Later calls do
// nothing.
func (l *Lease) Release() {
	l.release.Do(func() {
		c := l.c
		c.mu.Lock()
		defer c.mu.Unlock()
		for ep, p := range l.conns {
			p.refs--
			if p.refs == 0 && c.conns[ep] == p {
				p.cc.Close()
				delete(c.conns, ep)
			}
		}
	})
}

// Register tells every MH of the Lease that the MC holds meetingID, all in
// parallel, and returns when each has accepted or used up its attempts, or
// ctx is done. report gets every attempt's Result (from several goroutines
// at once); attempts cut short by ctx are not reported.
func (l *Lease) Register(ctx context.Context, meetingID string, report func(Result)) {
	var wg sync.WaitGroup
	for _, h := range l.mhs {
		wg.Go(func() { l.registerOne(ctx, meetingID, h, report) })
	}
	wg.Wait()
}

func (l *Lease) registerOne(ctx context.Context, meetingID string, h Handler, report func(Result)) {
	cfg := l.c.cfg
	log := tracectx.Logger(ctx, l.c.log).With("meeting", meetingID, "mh_id", h.ID, "mh_endpoint", h.GRPCEndpoint)
	if gc.WaitToken(ctx, cfg.Tokens) != nil {
		return
	}
	var lastErr error
	for attempt := 1; attempt <= cfg.Attempts; attempt++ {
		if attempt > 1 && !sleep(ctx, cfg.Delays[min(attempt-2, len(cfg.Delays)-1)]) {
			return
		}
		start := time.Now()
		err := l.call(ctx, meetingID, h)
		if ctx.Err() != nil {
			return
		}
		took := time.Since(start)
		l.c.obs.RegisterMeeting(err == nil, took)
		final := err == nil || attempt == cfg.Attempts
		report(Result{MHID: h.ID, Attempt: attempt, Err: err, Final: final, Took: took})
		switch {
		case err == nil && lastErr == nil:
			log.Debug("media handler registered the meeting")
			return
		case err == nil:
			log.Info("media handler registered the meeting after retries", "attempts", attempt, "earlier_error", lastErr.Error())
			return
		case final:
			log.Warn("media handler did NOT register the meeting; its clients will be dropped", "attempts", attempt, "error", err.Error())
		}
		lastErr = err
	}
}

// call makes one attempt: connect (ConnectTimeout), then RegisterMeeting
// (RPCTimeout).
func (l *Lease) call(ctx context.Context, meetingID string, h Handler) error {
	p := l.conns[h.GRPCEndpoint]
	if p == nil {
		return l.errs[h.GRPCEndpoint]
	}
	cfg := l.c.cfg
	if err := connect(ctx, p.cc, cfg.ConnectTimeout); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.RPCTimeout)
	defer cancel()
	resp, err := p.client.RegisterMeeting(rctx, &internalpb.RegisterMeetingRequest{
		MeetingId: meetingID, McId: cfg.MCID, McGrpcEndpoint: cfg.MCGRPCEndpoint,
	})
	switch {
	case err != nil:
		return fmt.Errorf("RegisterMeeting: %w", err)
	case !resp.GetAccepted():
		return ErrRefused
	}
	return nil
}

// connect waits until cc is ready, for at most timeout. A connection that
// failed earlier is retried at once instead of after its backoff, so that
// every attempt really tries to connect.
func connect(ctx context.Context, cc *grpc.ClientConn, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc.Connect()
	if cc.GetState() == connectivity.TransientFailure {
		cc.ResetConnectBackoff()
	}
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.Shutdown:
			return errors.New("connection closed")
		case connectivity.Idle:
			cc.Connect()
		}
		if !cc.WaitForStateChange(cctx, s) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("no connection to the media handler within %s", timeout)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
