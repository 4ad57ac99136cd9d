package web

import "testing"

// Without its service token edgemc is not ready, and says why in words that
// show no address or text from the Auth Controller.
func TestReadyWaitsForServiceToken(t *testing.T) {
	s := sampleStatus()
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
	s.AC.HasToken = true
	if ok, reason := Ready(s); !ok {
		t.Fatalf("not ready with a token: %s", reason)
	}
}
