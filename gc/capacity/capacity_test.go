package capacity

import "testing"

func TestPolicy(t *testing.T) {
	tests := []struct {
		name     string
		l        Load
		fraction float64
		admit    Admission
		degraded bool
		ready    bool
	}{
		{"empty", Load{MaxMeetings: 100, MaxParticipants: 1000}, 0, Admit, false, true},
		{"meetings 79%", Load{MaxMeetings: 100, Meetings: 79, MaxParticipants: 1000}, 0.79, Admit, false, true},
		{"meetings 80% degraded", Load{MaxMeetings: 100, Meetings: 80, MaxParticipants: 1000}, 0.80, Admit, true, true},
		{"participants 84.9%", Load{MaxMeetings: 100, MaxParticipants: 1000, Participants: 849}, 0.849, Admit, true, true},
		{"participants 85% sheds", Load{MaxMeetings: 100, MaxParticipants: 1000, Participants: 850}, 0.85, Shed, true, true},
		{"meetings 94.9%", Load{MaxMeetings: 1000, Meetings: 949, MaxParticipants: 100000}, 0.949, Shed, true, true},
		{"meetings 95% not ready", Load{MaxMeetings: 100, Meetings: 95, MaxParticipants: 1000}, 0.95, Shed, true, false},
		{"meetings full", Load{MaxMeetings: 10, Meetings: 10, MaxParticipants: 1000}, 1, Full, true, false},
		{"room for the estimate", Load{MaxMeetings: 10, MaxParticipants: 100, Participants: 80}, 0.80, Admit, true, true},
		{"no room for the estimate", Load{MaxMeetings: 10, MaxParticipants: 100, Participants: 91}, 0.91, Full, true, true},
		{"participants overflow", Load{MaxMeetings: 10, MaxParticipants: 100, Participants: 0xFFFFFFFF}, 0xFFFFFFFF / 100.0, Full, true, false},
		{"zero maxima admit nothing", Load{}, 0, Full, false, true},
		{"zero maxima count as empty", Load{Meetings: 5000, Participants: 9000}, 0, Full, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.l.Fraction(); got != tt.fraction {
				t.Errorf("Fraction() = %v, want %v", got, tt.fraction)
			}
			if got := tt.l.Admit(); got != tt.admit {
				t.Errorf("Admit() = %v, want %v", got, tt.admit)
			}
			if got := tt.l.Degraded(); got != tt.degraded {
				t.Errorf("Degraded() = %v, want %v", got, tt.degraded)
			}
			if got := tt.l.Ready(); got != tt.ready {
				t.Errorf("Ready() = %v, want %v", got, tt.ready)
			}
		})
	}
}
