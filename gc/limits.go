package gc

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/tap"
)

// Limits bounds what one caller of the gRPC server can hold. Zero values take
// the defaults. The number of connections is bounded by the listener the
// server is given (see netlimit.Listener).
type Limits struct {
	// MaxStreams is the number of concurrent calls on one connection
	// (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). Default 32.
	MaxStreams uint32
	// RequestTimeout bounds the set-up of a new connection (TLS and the
	// HTTP/2 preface) and, for a call let in, the time from its headers to
	// its whole request. Default 10s.
	RequestTimeout time.Duration
	// IdleTimeout closes a connection that has had no call in progress for
	// this long. A caller without a valid token never has one, since its
	// calls are refused as soon as their headers arrive. Default 2m.
	IdleTimeout time.Duration
}

// Fixed limits: a caller needs no more.
const (
	// maxHeaderListBytes bounds a call's headers; a service token is far
	// smaller.
	maxHeaderListBytes = 16 << 10
	// keepalivePingMin is the shortest ping interval a client may use;
	// one that pings more often is disconnected (ENHANCE_YOUR_CALM).
	keepalivePingMin = 10 * time.Second
	// keepaliveTime and keepaliveTimeout find dead peers: a connection
	// silent for keepaliveTime is pinged and closed when the ping is not
	// answered within keepaliveTimeout.
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.MaxStreams == 0 {
		l.MaxStreams = 32
	}
	if l.RequestTimeout <= 0 {
		l.RequestTimeout = 10 * time.Second
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = 2 * time.Minute
	}
	return l
}

// serverOptions are the grpc.Server options that apply l, with g
// authenticating each call as soon as its headers arrive.
func (l Limits) serverOptions(g *guard) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InTapHandle(g.tap),
		grpc.MaxConcurrentStreams(l.MaxStreams),
		grpc.MaxHeaderListSize(maxHeaderListBytes),
		grpc.ConnectionTimeout(l.RequestTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: l.IdleTimeout,
			Time:              keepaliveTime,
			Timeout:           keepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepalivePingMin, PermitWithoutStream: true}),
		// Idle connections hold no write buffer of their own.
		grpc.SharedWriteBuffer(true),
	}
}

// errNoRequest ends a call whose request did not arrive within
// RequestTimeout.
var errNoRequest = errors.New("request not received in time")

// tapRefusalMaxDeadline is the longest deadline (grpc-timeout) of a call
// the tap refuses itself. grpc-go keeps the timer of such a call's deadline
// until it fires, since it does not cancel a call its tap refused; a call
// with a longer deadline is let through marked refused, and refused by the
// interceptors (at once when its request arrives, else after
// RequestTimeout), which grpc-go cleans up after.
const tapRefusalMaxDeadline = time.Second

type (
	requestTimerKey struct{}
	refusedKey      struct{}
)

// tap authenticates a call as soon as its headers arrive, on the
// connection's reader, before grpc-go spends a goroutine or a buffer on it:
// a refused call costs its HEADERS frame and the answer. A call let through
// must deliver its request within RequestTimeout.
func (g *guard) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	vctx, cancel := context.WithTimeout(ctx, g.limits.RequestTimeout)
	claims, err := g.authorize(vctx, info.FullMethodName)
	cancel()
	if err != nil {
		if d, ok := ctx.Deadline(); !ok || time.Until(d) <= tapRefusalMaxDeadline {
			return nil, err
		}
		ctx = context.WithValue(ctx, refusedKey{}, err)
	} else {
		ctx = context.WithValue(ctx, claimsKey{}, claims)
	}
	ctx, cancelCall := context.WithCancelCause(ctx)
	t := time.AfterFunc(g.limits.RequestTimeout, func() { cancelCall(errNoRequest) })
	return context.WithValue(ctx, requestTimerKey{}, t), nil
}

// requestArrived stops the timer the tap armed for the call of ctx.
func requestArrived(ctx context.Context) {
	if t, ok := ctx.Value(requestTimerKey{}).(*time.Timer); ok {
		t.Stop()
	}
}

// tapRefusal is the error of a call the tap let through refused.
func tapRefusal(ctx context.Context) error {
	err, _ := ctx.Value(refusedKey{}).(error)
	return err
}
