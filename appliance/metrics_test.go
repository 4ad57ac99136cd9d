package appliance

import (
	"context"
	"maps"
	"testing"

	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// metric reads the value of the series name{labels} from the appliance's
// registry, as a scrape would; ok is false when there is no such series.
func (e *env) metric(name string, labels map[string]string) (v float64, ok bool) {
	e.t.Helper()
	families, err := e.a.registry.Gather()
	if err != nil {
		e.t.Fatalf("gather: %v", err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if !maps.Equal(got, labels) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// expectMetric fails the test unless name{labels} is want.
func (e *env) expectMetric(name string, labels map[string]string, want float64) {
	e.t.Helper()
	if got, ok := e.metric(name, labels); !ok || got != want {
		e.t.Fatalf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
	}
}

// A write with a stale generation is refused by the store, counted, and
// stops the meeting.
func TestFencedOutIsCounted(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	alice := e.join("m1", "alice", "host")
	// Another owner takes the meeting: its generation moves on.
	if _, err := e.a.db.Acquire("m1"); err != nil {
		t.Fatal(err)
	}
	alice.send(&pb.ClientMessage{Message: &pb.ClientMessage_MuteRequest{MuteRequest: &pb.MuteRequest{AudioMuted: true}}})
	alice.expectError(pb.ErrorCode_INTERNAL_ERROR)
	e.expectMetric("mc_fenced_out_total", map[string]string{"reason": "stale_generation"}, 1)
}

// The state metrics are the numbers of the status page, read when scraped;
// the mailbox gauge shows a meeting's backlog.
func TestStateMetricsMatchStatus(t *testing.T) {
	e := newEnv(t)
	e.assign("m1")
	alice := e.join("m1", "alice", "host")
	bob := e.join("m1", "bob", "participant")
	alice.until("bob joined", isJoined(bob.resp.ParticipantId))
	bob.Abort() // a lost connection: bob keeps his place for the grace
	m := e.a.ctrl.lookup("m1")
	waitFor(t, "bob disconnected", func() bool {
		return !e.a.Status(context.Background()).Meetings[0].Participants[1].Connected
	})

	s := e.a.Status(context.Background())
	e.expectMetric("mc_meetings_active", nil, float64(s.Capacity.Meetings))
	e.expectMetric("mc_participants_active", nil, float64(s.Capacity.Participants))
	e.expectMetric("mc_connections_active", nil, 1)
	e.expectMetric("mc_ready", nil, 1)
	e.expectMetric("mc_health_state", map[string]string{"state": "healthy"}, 1)
	e.expectMetric("mc_store_healthy", nil, 1)
	e.expectMetric("mc_certificate_expiration_timestamp_seconds", nil, float64(s.Identity.CertNotAfter.Unix()))
	if s.Capacity.Participants != 2 {
		t.Fatalf("status shows %d participants, want 2", s.Capacity.Participants)
	}
	if _, ok := e.metric("mc_gc_registered", nil); ok {
		t.Error("mc_gc_registered exported without a GC")
	}

	// Hold the meeting's goroutine and queue three messages behind it.
	release := make(chan struct{})
	running := make(chan struct{})
	ctx := context.Background()
	if err := m.post(ctx, func() { close(running); <-release }); err != nil {
		t.Fatal(err)
	}
	<-running
	for range 3 {
		if err := m.post(ctx, func() {}); err != nil {
			t.Fatal(err)
		}
	}
	e.expectMetric("mc_actor_mailbox_depth", map[string]string{"actor_type": "meeting"}, 3)
	close(release)
	waitFor(t, "the mailbox to empty", func() bool {
		v, _ := e.metric("mc_actor_mailbox_depth", map[string]string{"actor_type": "meeting"})
		return v == 0
	})
}
