// Package capacity is edgemc's one capacity policy: from the meetings and
// participants held and their configured maxima it answers whether a new
// meeting may be assigned, whether the appliance reports itself DEGRADED and
// whether it is ready for traffic. The assignment service, the heartbeats,
// the readiness probe and the status page all ask it, so they never disagree.
package capacity

// Thresholds of the policy, as fractions of the fuller of the two capacities.
const (
	// DegradedAt is where the appliance reports itself DEGRADED to the GC.
	DegradedAt = 0.80
	// ShedAt is where new meetings are refused (load shedding), keeping the
	// remaining room for joins to the meetings already held.
	ShedAt = 0.85
	// NotReadyAt is where readiness turns false.
	NotReadyAt = 0.95
	// ParticipantsPerMeeting is the room a new meeting is assumed to need
	// when deciding whether an assignment fits.
	ParticipantsPerMeeting = 10
)

// Load is what the appliance holds against its limits.
type Load struct {
	MaxMeetings, Meetings         uint32
	MaxParticipants, Participants uint32
}

// Fraction is the fuller of the two capacities (1 = full; it may exceed 1).
// A maximum of zero adds nothing to it.
func (l Load) Fraction() float64 {
	return max(fraction(l.Meetings, l.MaxMeetings), fraction(l.Participants, l.MaxParticipants))
}

func fraction(n, limit uint32) float64 {
	if limit == 0 {
		return 0
	}
	return float64(n) / float64(limit)
}

// Admission is the policy's answer to a new meeting.
type Admission int

const (
	// Admit: the meeting fits.
	Admit Admission = iota
	// Full: the meetings are at their maximum, or one more meeting's
	// estimated participants would exceed the participant maximum. A
	// maximum of zero admits nothing.
	Full
	// Shed: there is room, but the load is at or above [ShedAt].
	Shed
)

// Admit answers whether a new meeting may be assigned here.
func (l Load) Admit() Admission {
	switch {
	case l.Meetings >= l.MaxMeetings,
		uint64(l.Participants)+ParticipantsPerMeeting > uint64(l.MaxParticipants):
		return Full
	case l.Fraction() >= ShedAt:
		return Shed
	}
	return Admit
}

// Degraded reports whether the load is at or above [DegradedAt].
func (l Load) Degraded() bool { return l.Fraction() >= DegradedAt }

// Ready reports whether the load is below [NotReadyAt].
func (l Load) Ready() bool { return l.Fraction() < NotReadyAt }
