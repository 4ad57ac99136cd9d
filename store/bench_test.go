package store

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/edgemc/edgemc/store/internal/workload"
)

var benchWriters = []int{1, 8, 64}

// BenchmarkFencedWrite measures durable fenced roster writes (generation check + write, fsynced before return):
// each writer owns a meeting and rewrites 100 participants in turn.
func BenchmarkFencedWrite(b *testing.B) {
	for _, writers := range benchWriters {
		b.Run("writers="+strconv.Itoa(writers), func(b *testing.B) {
			db := openTest(b, b.TempDir(), Options{})
			write, err := FencedWriteOp(db, writers)
			if err != nil {
				b.Fatal(err)
			}
			report(b, workload.Run(workload.Config{Writers: writers, Ops: b.N}, write))
		})
	}
}

// BenchmarkConsumeNonce measures durable one-time nonce consumption, every nonce new.
func BenchmarkConsumeNonce(b *testing.B) {
	for _, writers := range benchWriters {
		b.Run("writers="+strconv.Itoa(writers), func(b *testing.B) {
			db := openTest(b, b.TempDir(), Options{})
			report(b, workload.Run(workload.Config{Writers: writers, Ops: b.N}, NonceOp(db, b.Name())))
		})
	}
}

// BenchmarkLoadAll measures start-up recovery of 100 meetings with 20 participants and 20 bindings each.
func BenchmarkLoadAll(b *testing.B) {
	db := openTest(b, b.TempDir(), Options{})
	for m := range 100 {
		id := fmt.Sprint("meeting-", m)
		gen := mustAcquire(b, db, id)
		mt := sampleMeeting
		mt.ID = id
		if err := db.PutMeeting(gen, mt); err != nil {
			b.Fatal(err)
		}
		r := workload.Run(workload.Config{Writers: 20, Ops: 20}, func(w, _ int) error {
			p := sampleParticipants[0]
			p.ID = fmt.Sprint("p-", w)
			if err := db.PutParticipant(id, gen, p); err != nil {
				return err
			}
			return db.PutBinding(id, gen, Binding{CorrelationID: fmt.Sprint("c-", w), ParticipantID: p.ID,
				ExpiresAt: time.Now().Add(time.Hour)})
		})
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := db.LoadAll(); err != nil {
			b.Fatal(err)
		}
	}
}

func report(b *testing.B, r workload.Result) {
	b.Helper()
	if r.Err != nil {
		b.Fatal(r.Err)
	}
	b.ReportMetric(r.PerSecond(), "writes/s")
	b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
}
