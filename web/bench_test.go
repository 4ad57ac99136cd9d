package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// bigStatus is a busy appliance: 100 meetings of 10 participants.
func bigStatus() Status {
	s := sampleStatus()
	s.Meetings = nil
	for m := range 100 {
		mt := Meeting{ID: fmt.Sprintf("meeting-%03d", m), Generation: uint64(m), MediaHandlers: []string{"mh-1"}}
		for p := range 10 {
			mt.Participants = append(mt.Participants, Participant{ID: fmt.Sprintf("p-%03d-%02d", m, p), Name: "Participant", Role: "participant", Connected: true})
		}
		s.Meetings = append(s.Meetings, mt)
	}
	return s
}

// BenchmarkStatusAPI is the cost of one /api/v1/status answer for a busy
// appliance (what each live page pays per change).
func BenchmarkStatusAPI(b *testing.B) {
	h := NewHandler(Options{}, &fakeSource{s: bigStatus()})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/status", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkReady is the cost of one readiness probe.
func BenchmarkReady(b *testing.B) {
	h := NewHandler(Options{}, &fakeSource{s: sampleStatus()})
	req := httptest.NewRequest(http.MethodGet, "/health/ready", nil)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
}
