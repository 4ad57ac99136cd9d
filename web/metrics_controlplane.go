package web

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// controlPlaneMetrics are the collectors of edgemc's own service token, its
// media-handler registrations and the media state of participants. Names,
// labels and buckets follow Dark Tower's MC where it has the metric.
type controlPlaneMetrics struct {
	registerMeeting         *prometheus.CounterVec
	registerMeetingDuration prometheus.Histogram
	mhNotifications         *prometheus.CounterVec
	mhNotificationsUnknown  *prometheus.CounterVec
	tokenRefresh            *prometheus.CounterVec
	tokenRefreshDuration    prometheus.Histogram
	tokenRefreshFailures    *prometheus.CounterVec
	participantMHStatus     *prometheus.CounterVec
	participantMHIgnored    *prometheus.CounterVec
}

func newControlPlaneMetrics(reg prometheus.Registerer) controlPlaneMetrics {
	m := controlPlaneMetrics{
		registerMeeting: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_register_meeting_total", Help: "RegisterMeeting calls to media handlers, by status (success, error).",
		}, []string{"status"}),
		registerMeetingDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mc_register_meeting_duration_seconds",
			Help:    "Duration of RegisterMeeting calls to media handlers, connection included.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		mhNotifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_mh_notifications_received_total", Help: "MediaCoordinationService calls received from media handlers, by event_type (connected, disconnected).",
		}, []string{"event_type"}),
		mhNotificationsUnknown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_mh_notifications_unmatched_total",
			Help: "Media handler notifications acknowledged but not kept, by reason (unknown_meeting, unknown_participant, unknown_handler).",
		}, []string{"reason"}),
		tokenRefresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_token_refresh_total", Help: "Service-token acquisitions from the Auth Controller, by status (success, error).",
		}, []string{"status"}),
		tokenRefreshDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mc_token_refresh_duration_seconds",
			Help:    "Duration of service-token requests to the Auth Controller.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		tokenRefreshFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_token_refresh_failures_total",
			Help: "Failed service-token acquisitions, by error_type (http, auth_rejected, invalid_response, acquisition_failed, configuration).",
		}, []string{"error_type"}),
		participantMHStatus: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_participant_mh_status_total",
			Help: "Media handler connection states reported by clients (MediaConnectionUpdate), by state (connected, failed, disconnected, unspecified).",
		}, []string{"state"}),
		participantMHIgnored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_participant_mh_status_ignored_total",
			Help: "Client media connection reports not kept, by reason (unknown_url: a media handler URL the client was not given).",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.registerMeeting, m.registerMeetingDuration, m.mhNotifications, m.mhNotificationsUnknown,
		m.tokenRefresh, m.tokenRefreshDuration, m.tokenRefreshFailures, m.participantMHStatus, m.participantMHIgnored)
	return m
}

func outcome(ok bool) string {
	if ok {
		return "success"
	}
	return "error"
}

// RegisterMeeting counts one RegisterMeeting call to a media handler.
func (m *Metrics) RegisterMeeting(ok bool, d time.Duration) {
	if m == nil {
		return
	}
	m.cp.registerMeeting.WithLabelValues(outcome(ok)).Inc()
	m.cp.registerMeetingDuration.Observe(d.Seconds())
}

// MHNotification counts one MediaCoordinationService call.
func (m *Metrics) MHNotification(connected bool) {
	if m == nil {
		return
	}
	ev := "disconnected"
	if connected {
		ev = "connected"
	}
	m.cp.mhNotifications.WithLabelValues(ev).Inc()
}

// MHNotificationUnmatched counts a notification about a meeting,
// participant or media handler edgemc does not know.
func (m *Metrics) MHNotificationUnmatched(reason string) {
	if m == nil {
		return
	}
	m.cp.mhNotificationsUnknown.WithLabelValues(reason).Inc()
}

// TokenRefresh counts one service-token acquisition: kind is "" on
// success, else the failure's class.
func (m *Metrics) TokenRefresh(kind string, d time.Duration) {
	if m == nil {
		return
	}
	m.cp.tokenRefresh.WithLabelValues(outcome(kind == "")).Inc()
	m.cp.tokenRefreshDuration.Observe(d.Seconds())
	if kind != "" {
		m.cp.tokenRefreshFailures.WithLabelValues(kind).Inc()
	}
}

// ParticipantMHStatus counts one media handler state a client reported.
func (m *Metrics) ParticipantMHStatus(state string) {
	if m == nil {
		return
	}
	m.cp.participantMHStatus.WithLabelValues(state).Inc()
}

// ParticipantMHStatusIgnored counts one client report that was not kept.
func (m *Metrics) ParticipantMHStatusIgnored(reason string) {
	if m == nil {
		return
	}
	m.cp.participantMHIgnored.WithLabelValues(reason).Inc()
}
