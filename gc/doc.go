// Package gc is edgemc's side of the Dark Tower control-plane contract: the
// Global Controller (GC) and the media handlers' calls into the MC.
//
// As a client, Link registers the MC with the GC (backing off forever on
// failure, and only once its TokenSource has a token), then sends fast and
// comprehensive heartbeats at the intervals the GC asked for, and
// re-registers whenever a heartbeat is answered NOT_FOUND. GC trouble is
// logged and retried; it never stops the MC. Every call carries the MC's
// service token (a TokenSource: FileToken, or the Auth Controller's source
// in gc/actoken) and W3C trace context (gc/tracectx).
//
// As a server, NewServer serves MeetingControllerService.AssignMeetingWithMh
// (over TLS when configured) and, given a MediaCoordinator,
// MediaCoordinationService, behind an interceptor that demands a valid Dark
// Tower service token of the right service type on every call and fails
// closed on anything it does not know.
//
// The package reads the MC's load through LoadReporter, hands assignments
// to an Assigner and media handlers' notifications to a MediaCoordinator;
// it never touches meetings itself.
package gc
