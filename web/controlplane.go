package web

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TLSLink is the transport security of one control-plane link: the gRPC
// server, or an outbound link (GC, Auth Controller, media handlers).
type TLSLink struct {
	Name  string `json:"name"`  // stable id: "grpc-server", "gc", "jwks", ...
	Label string `json:"label"` // for people: "gRPC server", "Global Controller", ...
	URL   string `json:"url"`
	TLS   bool   `json:"tls"`
	// MutualTLS: the server requires client certificates, or an outbound
	// link shows one.
	MutualTLS bool `json:"mtls"`
	// The certificate: the server's own for the gRPC server, the peer's
	// from the last successful handshake for an outbound link.
	CertSubject  string    `json:"cert_subject,omitempty"`
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
	CertDaysLeft *int      `json:"cert_days_left,omitempty"` // whole days, negative once expired
	// Problem is the last certificate problem, in plain words.
	Problem string `json:"problem,omitempty"`
	// Warning says what is unsafe about the link, e.g. tokens sent in the
	// clear across the network.
	Warning string `json:"warning,omitempty"`
}

// SetCert records the link's certificate and its days left at now.
func (l *TLSLink) SetCert(subject string, notAfter, now time.Time) {
	if notAfter.IsZero() {
		return
	}
	days := int(math.Floor(notAfter.Sub(now).Hours() / 24))
	l.CertSubject, l.CertNotAfter, l.CertDaysLeft = subject, notAfter, &days
}

// ControlPlaneMetrics count refused service-token pins (each link's
// certificate expiry is a state metric: see [NewStateCollector]). Methods
// are no-ops on a nil *ControlPlaneMetrics.
type ControlPlaneMetrics struct {
	pinRefusals *prometheus.CounterVec
}

// NewControlPlaneMetrics registers the collectors on reg.
func NewControlPlaneMetrics(reg prometheus.Registerer) *ControlPlaneMetrics {
	m := &ControlPlaneMetrics{
		pinRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mc_service_token_pin_refusals_total",
			Help: "Service tokens refused for missing a pin (service-token-issuer, -audience, -subjects), by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.pinRefusals)
	return m
}

// PinRefused counts a service token refused by a pin.
func (m *ControlPlaneMetrics) PinRefused(reason string) {
	if m == nil {
		return
	}
	m.pinRefusals.WithLabelValues(reason).Inc()
}
