package web

import (
	"testing"
	"time"
)

// Without its service token edgemc is not ready before its first
// registration, and says why in words that show no address or text from the
// Auth Controller.
func TestReadyWaitsForServiceToken(t *testing.T) {
	s := sampleStatus()
	s.GC.Configured, s.GC.Registered, s.GC.LastRegistered, s.Meetings = true, false, time.Time{}, nil
	s.AC = &ACStatus{HasToken: false, LastError: "auth controller unavailable: dial tcp 10.1.2.3:8082: connection refused", LastErrorKind: "http"}
	if ok, reason := Ready(s); ok || reason != "waiting for a service token from the auth controller: auth controller unavailable" {
		t.Fatalf("Ready = %v, %q", ok, reason)
	}
	s.AC.LastErrorKind = "auth_rejected"
	if _, reason := Ready(s); reason != "waiting for a service token from the auth controller: credentials refused" {
		t.Fatalf("reason %q", reason)
	}
	s.AC.LastErrorKind = ""
	if _, reason := Ready(s); reason != "waiting for a service token from the auth controller" {
		t.Fatalf("reason %q", reason)
	}
	// Once registered, an Auth Controller outage, like a GC outage, does not
	// take the appliance out of its load balancer.
	s.GC.Registered, s.GC.LastRegistered = true, time.Now()
	if ok, reason := Ready(s); !ok {
		t.Fatalf("registered, without a fresh token: not ready: %s", reason)
	}
	s.GC.Registered, s.GC.LastRegistered, s.AC.HasToken = false, time.Time{}, true
	if ok, reason := Ready(s); ok || reason != "not registered with the global controller yet" {
		t.Fatalf("with a token, not registered yet: %v, %q", ok, reason)
	}
}
