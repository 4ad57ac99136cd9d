// Package appliance is the edgemc Meeting Controller itself: its configuration,
// its lifecycle (start, drain, stop), the controller that owns the set of
// meetings, the per-meeting actors and the session-binding tokens that let a
// participant reconnect. It is the only package that knows all the others:
// webtransport, gc, store and web each define the small interfaces they need
// and this package satisfies them.
package appliance
