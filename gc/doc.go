// Package gc is edgemc's side of the Dark Tower Global Controller (GC)
// contract.
//
// As a client, Link registers the MC with the GC (backing off forever on
// failure), then sends fast and comprehensive heartbeats at the intervals
// the GC asked for, and re-registers whenever a heartbeat is answered
// NOT_FOUND. GC trouble is logged and retried; it never stops the MC.
//
// As a server, NewServer serves MeetingControllerService.AssignMeetingWithMh
// (over TLS when configured) behind an interceptor that demands a valid Dark
// Tower service token on every call and fails closed on anything it does
// not know.
//
// The package reads the MC's load through LoadReporter and hands
// assignments to an Assigner; it never touches meetings itself.
package gc
