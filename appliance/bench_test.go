package appliance

import (
	"context"
	"fmt"
	"testing"

	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// nopPeer is a session that drops what it is sent.
type nopPeer struct{ id uint64 }

func (p nopPeer) ID() uint64                                    { return p.id }
func (nopPeer) Send(*pb.ServerMessage) error                    { return nil }
func (nopPeer) SendFrame(webtransport.Frame) error              { return nil }
func (nopPeer) Close(uint32, string)                            {}
func (nopPeer) Next(context.Context) (*pb.ClientMessage, error) { return nil, context.Canceled }

// benchMeeting runs a meeting of n participants (the first a host) on its
// own goroutine, with an in-memory store.
func benchMeeting(b *testing.B, n int) (*meeting, []string) {
	f := newFakeDeps(b)
	f.seats.max = 1 << 30
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	m := newMeeting(ctx, f.deps(), store.Meeting{ID: "m", Generation: 1})
	go m.run()
	ids := make([]string, n)
	for i := range n {
		role := "participant"
		if i == 0 {
			role = roleHost
		}
		var cerr *codedError
		if err := m.do(ctx, func() {
			ids[i], cerr = m.join(joinRequest{claims: claims(fmt.Sprint("user-", i), role), name: fmt.Sprint("User ", i), conn: nopPeer{id: uint64(i + 1)}})
		}); err != nil || cerr != nil {
			b.Fatal(err, cerr)
		}
	}
	return m, ids
}

// BenchmarkJoinLeave is the meeting's share of a join into a meeting of 10
// (JoinResponse with 9 others, ParticipantJoined to 9, the roster entry and
// binding stored in memory) and of the leave that follows, each run on the
// meeting goroutine as a session's join is.
func BenchmarkJoinLeave(b *testing.B) {
	m, _ := benchMeeting(b, 9)
	ctx := context.Background()
	c := claims("joiner", "participant")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var pid string
		var cerr *codedError
		peer := nopPeer{id: uint64(1000 + i)}
		if err := m.do(ctx, func() { pid, cerr = m.join(joinRequest{claims: c, name: "Joiner", conn: peer}) }); err != nil || cerr != nil {
			b.Fatal(err, cerr)
		}
		if err := m.do(ctx, func() { m.leave(pid, peer.ID(), pb.LeaveReason_VOLUNTARY) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDispatchHostMute dispatches a host's HostMuteRequest to its
// meeting: decoded message in, roster entry stored (in memory), one
// ParticipantMuteUpdate encoded and queued for every participant.
func BenchmarkDispatchHostMute(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprint("participants=", n), func(b *testing.B) {
			m, ids := benchMeeting(b, n)
			var c Controller
			ctx := context.Background()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				msg := &pb.ClientMessage{Message: &pb.ClientMessage_HostMuteRequest{HostMuteRequest: &pb.HostMuteRequest{
					ParticipantId: ids[1], AudioMuted: i%2 == 0,
				}}}
				if cerr := c.dispatch(ctx, m, ids[0], msg); cerr != nil {
					b.Fatal(cerr)
				}
			}
		})
	}
}
