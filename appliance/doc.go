// Package appliance is the edgemc Meeting Controller itself: its configuration,
// its lifecycle (start, drain, stop), the controller that owns the set of
// meetings, the per-meeting actors and the session-binding tokens that let a
// participant reconnect. It is the only package that knows all the others:
// webtransport, gc, store and web each define the small interfaces they need
// and this package satisfies them.
//
// # The path of a join
//
//  1. webtransport/server.go (*Server).serveHTTP accepts the WebTransport
//     session and its stream and calls the Handler, (*Controller).ServeSession.
//  2. session.go (*Controller).admit reads the JoinRequest, checks the token
//     with the joinVerifier (gc/auth/verify.go (*Verifier).VerifyJoin) and
//     finds the meeting.
//  3. It hands the join to the meeting actor (meeting.go (*meeting).do); on
//     the actor's goroutine join.go (*meeting).join (or, with a binding,
//     recoverable and reattach) takes a seat from the controller.
//  4. The roster entry and binding are committed in one durable write
//     (store/meetings.go (*DB).PutSession) before anything is sent.
//  5. join.go sendJoinResponse answers the newcomer; meeting.go broadcast
//     sends ParticipantJoined to the others. session.go (*Controller).serve
//     then dispatches every later message (dispatch → mute.go, leave.go).
//
// # The path of an assignment
//
//  1. gc/server.go (*guard).authorize checks the service token and caller
//     type of the gRPC call; (*assignService).AssignMeetingWithMh validates it.
//  2. controller.go (*Controller).AssignMeeting refuses while draining, asks
//     the capacity policy (gc/load.go CheckCapacity, gc/capacity), and for a
//     held meeting takes the new media-handler list (meeting.go reassign).
//  3. A new meeting gets its fencing generation (store (*DB).Acquire) and its
//     record (store (*DB).PutMeeting), then its actor starts (newMeeting,
//     (*Controller).start).
//
// # The media path
//
//  1. The first participant of an empty meeting (join.go → media.go
//     (*meeting).arrived), or the first one back after a restart, makes the
//     meeting register with its media handlers in the background
//     ((*meeting).registerMHs, gc/mh (*Lease).Register).
//  2. Media handlers' notifications (gc/media.go) reach
//     (*Controller).MediaEvent; clients' MediaConnectionUpdates reach
//     (*Controller).mediaUpdate. Both land in the meeting's mediaState,
//     which status reads.
//  3. On a drain, redirect.go sends RedirectToMc before sessions close.
//
// A meeting reaches nothing outside itself but meetingDeps (meeting.go): the
// store writer, the binding signer, metrics, the seat counter, a clock, its
// timings, the callback for when it is no longer held and the media-handler
// registrar.
package appliance
