package appliance

import (
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/edgemc/edgemc/store"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// FuzzMediaConnectionUpdate feeds a MediaConnectionUpdate, as a client's
// frame carries it, to a meeting's media state: nothing panics, only the
// URLs the participant was given are kept, every kept string is valid
// UTF-8 of at most 256 bytes, and every status is either kept or counted
// as ignored.
func FuzzMediaConnectionUpdate(f *testing.F) {
	handlers := []store.Assignment{
		{MHID: "mh-1", WebTransportEndpoint: "https://mh-1.example/"},
		{MHID: "mh-2", WebTransportEndpoint: "https://mh-2.example/"},
	}
	seed := func(u *pb.MediaConnectionUpdate) {
		b, err := proto.Marshal(u)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	reason, code := "ICE failed: é", "E42"
	seed(&pb.MediaConnectionUpdate{Statuses: []*pb.MhConnectionStatus{
		{MhUrl: "https://mh-1.example/", State: pb.ConnectionState_CONNECTION_STATE_FAILED, FailureReason: &reason, FailureCode: &code},
		{MhUrl: "https://mh-2.example/", State: pb.ConnectionState_CONNECTION_STATE_CONNECTED},
		{MhUrl: "https://other.example/", State: pb.ConnectionState(77)},
	}})
	seed(&pb.MediaConnectionUpdate{})
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		u := new(pb.MediaConnectionUpdate)
		if proto.Unmarshal(data, u) != nil {
			return // the session's decoder refuses it before any of this
		}
		s := newMediaState(handlers)
		s.add("p1", "alice")
		_, kept, ignored := s.clientUpdate("p1", u.GetStatuses(), time.Unix(1_800_000_000, 0))
		if len(kept)+ignored != len(u.GetStatuses()) {
			t.Fatalf("%d statuses: %d kept, %d ignored", len(u.GetStatuses()), len(kept), ignored)
		}
		pm := s.participant("p1")
		for url, r := range s.parts["p1"].client {
			if !s.given(url) {
				t.Fatalf("kept a report for %q", url)
			}
			for _, v := range []string{r.reason, r.code, r.state} {
				if len(v) > maxClientString || !utf8.ValidString(v) {
					t.Fatalf("kept %q", v)
				}
			}
		}
		if pm.Total != len(handlers) || len(pm.Handlers) != len(handlers) {
			t.Fatalf("status %+v", pm)
		}
	})
}
