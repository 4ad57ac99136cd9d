package web

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds edgemc's event collectors (prefix mc_). Where Dark Tower's
// meeting controller has a metric of the same meaning, edgemc exports it
// under Dark Tower's name, type, labels and buckets, so that Dark Tower's
// dashboards and alerts work unchanged. Its methods have plain signatures so
// that other packages' small observer interfaces are satisfied structurally,
// and they are no-ops on a nil *Metrics. States (meetings held, readiness,
// mailbox depths) are read when scraped: see [NewStateCollector].
type Metrics struct {
	joins              *prometheus.CounterVec
	joinDuration       *prometheus.HistogramVec
	joinFailures       *prometheus.CounterVec
	wtConnections      *prometheus.CounterVec
	wtRefused          *prometheus.CounterVec
	messagesDropped    *prometheus.CounterVec
	actorPanics        *prometheus.CounterVec
	heartbeats         *prometheus.CounterVec
	heartbeatLatency   *prometheus.HistogramVec
	registrations      *prometheus.CounterVec
	tokenChecks        *prometheus.CounterVec
	callerTypeRejected *prometheus.CounterVec
	storeOpDuration    *prometheus.HistogramVec
	storeCheckpoint    prometheus.Histogram
	storeErrors        *prometheus.CounterVec
	fencedOut          *prometheus.CounterVec
	nonceReplays       prometheus.Counter
	reconnections      *prometheus.CounterVec
	rateLimited        *prometheus.CounterVec
	cp                 controlPlaneMetrics // metrics_controlplane.go
	grpcRefused        *prometheus.CounterVec
	connsRefused       *prometheus.CounterVec
}

// Label values of Dark Tower's metrics that edgemc uses.
const (
	statusSuccess = "success"
	statusFailure = "failure"
	statusError   = "error"

	// actor_type values: a meeting's goroutine with its mailbox, and a
	// participant's signaling session with its outbound queue. edgemc's
	// controller is not an actor (it has no mailbox), so
	// actor_type="controller" is never exported.
	actorMeeting    = "meeting"
	actorConnection = "connection"

	fencedStaleGeneration = "stale_generation"
)

