package web

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/edgemc/edgemc/gc/capacity"
)

// Health values as reported to the Global Controller and shown on the page.
const (
	HealthPending   = "PENDING"
	HealthHealthy   = "HEALTHY"
	HealthDegraded  = "DEGRADED"
	HealthUnhealthy = "UNHEALTHY"
	HealthDraining  = "DRAINING"
)

// StatusSource yields a snapshot of the appliance. Implementations must not
// put secrets, join tokens or binding tokens in it.
type StatusSource interface {
	Status(ctx context.Context) Status
}

// Status is everything the status page, the JSON API and the readiness
// probe know about the appliance.
type Status struct {
	Identity Identity    `json:"identity"`
	Health   string      `json:"health"`
	Draining bool        `json:"draining"`
	GC       GCStatus    `json:"gc"`
	AC       *ACStatus   `json:"ac,omitempty"`
	Capacity Capacity    `json:"capacity"`
	System   System      `json:"system"`
	Store    StoreStatus `json:"store"`
	Meetings []Meeting   `json:"meetings"`
	Lab      *LabInfo    `json:"lab,omitempty"`

	// ControlPlane is the transport security of each control-plane link.
	ControlPlane []TLSLink `json:"control_plane"`
}

// Identity names this appliance and where clients and the GC reach it.
type Identity struct {
	ID              string    `json:"id"`
	Region          string    `json:"region"`
	Version         string    `json:"version"`
	WebTransportURL string    `json:"webtransport_url"`
	GRPCEndpoint    string    `json:"grpc_endpoint"`
	CertSHA256      string    `json:"cert_sha256"` // hex
	CertNotAfter    time.Time `json:"cert_not_after,omitzero"`
	StartedAt       time.Time `json:"started_at,omitzero"`
}

// GCStatus is the state of the link to the Global Controller. Zero times mean
// "never"; they are omitted from JSON.
type GCStatus struct {
	Configured        bool      `json:"configured"`
	Target            string    `json:"target"`
	Registered        bool      `json:"registered"`
	LastRegistered    time.Time `json:"last_registered,omitzero"`
	LastFast          time.Time `json:"last_fast,omitzero"`
	LastComprehensive time.Time `json:"last_comprehensive,omitzero"`
	NextRetry         time.Time `json:"next_retry,omitzero"`
	// DownSince is when the link stopped working (a failed call or a
	// NOT_FOUND answer after the last success); zero while it works.
	DownSince             time.Time     `json:"down_since,omitzero"`
	ConsecutiveFailures   int           `json:"consecutive_failures"`
	LastError             string        `json:"last_error,omitempty"`
	FastInterval          time.Duration `json:"fast_interval_ns"`
	ComprehensiveInterval time.Duration `json:"comprehensive_interval_ns"`
	// WaitingForToken: registration waits for edgemc's service token.
	WaitingForToken bool `json:"waiting_for_token,omitempty"`
}

