package web

import (
	"context"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MailboxSource reports actor backlogs for mc_actor_mailbox_depth.
type MailboxSource interface {
	// MailboxDepths returns how many messages wait in the fullest meeting
	// mailbox and in the fullest connection's outbound queue.
	MailboxDepths() (meeting, connection int)
}

// stateTimeout bounds the status read of one scrape.
const stateTimeout = 5 * time.Second

// healthStates are the values of mc_health_state's state label.
var healthStates = []string{HealthPending, HealthHealthy, HealthDegraded, HealthUnhealthy, HealthDraining}

// stateCollector exports the appliance's states from the snapshot the
// status page shows, read at each scrape, so that the page and the metrics
// never disagree.
type stateCollector struct {
	src       StatusSource
	mailboxes MailboxSource

	meetings, meetingsMax, participants, participantsMax, connections, load *prometheus.Desc
	ready, health, storeHealthy, storeSize, gcRegistered, gcFailures        *prometheus.Desc
	certExpiry, linkCertExpiry, buildInfo, mailboxDepth                     *prometheus.Desc
}

// NewStateCollector returns a collector that reads src and mailboxes each
// time it is collected.
func NewStateCollector(src StatusSource, mailboxes MailboxSource) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &stateCollector{
		src:       src,
		mailboxes: mailboxes,
		meetings:  d("mc_meetings_active", "Meetings held by this meeting controller."),
		meetingsMax: d("mc_meetings_max",
			"The max-meetings setting; 0 means unlimited."),
		participants: d("mc_participants_active",
			"Participants holding a place here: connected, or disconnected within their reconnection grace. "+
				"It is what max-participants limits; mc_connections_active counts only the connected ones."),
		participantsMax: d("mc_participants_max",
			"The max-participants setting; 0 means unlimited."),
		connections: d("mc_connections_active",
			"Participants currently connected over WebTransport."),
		load: d("mc_capacity_load_ratio",
			"The fuller of the meeting and participant capacities as the capacity policy reads it (1 = full): "+
				"DEGRADED from 0.80, new meetings refused from 0.85, not ready from 0.95."),
		ready: d("mc_ready",
			"1 when the readiness probe (/ready, /health/ready) answers 200, else 0."),
		health: d("mc_health_state",
			"1 for the health this meeting controller reports to the global controller, 0 for the others.", "state"),
		storeHealthy: d("mc_store_healthy",
			"1 when the state store is usable, else 0."),
		storeSize: d("mc_store_file_size_bytes",
			"Size of the state file, while the store is usable."),
		gcRegistered: d("mc_gc_registered",
			"1 when registered with the global controller, else 0; absent without gc-url."),
		gcFailures: d("mc_gc_consecutive_failures",
			"Registrations and heartbeats that failed in a row since the last success; absent without gc-url."),
		certExpiry: d("mc_certificate_expiration_timestamp_seconds",
			"When the WebTransport certificate expires, in seconds since the Unix epoch."),
		linkCertExpiry: d("mc_tls_cert_expiry_timestamp_seconds",
			"Expiry (Unix time) of the certificate of each control-plane link: the gRPC server's own, the peer's of outbound links.",
			"link"),
		buildInfo: d("mc_build_info",
			"Always 1; the version label is edgemc's version.", "version"),
		mailboxDepth: d("mc_actor_mailbox_depth",
			"Messages waiting in the fullest mailbox of each actor_type: a meeting's mailbox, "+
				"a connection's outbound queue. Warning at 100 and critical at 500 for meetings; 50 and 200 for connections.",
			"actor_type"),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.meetings, c.meetingsMax, c.participants, c.participantsMax, c.connections, c.load,
		c.ready, c.health, c.storeHealthy, c.storeSize, c.gcRegistered, c.gcFailures,
		c.certExpiry, c.linkCertExpiry, c.buildInfo, c.mailboxDepth,
	} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	s := c.src.Status(ctx)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}

	gauge(c.meetings, float64(s.Capacity.Meetings))
	gauge(c.meetingsMax, float64(s.Capacity.MaxMeetings))
	gauge(c.participants, float64(s.Capacity.Participants))
	gauge(c.participantsMax, float64(s.Capacity.MaxParticipants))
	gauge(c.connections, float64(connected(s)))
	gauge(c.load, s.Capacity.Load())
	ready, _ := Ready(s)
	gauge(c.ready, boolValue(ready))
	for _, h := range healthStates {
		gauge(c.health, boolValue(s.Health == h), strings.ToLower(h))
	}
	gauge(c.storeHealthy, boolValue(s.Store.OK))
	if s.Store.OK {
		gauge(c.storeSize, float64(s.Store.FileSize))
	}
	if s.GC.Configured {
		gauge(c.gcRegistered, boolValue(s.GC.Registered))
		gauge(c.gcFailures, float64(s.GC.ConsecutiveFailures))
	}
	if !s.Identity.CertNotAfter.IsZero() {
		gauge(c.certExpiry, float64(s.Identity.CertNotAfter.Unix()))
	}
	for _, l := range s.ControlPlane {
		if !l.CertNotAfter.IsZero() {
			gauge(c.linkCertExpiry, float64(l.CertNotAfter.Unix()), l.Name)
		}
	}
	gauge(c.buildInfo, 1, s.Identity.Version)
	if c.mailboxes != nil {
		meeting, connection := c.mailboxes.MailboxDepths()
		gauge(c.mailboxDepth, float64(meeting), actorMeeting)
		gauge(c.mailboxDepth, float64(connection), actorConnection)
	}
}

// connected counts the participants the status shows as connected.
func connected(s Status) int {
	n := 0
	for _, m := range s.Meetings {
		for _, p := range m.Participants {
			if p.Connected {
				n++
			}
		}
	}
	return n
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