// NewMetrics creates every event collector and registers it on reg. It
// panics if a collector is already registered there, as
// prometheus.MustRegister does: that is a programming error.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_session_rate_limited_total",
			Help: "Signaling sessions over their message budget: dropped counts the first dropped message of a window, closed the sessions closed for it.",
		}, []string{"outcome"}),
		joins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_session_joins_total",
			Help: "Join attempts on signaling sessions, by status (success, failure). A reconnection that recovers its place is a success.",
		}, []string{"status"}),
		grpcRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_grpc_refused_total",
			Help: "gRPC calls refused before any work: missing or invalid service token (by token refusal reason), unknown method, wrong service type, missing scope.",
		}, []string{"reason"}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_connections_refused_total",
			Help: "TCP connections closed as soon as accepted, by listener (grpc, http) and bound (max_connections, max_connections_per_address).",
		}, []string{"listener", "reason"}),
		joinDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mc_session_join_duration_seconds",
			Help:    "Time from a signaling session being accepted to the answer of its join (JoinResponse or error), by status.",
			Buckets: []float64{.01, .025, .05, .1, .2, .5, 1, 2, 5},
		}, []string{"status"}),
		joinFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_session_join_failures_total",
			Help: "Failed joins, by error_type: jwt_validation, meeting_not_found, capacity_exceeded, invalid_request, internal, forbidden, conflict, stream_error, unknown.",
		}, []string{"error_type"}),
		wtConnections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_webtransport_connections_total",
			Help: "WebTransport sessions, by status: accepted; rejected by admission (draining, session limit); error (no valid CONNECT, or no stream in time).",
		}, []string{"status"}),
		wtRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_webtransport_connections_refused_total",
			Help: "WebTransport sessions not accepted, by reason (draining, max_sessions, upgrade, no_stream): the cause behind mc_webtransport_connections_total's rejected and error, which that metric does not carry.",
		}, []string{"reason"}),
		messagesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_messages_dropped_total",
			Help: "Messages dropped under backpressure, by actor_type. A connection that does not keep up (a message waited longer than slow-client-timeout, or 1 MiB was queued for it) is dropped as a slow client together with its queued messages; each count is one participant disconnected.",
		}, []string{"actor_type"}),
		actorPanics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_actor_panics_total",
			Help: "Panics recovered in actors, by actor_type; the actor's sessions are closed with an error and the process carries on.",
		}, []string{"actor_type"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_gc_heartbeats_total",
			Help: "Heartbeats sent to the global controller, by status (success, error; a NOT_FOUND answer is an error) and heartbeat_type (fast, comprehensive).",
		}, []string{"status", "heartbeat_type"}),
		heartbeatLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mc_gc_heartbeat_latency_seconds",
			Help:    "Round-trip time of heartbeats to the global controller, failed ones included, by heartbeat_type.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"heartbeat_type"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_gc_registrations_total",
			Help: "Registration attempts with the global controller, by outcome (accepted, rejected, error).",
		}, []string{"outcome"}),
		tokenChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_jwt_validations_total",
			Help: "Token checks, by result (success, failure), token_type (meeting, guest, service) and failure_reason (none when valid).",
		}, []string{"result", "token_type", "failure_reason"}),
		callerTypeRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_caller_type_rejected_total",
			Help: "gRPC calls refused because the caller's valid token has the wrong service_type, by grpc_service, expected_type and actual_type.",
		}, []string{"grpc_service", "expected_type", "actual_type"}),
		storeOpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mc_store_operation_duration_seconds",
			Help:    "Latency of state store operations, durable commit included, by operation. It takes the place of Dark Tower's mc_redis_latency_seconds.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"operation"}),
		storeCheckpoint: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mc_store_checkpoint_duration_seconds",
			Help:    "Time to fold the state store's write-ahead log into its database file; writers do not wait for it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_store_errors_total",
			Help: "Failed state store operations, by operation.",
		}, []string{"operation"}),
		fencedOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_fenced_out_total",
			Help: "Store writes refused by fencing, by reason. edgemc's store is written by one process, so the only reason is stale_generation: another owner holds a newer generation of the meeting.",
		}, []string{"reason"}),
		nonceReplays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mc_nonce_replays_refused_total", Help: "Session-binding nonces refused because they were already used.",
		}),
		reconnections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_reconnections_total", Help: "Reconnection attempts: recovered, or the reason of refusal.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(
		m.joins, m.joinDuration, m.joinFailures, m.wtConnections, m.wtRefused,
		m.messagesDropped, m.actorPanics, m.heartbeats, m.heartbeatLatency, m.registrations,
		m.tokenChecks, m.callerTypeRejected, m.storeOpDuration, m.storeCheckpoint, m.storeErrors, m.fencedOut,
		m.nonceReplays, m.reconnections, m.rateLimited,
		m.grpcRefused, m.connsRefused,
	)
	// Counters that alerts take rates of start at zero, so that their
	// first event is an increase rather than a new series.
	for _, s := range []string{statusSuccess, statusFailure} {
		m.joins.WithLabelValues(s)
	}
	for _, s := range []string{"accepted", "rejected", statusError} {
		m.wtConnections.WithLabelValues(s)
	}
	for _, s := range []string{statusSuccess, statusError} {
		for _, k := range []string{"fast", "comprehensive"} {
			m.heartbeats.WithLabelValues(s, k)
		}
	}
	for _, tt := range []string{"meeting", "guest", "service"} {
		m.tokenChecks.WithLabelValues(statusSuccess, tt, "none")
	}
	m.messagesDropped.WithLabelValues(actorConnection)
	m.actorPanics.WithLabelValues(actorMeeting)
	m.fencedOut.WithLabelValues(fencedStaleGeneration)
	m.cp = newControlPlaneMetrics(reg)
	return m
}

// joinErrorTypes maps the signaling ErrorCode a refused join was answered
// with to Dark Tower's error_type.
var joinErrorTypes = map[string]string{
	"UNAUTHORIZED":      "jwt_validation",
	"NOT_FOUND":         "meeting_not_found",
	"CAPACITY_EXCEEDED": "capacity_exceeded",
	"INVALID_REQUEST":   "invalid_request",
	"INTERNAL_ERROR":    "internal",
	"FORBIDDEN":         "forbidden",
	"CONFLICT":          "conflict",
	"STREAM_ERROR":      "stream_error",
}

// JoinDone records one join: its outcome is "ok", or the name of the
// signaling ErrorCode the client was answered with (e.g. "UNAUTHORIZED").
func (m *Metrics) JoinDone(d time.Duration, outcome string) {
	if m == nil {
		return
	}
	status := statusSuccess
	if outcome != "ok" {
		status = statusFailure
		errType, ok := joinErrorTypes[outcome]
		if !ok {
			errType = "unknown"
		}
		m.joinFailures.WithLabelValues(errType).Inc()
	}
	m.joins.WithLabelValues(status).Inc()
	m.joinDuration.WithLabelValues(status).Observe(d.Seconds())
}

