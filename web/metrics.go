package web

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds every edgemc collector (prefix mc_). Its methods have plain
// signatures so that other packages' small observer interfaces are satisfied
// structurally, and they are no-ops on a nil *Metrics.
type Metrics struct {
	meetingsActive     prometheus.Gauge
	participantsActive prometheus.Gauge
	sessionsAccepted   prometheus.Counter
	sessionsRefused    *prometheus.CounterVec
	joinDuration       *prometheus.HistogramVec
	heartbeats         *prometheus.CounterVec
	heartbeatDuration  *prometheus.HistogramVec
	registrations      *prometheus.CounterVec
	registered         prometheus.Gauge
	storeOpDuration    *prometheus.HistogramVec
	storeErrors        *prometheus.CounterVec
	fencedOut          prometheus.Counter
	nonceReplays       prometheus.Counter
	panicsRecovered    prometheus.Counter
	slowClientsDropped prometheus.Counter
	mailboxDepth       *prometheus.HistogramVec
	reconnections      *prometheus.CounterVec
	rateLimited        *prometheus.CounterVec
	grpcRefused        *prometheus.CounterVec
	connsRefused       *prometheus.CounterVec
}

// NewMetrics creates every collector and registers it on reg. It panics if a
// collector is already registered there, as prometheus.MustRegister does:
// that is a programming error.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_session_rate_limited_total",
			Help: "Signaling sessions over their message budget: dropped counts the first dropped message of a window, closed the sessions closed for it.",
		}, []string{"outcome"}),
		grpcRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_grpc_refused_total",
			Help: "gRPC calls refused before any work: missing or invalid service token (by token refusal reason), unknown method, wrong service type, missing scope.",
		}, []string{"reason"}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_connections_refused_total",
			Help: "TCP connections closed as soon as accepted, by listener (grpc, http) and bound (max_connections, max_connections_per_address).",
		}, []string{"listener", "reason"}),
		meetingsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mc_meetings_active", Help: "Meetings currently held by this meeting controller.",
		}),
		participantsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mc_participants_active", Help: "Participants currently in meetings on this meeting controller.",
		}),
		sessionsAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mc_sessions_accepted_total", Help: "WebTransport signaling sessions accepted.",
		}),
		sessionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_sessions_refused_total", Help: "WebTransport signaling sessions refused, by reason.",
		}, []string{"reason"}),
		joinDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mc_join_duration_seconds",
			Help:    "Time from the first signaling frame to the join answer, by outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"outcome"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_gc_heartbeats_total", Help: "Heartbeats sent to the global controller, by kind and outcome.",
		}, []string{"kind", "outcome"}),
		heartbeatDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mc_gc_heartbeat_duration_seconds",
			Help:    "Round-trip time of heartbeats to the global controller, by kind.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"kind"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_gc_registrations_total", Help: "Registration attempts with the global controller, by outcome.",
		}, []string{"outcome"}),
		registered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mc_gc_registered", Help: "1 when registered with the global controller, else 0.",
		}),
		storeOpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mc_store_operation_duration_seconds",
			Help:    "Latency of state store operations, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}, []string{"op"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_store_errors_total", Help: "Failed state store operations, by operation.",
		}, []string{"op"}),
		fencedOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mc_fenced_out_writes_total", Help: "Store writes refused because another owner holds a newer generation.",
		}),
		nonceReplays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mc_nonce_replays_refused_total", Help: "Session-binding nonces refused because they were already used.",
		}),
		panicsRecovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mc_panics_recovered_total", Help: "Panics recovered in connection or meeting goroutines.",
		}),
		slowClientsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mc_slow_clients_dropped_total", Help: "Participants dropped because they did not keep up: a message waited longer than slow-client-timeout, or 1 MiB was queued for them.",
		}),
		// A histogram rather than a gauge: depth is sampled at many
		// mailboxes, and a gauge would keep only the last sample. The
		// buckets include the warning and critical thresholds of both
		// kinds (participant 50/200, meeting 100/500).
		mailboxDepth: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mc_mailbox_depth",
			Help:    "Sampled mailbox depth, by kind (meeting or participant).",
			Buckets: []float64{0, 1, 10, 50, 100, 200, 500, 1000},
		}, []string{"kind"}),
		reconnections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_reconnections_total", Help: "Reconnection attempts: recovered, or the reason of refusal.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(
		m.meetingsActive, m.participantsActive, m.sessionsAccepted, m.sessionsRefused,
		m.joinDuration, m.heartbeats, m.heartbeatDuration, m.registrations, m.registered,
		m.storeOpDuration, m.storeErrors, m.fencedOut, m.nonceReplays, m.panicsRecovered,
		m.slowClientsDropped, m.mailboxDepth, m.reconnections, m.rateLimited,
		m.grpcRefused, m.connsRefused,
	)
	return m
}

// SetActive sets mc_meetings_active and mc_participants_active.
func (m *Metrics) SetActive(meetings, participants int) {
	if m == nil {
		return
	}
	m.meetingsActive.Set(float64(meetings))
	m.participantsActive.Set(float64(participants))
}

// SessionAccepted counts a signaling session accepted.
func (m *Metrics) SessionAccepted() {
	if m == nil {
		return
	}
	m.sessionsAccepted.Inc()
}

// SessionRefused counts a signaling session refused for reason.
func (m *Metrics) SessionRefused(reason string) {
	if m == nil {
		return
	}
	m.sessionsRefused.WithLabelValues(reason).Inc()
}

// JoinDone observes the latency of a join and its outcome.
func (m *Metrics) JoinDone(d time.Duration, outcome string) {
	if m == nil {
		return
	}
	m.joinDuration.WithLabelValues(outcome).Observe(d.Seconds())
}

// Heartbeat counts a GC heartbeat of kind (fast or comprehensive) with its
// outcome, and observes its round-trip time.
func (m *Metrics) Heartbeat(kind, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.heartbeats.WithLabelValues(kind, outcome).Inc()
	m.heartbeatDuration.WithLabelValues(kind).Observe(d.Seconds())
}

// Registration counts a registration attempt with the GC.
func (m *Metrics) Registration(outcome string) {
	if m == nil {
		return
	}
	m.registrations.WithLabelValues(outcome).Inc()
}

// SetRegistered sets mc_gc_registered.
func (m *Metrics) SetRegistered(registered bool) {
	if m == nil {
		return
	}
	v := 0.0
	if registered {
		v = 1
	}
	m.registered.Set(v)
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

// FencedOut counts a write refused by generation fencing.
func (m *Metrics) FencedOut() {
	if m == nil {
		return
	}
	m.fencedOut.Inc()
}

// NonceReplayRefused counts a replayed session-binding nonce.
func (m *Metrics) NonceReplayRefused() {
	if m == nil {
		return
	}
	m.nonceReplays.Inc()
}

// PanicRecovered counts a recovered panic.
func (m *Metrics) PanicRecovered() {
	if m == nil {
		return
	}
	m.panicsRecovered.Inc()
}

// SlowClientDropped counts a participant dropped for not keeping up.
func (m *Metrics) SlowClientDropped() {
	if m == nil {
		return
	}
	m.slowClientsDropped.Inc()
}

// MailboxDepth samples the depth of one mailbox of kind "meeting" or
// "participant" into the mc_mailbox_depth histogram.
func (m *Metrics) MailboxDepth(kind string, depth int) {
	if m == nil {
		return
	}
	m.mailboxDepth.WithLabelValues(kind).Observe(float64(depth))
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
