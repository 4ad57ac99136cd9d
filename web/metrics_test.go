package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// scrape serves reg and returns its /metrics text.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := newServer(t, Options{Registry: reg}, &fakeSource{})
	resp, body := get(t, srv.URL+"/metrics", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return body
}

// checkSeries asserts that every series line of want is in the exposition
// body, and that none of absent's metric names is.
func checkSeries(t *testing.T, body string, want, absent []string) {
	t.Helper()
	for _, series := range want {
		if !strings.Contains(body, "\n"+series+"\n") {
			t.Errorf("/metrics lacks %q", series)
		}
	}
	for _, name := range absent {
		if strings.Contains(body, "\n"+name+" ") || strings.Contains(body, "\n"+name+"{") {
			t.Errorf("/metrics has %s", name)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.JoinDone(4*time.Millisecond, "ok")
	m.JoinDone(30*time.Millisecond, "UNAUTHORIZED")
	m.JoinDone(time.Millisecond, "NOT_FOUND")
	m.JoinDone(time.Millisecond, "SOMETHING_NEW")
	m.SessionAccepted()
	m.SessionAccepted()
	m.SessionRefused("max_sessions")
	m.SessionFailed("no_stream")
	m.SlowClientDropped()
	m.PanicRecovered("meeting")
	m.Heartbeat("fast", "ok", 2*time.Millisecond)
	m.Heartbeat("comprehensive", "not_found", 300*time.Millisecond)
	m.Heartbeat("fast", "error", 2*time.Second)
	m.Registration("accepted")
	m.TokenChecked("meeting", "")
	m.TokenChecked("guest", "expired")
	m.TokenChecked("service", "scope_mismatch")
	m.CallerTypeRejected("MeetingControllerService", "global-controller", "media-handler")
	m.StoreOp("put_session", time.Millisecond, nil)
	m.StoreOp("put_session", time.Millisecond, errors.New("disk full"))
	m.StoreCheckpoint(30*time.Millisecond, nil)
	m.GRPCRefused("missing_token")
	m.ConnectionRefused("grpc", "max_connections")
	m.StoreCheckpoint(time.Millisecond, errors.New("sync failed"))
	m.FencedOut()
	m.NonceReplayRefused()
	m.Reconnection("recovered")
	m.Reconnection("replayed")

	body := scrape(t, reg)
	checkSeries(t, body, []string{
		`mc_session_joins_total{status="success"} 1`,
		`mc_session_joins_total{status="failure"} 3`,
		`mc_session_join_duration_seconds_bucket{status="success",le="0.01"} 1`,
		`mc_session_join_duration_seconds_bucket{status="failure",le="0.025"} 2`,
		`mc_session_join_duration_seconds_bucket{status="failure",le="0.05"} 3`,
		`mc_session_join_failures_total{error_type="jwt_validation"} 1`,
		`mc_session_join_failures_total{error_type="meeting_not_found"} 1`,
		`mc_session_join_failures_total{error_type="unknown"} 1`,
		`mc_webtransport_connections_total{status="accepted"} 2`,
		`mc_webtransport_connections_total{status="rejected"} 1`,
		`mc_webtransport_connections_total{status="error"} 1`,
		`mc_webtransport_connections_refused_total{reason="max_sessions"} 1`,
		`mc_webtransport_connections_refused_total{reason="no_stream"} 1`,
		`mc_messages_dropped_total{actor_type="connection"} 1`,
		`mc_actor_panics_total{actor_type="meeting"} 1`,
		`mc_gc_heartbeats_total{heartbeat_type="fast",status="success"} 1`,
		`mc_gc_heartbeats_total{heartbeat_type="fast",status="error"} 1`,
		`mc_gc_heartbeats_total{heartbeat_type="comprehensive",status="error"} 1`,
		`mc_gc_heartbeats_total{heartbeat_type="comprehensive",status="success"} 0`,
		`mc_gc_heartbeat_latency_seconds_bucket{heartbeat_type="fast",le="0.005"} 1`,
		`mc_gc_heartbeat_latency_seconds_bucket{heartbeat_type="fast",le="1"} 1`,
		`mc_gc_heartbeat_latency_seconds_bucket{heartbeat_type="fast",le="+Inf"} 2`,
		`mc_gc_heartbeat_latency_seconds_bucket{heartbeat_type="comprehensive",le="0.5"} 1`,
		`mc_gc_registrations_total{outcome="accepted"} 1`,
		`mc_jwt_validations_total{failure_reason="none",result="success",token_type="meeting"} 1`,
		`mc_jwt_validations_total{failure_reason="none",result="success",token_type="service"} 0`,
		`mc_jwt_validations_total{failure_reason="expired",result="failure",token_type="guest"} 1`,
		`mc_jwt_validations_total{failure_reason="scope_mismatch",result="failure",token_type="service"} 1`,
		`mc_caller_type_rejected_total{actual_type="media-handler",expected_type="global-controller",grpc_service="MeetingControllerService"} 1`,
		`mc_store_operation_duration_seconds_count{operation="put_session"} 2`,
		`mc_store_errors_total{operation="put_session"} 1`,
		`mc_store_checkpoint_duration_seconds_bucket{le="0.025"} 1`,
		`mc_store_checkpoint_duration_seconds_bucket{le="0.05"} 2`,
		`mc_store_errors_total{operation="checkpoint"} 1`,
		`mc_grpc_refused_total{reason="missing_token"} 1`,
		`mc_connections_refused_total{listener="grpc",reason="max_connections"} 1`,
		`mc_fenced_out_total{reason="stale_generation"} 1`,
		"mc_nonce_replays_refused_total 1",
		`mc_reconnections_total{outcome="replayed"} 1`,
	}, nil)
	for _, line := range strings.Split(body, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "mc_") {
			t.Errorf("series without mc_ prefix: %s", line)
		}
	}
	checkHelp(t, body)
}

// checkHelp asserts that every metric family has help text.
func checkHelp(t *testing.T, body string) {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ = strings.Cut(name, " ")
			if !strings.Contains(body, "# HELP "+name+" ") {
				t.Errorf("%s has no help", name)
			}
		}
	}
}