// SessionAccepted counts a WebTransport session accepted.
func (m *Metrics) SessionAccepted() {
	if m == nil {
		return
	}
	m.wtConnections.WithLabelValues("accepted").Inc()
}

// SessionRefused counts a WebTransport session refused by admission
// (reason "draining" or "max_sessions").
func (m *Metrics) SessionRefused(reason string) {
	if m == nil {
		return
	}
	m.wtConnections.WithLabelValues("rejected").Inc()
	m.wtRefused.WithLabelValues(reason).Inc()
}

// SessionFailed counts a WebTransport session that failed before it was
// accepted (reason "upgrade" or "no_stream").
func (m *Metrics) SessionFailed(reason string) {
	if m == nil {
		return
	}
	m.wtConnections.WithLabelValues(statusError).Inc()
	m.wtRefused.WithLabelValues(reason).Inc()
}

// SlowClientDropped counts a connection dropped, with the message that did
// not fit, because its outbound queue was full.
func (m *Metrics) SlowClientDropped() {
	if m == nil {
		return
	}
	m.messagesDropped.WithLabelValues(actorConnection).Inc()
}

// PanicRecovered counts a panic recovered in an actor of actorType
// ("meeting" or "connection").
func (m *Metrics) PanicRecovered(actorType string) {
	if m == nil {
		return
	}
	m.actorPanics.WithLabelValues(actorType).Inc()
}

// Heartbeat counts a GC heartbeat of kind ("fast" or "comprehensive") with
// its outcome ("ok"; anything else is an error) and observes its round trip.
func (m *Metrics) Heartbeat(kind, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	status := statusSuccess
	if outcome != "ok" {
		status = statusError
	}
	m.heartbeats.WithLabelValues(status, kind).Inc()
	m.heartbeatLatency.WithLabelValues(kind).Observe(d.Seconds())
}

// Registration counts a registration attempt with the GC.
func (m *Metrics) Registration(outcome string) {
	if m == nil {
		return
	}
	m.registrations.WithLabelValues(outcome).Inc()
}

// TokenChecked counts one token check of tokenType ("meeting", "guest" or
// "service"): reason is "" for a valid token, else why it was refused.
func (m *Metrics) TokenChecked(tokenType, reason string) {
	if m == nil {
		return
	}
	result := statusSuccess
	if reason == "" {
		reason = "none"
	} else {
		result = statusFailure
	}
	m.tokenChecks.WithLabelValues(result, tokenType, reason).Inc()
}

// CallerTypeRejected counts a gRPC call to grpcService refused because the
// caller's service_type was actualType instead of expectedType.
func (m *Metrics) CallerTypeRejected(grpcService, expectedType, actualType string) {
	if m == nil {
		return
	}
	m.callerTypeRejected.WithLabelValues(grpcService, expectedType, actualType).Inc()
}

// StoreOp observes a store operation's latency and counts it as an error
// when err is not nil.
func (m *Metrics) StoreOp(op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.storeOpDuration.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}

// StoreCheckpoint observes how long a store checkpoint took, and counts a
// failed one as a store error of op "checkpoint".
func (m *Metrics) StoreCheckpoint(d time.Duration, err error) {
	if m == nil {
		return
	}
	m.storeCheckpoint.Observe(d.Seconds())
	if err != nil {
		m.storeErrors.WithLabelValues("checkpoint").Inc()
	}
}

// FencedOut counts a write refused because another owner holds a newer
// generation.
func (m *Metrics) FencedOut() {
	if m == nil {
		return
	}
	m.fencedOut.WithLabelValues(fencedStaleGeneration).Inc()
}

// NonceReplayRefused counts a replayed session-binding nonce.
func (m *Metrics) NonceReplayRefused() {
	if m == nil {
		return
	}
	m.nonceReplays.Inc()
}

// Reconnection counts a reconnection attempt: "recovered", or the reason it
// was refused.
func (m *Metrics) Reconnection(outcome string) {
	if m == nil {
		return
	}
	m.reconnections.WithLabelValues(outcome).Inc()
}

// RateLimited counts a session over its message budget (outcome "dropped" or
// "closed").
func (m *Metrics) RateLimited(outcome string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(outcome).Inc()
}

// GRPCRefused counts a gRPC call refused for reason.
func (m *Metrics) GRPCRefused(reason string) {
	if m == nil {
		return
	}
	m.grpcRefused.WithLabelValues(reason).Inc()
}

// ConnectionRefused counts a connection to listener ("grpc" or "http")
// closed at once for reason.
func (m *Metrics) ConnectionRefused(listener, reason string) {
	if m == nil {
		return
	}
	m.connsRefused.WithLabelValues(listener, reason).Inc()
}
