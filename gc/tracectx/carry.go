package tracectx

import (
	"context"
	"log/slog"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// UnaryClientInterceptor adds traceparent (and tracestate, when there is
// one) to the metadata of every call: the caller's trace, or a new one.
func UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(outgoing(ctx), method, req, reply, cc, opts...)
	}
}

func outgoing(ctx context.Context) context.Context {
	t := Outbound(ctx)
	kv := []string{TraceParentHeader, t.Parent()}
	if t.State != "" {
		kv = append(kv, TraceStateHeader, t.State)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// UnaryServerInterceptor puts a new span of the caller's trace in the
// handler's context when the call carries one valid traceparent. Anything
// else leaves the context without a trace.
func UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return handler(Incoming(ctx), req)
	}
}

// Incoming returns ctx with the trace of a gRPC call's incoming metadata,
// when it carries exactly one valid traceparent.
func Incoming(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	parents := md.Get(TraceParentHeader)
	if len(parents) != 1 {
		return ctx
	}
	var state string
	if states := md.Get(TraceStateHeader); len(states) == 1 {
		state = states[0]
	}
	ctx, _, _ = Continue(ctx, parents[0], state)
	return ctx
}

// SetHeader puts the trace of ctx (or a new one) on an outbound HTTP
// request's header.
func SetHeader(ctx context.Context, h http.Header) {
	t := Outbound(ctx)
	h.Set(TraceParentHeader, t.Parent())
	if t.State != "" {
		h.Set(TraceStateHeader, t.State)
	} else {
		h.Del(TraceStateHeader)
	}
}

// LogKey is the attribute that names the trace of a log record.
const LogKey = "trace_id"

// NewLogHandler wraps h so that every record logged with a context carrying
// a trace (slog's *Context methods) gets a trace_id attribute.
func NewLogHandler(h slog.Handler) slog.Handler { return logHandler{h} }

type logHandler struct{ slog.Handler }

func (l logHandler) Handle(ctx context.Context, r slog.Record) error {
	if t, ok := From(ctx); ok {
		r = r.Clone()
		r.AddAttrs(slog.String(LogKey, t.TraceIDString()))
	}
	return l.Handler.Handle(ctx, r)
}

func (l logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return logHandler{l.Handler.WithAttrs(attrs)}
}

func (l logHandler) WithGroup(name string) slog.Handler {
	return logHandler{l.Handler.WithGroup(name)}
}

// Logger returns log with the trace id of ctx attached to every record, for
// code that logs without a context; log itself when ctx has no trace.
func Logger(ctx context.Context, log *slog.Logger) *slog.Logger {
	if t, ok := From(ctx); ok {
		return log.With(LogKey, t.TraceIDString())
	}
	return log
}
