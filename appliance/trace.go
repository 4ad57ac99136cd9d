package appliance

import (
	"context"

	"github.com/edgemc/edgemc/gc/tracectx"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// Trace context of client messages. A session handles one client message at
// a time: begin reads the message's trace_parent/trace_state (malformed
// values are dropped, never echoed) and returns the context the message is
// handled in, which carries a new span of the client's trace. Every log
// record of that handling gets the trace id, and every answer it causes
// carries the trace (stamp), so the client can follow its request.

// requestTrace is the trace of the client message a session is handling.
// Only the session's goroutine touches it.
type requestTrace struct{ t tracectx.Trace }

type requestTraceKey struct{}

// withRequestTrace gives a session's context the place where its current
// message's trace is kept.
func withRequestTrace(ctx context.Context) (context.Context, *requestTrace) {
	r := &requestTrace{}
	return context.WithValue(ctx, requestTraceKey{}, r), r
}

// beginRequest returns the context in which msg is handled.
func beginRequest(ctx context.Context, msg *pb.ClientMessage) context.Context {
	r, _ := ctx.Value(requestTraceKey{}).(*requestTrace)
	tctx, t, ok := tracectx.Continue(ctx, msg.GetTraceParent(), msg.GetTraceState())
	if r != nil {
		r.t = t // zero when the message carries no valid trace
	}
	if !ok {
		return ctx
	}
	return tctx
}

// sendError answers the current message with an error, carrying its trace.
func (r *requestTrace) sendError(p peer, code pb.ErrorCode, msg string) {
	m := errorMessage(code, msg)
	stampTrace(m, r.t)
	p.Send(m)
}

// stampTrace fills a server message's trace fields from t, when t is valid.
func stampTrace(m *pb.ServerMessage, t tracectx.Trace) *pb.ServerMessage {
	if t.Valid() {
		m.TraceParent, m.TraceState = t.Parent(), t.State
	}
	return m
}

// stamp fills a server message's trace fields with the trace of the op the
// meeting is running, if it has one.
func (m *meeting) stamp(msg *pb.ServerMessage) *pb.ServerMessage { return stampTrace(msg, m.trace) }

// traced runs fn as an op of the client message (or gRPC call) whose trace
// ctx carries: the meeting's log records and answers carry it meanwhile.
// It runs on the meeting goroutine.
func (m *meeting) traced(ctx context.Context, fn func()) {
	t, ok := tracectx.From(ctx)
	if !ok {
		fn()
		return
	}
	log := m.log
	m.trace, m.log = t, log.With(tracectx.LogKey, t.TraceIDString())
	defer func() { m.trace, m.log = tracectx.Trace{}, log }()
	fn()
}
