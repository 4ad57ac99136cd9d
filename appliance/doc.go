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
//     with the joinVerifier (gc/auth/verify.go (*Verifier).VerifyJoin, run
//     on a worker of verifypool.go) and finds the meeting.
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
// A meeting reaches nothing outside itself but meetingDeps (meeting.go): the
// store writer, the binding signer, metrics, the seat counter, a clock, its
// timings and the callback for when it is no longer held.
package appliance