// Counters that alerts take rates of exist from the start, at zero.
func TestMetricsStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	checkSeries(t, scrape(t, reg), []string{
		`mc_session_joins_total{status="success"} 0`,
		`mc_session_joins_total{status="failure"} 0`,
		`mc_webtransport_connections_total{status="error"} 0`,
		`mc_gc_heartbeats_total{heartbeat_type="fast",status="error"} 0`,
		`mc_actor_panics_total{actor_type="meeting"} 0`,
		`mc_messages_dropped_total{actor_type="connection"} 0`,
		`mc_fenced_out_total{reason="stale_generation"} 0`,
		`mc_jwt_validations_total{failure_reason="none",result="success",token_type="guest"} 0`,
	}, []string{
		// Series whose labels only an event can give.
		"mc_session_join_failures_total", "mc_caller_type_rejected_total", "mc_store_errors_total",
		// Dark Tower's metrics of parts edgemc does not have yet are absent,
		// not zero.
		"mc_token_refresh_total", "mc_register_meeting_total", "mc_mh_notifications_received_total",
		"mc_redis_latency_seconds",
	})
}

// A nil *Metrics is a valid no-op observer, so packages can run without one.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.JoinDone(time.Second, "ok")
	m.SessionAccepted()
	m.SessionRefused("x")
	m.SessionFailed("x")
	m.SlowClientDropped()
	m.PanicRecovered("meeting")
	m.Heartbeat("fast", "ok", time.Second)
	m.Registration("ok")
	m.TokenChecked("meeting", "")
	m.CallerTypeRejected("s", "e", "a")
	m.StoreOp("op", time.Second, errors.New("x"))
	m.StoreCheckpoint(time.Second, errors.New("x"))
	m.FencedOut()
	m.NonceReplayRefused()
	m.Reconnection("recovered")
	m.GRPCRefused("missing")
	m.ConnectionRefused("http", "max_connections")
}

// Two appliances in one process (tests do this) each get their own registry.
func TestMetricsPerRegistry(t *testing.T) {
	a, b := NewMetrics(prometheus.NewRegistry()), NewMetrics(prometheus.NewRegistry())
	a.FencedOut()
	if testutil.ToFloat64(b.fencedOut) != 0 {
		t.Error("registries share state")
	}
	defer func() {
		if recover() == nil {
			t.Error("registering twice on one registry did not panic")
		}
	}()
	reg := prometheus.NewRegistry()
	NewMetrics(reg)
	NewMetrics(reg)
}

type fakeMailboxes struct{ meeting, connection int }

func (f fakeMailboxes) MailboxDepths() (int, int) { return f.meeting, f.connection }

// The state metrics are the status snapshot's numbers, read at each scrape.
func TestStateCollector(t *testing.T) {
	s := sampleStatus()
	src := &fakeSource{s: s}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewStateCollector(src, fakeMailboxes{meeting: 120, connection: 3}))
	body := scrape(t, reg)
	checkSeries(t, body, []string{
		"mc_meetings_active 1",
		"mc_meetings_max 100",
		"mc_participants_active 2",
		"mc_participants_max 1000",
		"mc_connections_active 1", // Bob is disconnected
		"mc_capacity_load_ratio 0.01",
		"mc_ready 1",
		`mc_health_state{state="healthy"} 1`,
		`mc_health_state{state="degraded"} 0`,
		"mc_store_healthy 1",
		"mc_store_file_size_bytes 1.048576e+06",
		"mc_gc_registered 1",
		"mc_gc_consecutive_failures 0",
		fmt.Sprintf("mc_certificate_expiration_timestamp_seconds %g", float64(s.Identity.CertNotAfter.Unix())),
		`mc_build_info{version="1.2.3"} 1`,
		`mc_actor_mailbox_depth{actor_type="meeting"} 120`,
		`mc_actor_mailbox_depth{actor_type="connection"} 3`,
	}, nil)
	checkHelp(t, body)

	// Each scrape reads the status again.
	src.update(func(s *Status) {
		s.Health = HealthDraining
		s.Draining = true
		s.Store = StoreStatus{OK: false, Error: "store unavailable"}
		s.GC = GCStatus{}
		s.Capacity.Participants = 900
		s.Meetings[0].Participants[0].Connected = false
	})
	checkSeries(t, scrape(t, reg), []string{
		"mc_participants_active 900",
		"mc_connections_active 0",
		"mc_capacity_load_ratio 0.9",
		"mc_ready 0",
		`mc_health_state{state="healthy"} 0`,
		`mc_health_state{state="draining"} 1`,
		"mc_store_healthy 0",
	}, []string{"mc_store_file_size_bytes", "mc_gc_registered", "mc_gc_consecutive_failures"})
}