// ACStatus is edgemc's own service token from the Auth Controller. It never
// holds the token or the client secret.
type ACStatus struct {
	URL                 string    `json:"url"`
	ClientID            string    `json:"client_id"`
	HasToken            bool      `json:"has_token"`
	ExpiresAt           time.Time `json:"expires_at,omitzero"`
	Scope               string    `json:"scope,omitempty"`
	LastSuccess         time.Time `json:"last_success,omitzero"`
	NextAttempt         time.Time `json:"next_attempt,omitzero"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastError           string    `json:"last_error,omitempty"`
	// LastErrorKind is the failure's class, as mc_token_refresh_failures_total
	// names it: http, auth_rejected, invalid_response, acquisition_failed,
	// configuration.
	LastErrorKind string `json:"last_error_kind,omitempty"`
}

// waitingReason says why no token is held, in words safe for anyone (no
// address, no text from the Auth Controller).
func (a *ACStatus) waitingReason() string {
	why := map[string]string{
		"auth_rejected":      "credentials refused",
		"http":               "auth controller unavailable",
		"invalid_response":   "invalid response from the auth controller",
		"configuration":      "client secret unreadable",
		"acquisition_failed": "token request failed",
	}[a.LastErrorKind]
	if why == "" {
		return "waiting for a service token from the auth controller"
	}
	return "waiting for a service token from the auth controller: " + why
}

// Capacity is the configured maximum and the current load. A maximum of zero
// means unlimited.
type Capacity struct {
	MaxMeetings     int `json:"max_meetings"`
	Meetings        int `json:"meetings"`
	MaxParticipants int `json:"max_participants"`
	Participants    int `json:"participants"`
}

// Policy is c as the capacity policy reads it.
func (c Capacity) Policy() capacity.Load {
	return capacity.Load{
		MaxMeetings: clampUint32(c.MaxMeetings), Meetings: clampUint32(c.Meetings),
		MaxParticipants: clampUint32(c.MaxParticipants), Participants: clampUint32(c.Participants),
	}
}

// Load returns the higher of the meeting and participant utilisation, as a
// fraction (1 = full). Unlimited dimensions count as empty.
func (c Capacity) Load() float64 { return c.Policy().Fraction() }

func clampUint32(n int) uint32 { return uint32(min(max(n, 0), math.MaxUint32)) }

// System is host and process resource usage.
type System struct {
	CPUPercent    float64 `json:"cpu_percent"` // the host's, all CPUs
	MemoryPercent float64 `json:"memory_percent"`
	RSSBytes      uint64  `json:"rss_bytes"`
	Goroutines    int     `json:"goroutines"`
	// ProcessCPUPercent is edgemc's own share of all the host's CPUs.
	ProcessCPUPercent float64 `json:"process_cpu_percent"`
}

// StoreStatus describes the state file.
type StoreStatus struct {
	Path          string `json:"path"`
	OK            bool   `json:"ok"`
	Error         string `json:"error,omitempty"`
	FileSize      int64  `json:"file_size"`
	Meetings      int    `json:"meetings"`
	MaxGeneration uint64 `json:"max_generation"`
}

// Meeting is one meeting held by this appliance.
type Meeting struct {
	ID            string        `json:"id"`
	Generation    uint64        `json:"generation"`
	CreatedAt     time.Time     `json:"created_at,omitzero"`
	MediaHandlers []string      `json:"media_handlers"`
	Participants  []Participant `json:"participants"`
	// MHRegistrations is the outcome of RegisterMeeting per media handler,
	// in assignment order.
	MHRegistrations []MHRegistration `json:"mh_registrations,omitempty"`
}

// States of MHRegistration.
const (
	MHPending     = "pending"     // nobody has joined yet: the MH has not been told
	MHRegistering = "registering" // an attempt is under way or due
	MHRegistered  = "registered"
	MHFailed      = "failed" // every attempt failed; the next first join tries again
)

// MHRegistration is what a media handler answered RegisterMeeting.
type MHRegistration struct {
	MHID         string    `json:"mh_id"`
	GRPCEndpoint string    `json:"grpc_endpoint"`
	State        string    `json:"state"`
	Attempts     int       `json:"attempts"` // in the latest registration
	LastError    string    `json:"last_error,omitempty"`
	UpdatedAt    time.Time `json:"updated_at,omitzero"`
}

// ParticipantMedia is a participant's media connections as both sides see
// them: the media handlers' notifications and the client's own reports.
type ParticipantMedia struct {
	// Connected counts the meeting's MHs that say the participant is
	// connected to them; Total is the meeting's MH count.
	Connected int                 `json:"connected"`
	Total     int                 `json:"total"`
	Handlers  []ParticipantMHLink `json:"handlers"`
}

// ParticipantMHLink is one participant's link to one media handler.
type ParticipantMHLink struct {
	MHID string `json:"mh_id"`
	URL  string `json:"url"`
	// MHConnected is the MH's view (NotifyParticipantConnected/Disconnected).
	MHConnected bool      `json:"mh_connected"`
	MHSince     time.Time `json:"mh_since,omitzero"`
	// ClientState is the client's last MediaConnectionUpdate for URL:
	// CONNECTED, FAILED, DISCONNECTED, UNSPECIFIED, or "" when it sent none.
	ClientState         string    `json:"client_state,omitempty"`
	ClientFailureReason string    `json:"client_failure_reason,omitempty"`
	ClientFailureCode   string    `json:"client_failure_code,omitempty"`
	ClientObservedAt    time.Time `json:"client_observed_at,omitzero"`
	// Disagree is set when the two views differ: the client says FAILED or
	// DISCONNECTED while the MH says connected, or the client says
	// CONNECTED while the MH does not.
	Disagree bool `json:"disagree"`
}

// Participant is one member of a meeting's roster.
type Participant struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	Role              string    `json:"role"`
	AudioSelfMuted    bool      `json:"audio_self_muted"`
	VideoSelfMuted    bool      `json:"video_self_muted"`
	AudioHostMuted    bool      `json:"audio_host_muted"`
	VideoHostMuted    bool      `json:"video_host_muted"`
	Connected         bool      `json:"connected"`
	DisconnectedSince time.Time `json:"disconnected_since,omitzero"`
	JoinedAt          time.Time `json:"joined_at,omitzero"`
	// Media is present when the meeting has media handlers.
	Media *ParticipantMedia `json:"media,omitempty"`
}

// LabInfo is present only in lab mode.
type LabInfo struct {
	MeetingID string `json:"meeting_id"`
	JoinPath  string `json:"join_path"`
	Note      string `json:"note"`
}

// Ready applies the readiness rule: the store is usable, it is not draining
// or unhealthy, the capacity policy finds it ready, and it has been
// accepted by the GC once since it started (or runs without one, or already
// holds meetings, recovered from its state file). Until then, an appliance
// that gets its service token from the Auth Controller and has none yet says
// so.
//
// Once accepted, losing the GC does not make the appliance unready: it
// keeps serving its meetings, and a GC outage reaches every appliance at
// the same moment, so a load balancer following readiness would drop the
// whole fleet at once. The reason then notes the GC; GCStatus has the
// detail. The reason is short and safe to show to anyone.
func Ready(s Status) (ok bool, reason string) {
	switch {
	case !s.Store.OK:
		return false, "store unavailable"
	case s.Draining || s.Health == HealthDraining:
		return false, "draining"
	case s.Health == HealthUnhealthy:
		return false, "unhealthy"
	case s.GC.Configured && s.GC.LastRegistered.IsZero() && len(s.Meetings) == 0:
		if s.AC != nil && !s.AC.HasToken {
			return false, s.AC.waitingReason()
		}
		return false, "not registered with the global controller yet"
	}
	if p := s.Capacity.Policy(); !p.Ready() {
		return false, fmt.Sprintf("at capacity (%.0f%%)", p.Fraction()*100)
	}
	if s.GC.Configured && (!s.GC.Registered || !s.GC.DownSince.IsZero()) {
		return true, "ready; global controller link down, serving held meetings"
	}
	return true, "ready"
}
