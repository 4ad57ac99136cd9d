package appliance

import (
	"context"

	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// WebTransport close codes edgemc uses when it ends a session.
const (
	closeNormal      uint32 = 0
	closeError       uint32 = 1 // an ErrorMessage was sent just before
	closeGoingAway   uint32 = 2 // the appliance is draining; reconnect with the binding
	closeReplaced    uint32 = 3 // the participant reconnected on a newer session
	closeRateLimited uint32 = 4 // the session kept sending over its message budget
)

// peer is one participant's open session, as a meeting sees it.
type peer interface {
	ID() uint64
	Send(*pb.ServerMessage) error
	SendFrame(webtransport.Frame) error
	Close(code uint32, reason string)
}

// session is the subset of *webtransport.Session a connection goroutine uses.
type session interface {
	peer
	Next(ctx context.Context) (*pb.ClientMessage, error)
	// Joined moves the session out of the transport's budget of sessions
	// that have not joined yet.
	Joined()
}

// codedError is an error a client sees: a contract error code and a message
// that says nothing internal.
type codedError struct {
	code pb.ErrorCode
	msg  string
}

func (e *codedError) Error() string { return e.code.String() + ": " + e.msg }

func errorMessage(code pb.ErrorCode, msg string) *pb.ServerMessage {
	return &pb.ServerMessage{Message: &pb.ServerMessage_Error{Error: &pb.ErrorMessage{Code: code, Message: msg}}}
}

func sendError(p peer, code pb.ErrorCode, msg string) {
	p.Send(errorMessage(code, msg))
}
