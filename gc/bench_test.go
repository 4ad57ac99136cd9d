package gc

import (
	"testing"

	"github.com/edgemc/edgemc/gc/internalpb"
)

// BenchmarkAuthorizedAssign is one AssignMeetingWithMh round trip over
// loopback gRPC on an open connection, service-token verification included.
func BenchmarkAuthorizedAssign(b *testing.B) {
	e := newServerEnv(b)
	client := internalpb.NewMeetingControllerServiceClient(e.conn)
	ctx := withToken(b.Context(), e.gcTok)
	req := assignReq("m-bench")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.AssignMeetingWithMh(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
