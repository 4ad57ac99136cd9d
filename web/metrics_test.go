package web

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.SetActive(3, 17)
	m.SessionAccepted()
	m.SessionAccepted()
	m.SessionRefused("capacity")
	m.JoinDone(4*time.Millisecond, "ok")
	m.Heartbeat("fast", "ok", 2*time.Millisecond)
	m.Heartbeat("comprehensive", "unavailable", time.Second)
	m.Registration("accepted")
	m.SetRegistered(true)
	m.StoreOp("put_roster", time.Millisecond, nil)
	m.StoreOp("put_roster", time.Millisecond, errors.New("disk full"))
	m.FencedOut()
	m.NonceReplayRefused()
	m.PanicRecovered()
	m.SlowClientDropped()
	m.MailboxDepth("meeting", 120)
	m.MailboxDepth("participant", 3)
	m.Reconnection("recovered")
	m.Reconnection("nonce_replayed")
	m.GRPCRefused("missing")
	m.ConnectionRefused("grpc", "max_connections")

	for _, c := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.meetingsActive, 3},
		{m.participantsActive, 17},
		{m.sessionsAccepted, 2},
		{m.sessionsRefused.WithLabelValues("capacity"), 1},
		{m.heartbeats.WithLabelValues("comprehensive", "unavailable"), 1},
		{m.registrations.WithLabelValues("accepted"), 1},
		{m.registered, 1},
		{m.storeErrors.WithLabelValues("put_roster"), 1},
		{m.fencedOut, 1},
		{m.nonceReplays, 1},
		{m.panicsRecovered, 1},
		{m.slowClientsDropped, 1},
		{m.reconnections.WithLabelValues("recovered"), 1},
		{m.grpcRefused.WithLabelValues("missing"), 1},
		{m.connsRefused.WithLabelValues("grpc", "max_connections"), 1},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%v = %v, want %v", c.c, got, c.want)
		}
	}
	m.SetRegistered(false)
	if got := testutil.ToFloat64(m.registered); got != 0 {
		t.Errorf("registered after false = %v", got)
	}

	// Every documented series is exposed on /metrics with the mc_ prefix.
	srv := newServer(t, Options{Registry: reg}, &fakeSource{})
	resp, body := get(t, srv.URL+"/metrics", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, series := range []string{
		"mc_meetings_active 3",
		"mc_participants_active 17",
		"mc_sessions_accepted_total 2",
		`mc_sessions_refused_total{reason="capacity"} 1`,
		`mc_join_duration_seconds_bucket{outcome="ok",le="0.005"} 1`,
		`mc_gc_heartbeats_total{kind="fast",outcome="ok"} 1`,
		`mc_gc_heartbeat_duration_seconds_count{kind="comprehensive"} 1`,
		`mc_gc_registrations_total{outcome="accepted"} 1`,
		"mc_gc_registered 0",
		`mc_store_operation_duration_seconds_count{op="put_roster"} 2`,
		`mc_store_errors_total{op="put_roster"} 1`,
		"mc_fenced_out_writes_total 1",
		"mc_nonce_replays_refused_total 1",
		"mc_panics_recovered_total 1",
		"mc_slow_clients_dropped_total 1",
		`mc_mailbox_depth_bucket{kind="meeting",le="100"} 0`,
		`mc_mailbox_depth_bucket{kind="meeting",le="200"} 1`,
		`mc_reconnections_total{outcome="nonce_replayed"} 1`,
	} {
		if !strings.Contains(body, series+"\n") {
			t.Errorf("/metrics lacks %q", series)
		}
	}
	for _, line := range strings.Split(body, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "mc_") {
			t.Errorf("series without mc_ prefix: %s", line)
		}
	}
}

// A nil *Metrics is a valid no-op observer, so packages can run without one.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.SetActive(1, 1)
	m.SessionAccepted()
	m.SessionRefused("x")
	m.JoinDone(time.Second, "ok")
	m.Heartbeat("fast", "ok", time.Second)
	m.Registration("ok")
	m.SetRegistered(true)
	m.StoreOp("op", time.Second, errors.New("x"))
	m.FencedOut()
	m.NonceReplayRefused()
	m.PanicRecovered()
	m.SlowClientDropped()
	m.MailboxDepth("meeting", 1)
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

func BenchmarkMetricsHeartbeat(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	for b.Loop() {
		m.Heartbeat("fast", "ok", time.Millisecond)
	}
}
