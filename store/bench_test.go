package store_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/store/internal/workload"
)

var benchWriters = []int{1, 8, 64}

// BenchmarkFencedWrite measures durable fenced roster writes (generation check + write, fsynced before return):
// each writer owns a meeting and rewrites 100 participants in turn.
func BenchmarkFencedWrite(b *testing.B) {
	for _, writers := range benchWriters {
		b.Run("writers="+strconv.Itoa(writers), func(b *testing.B) {
			db := openBench(b)
			write, err := workload.FencedWrites(db, writers)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			report(b, workload.Run(workload.Config{Writers: writers, Ops: b.N}, write))
		})
	}
}

// BenchmarkConsumeNonce measures durable one-time nonce consumption, every nonce new.
func BenchmarkConsumeNonce(b *testing.B) {
	for _, writers := range benchWriters {
		b.Run("writers="+strconv.Itoa(writers), func(b *testing.B) {
			db := openBench(b)
			report(b, workload.Run(workload.Config{Writers: writers, Ops: b.N}, workload.Nonces(db, b.Name())))
		})
	}
}

// BenchmarkLoadAll measures start-up recovery of 100 meetings with 20 participants and 20 bindings each, read from
// the database file (checkpointed) and from the log's memtable, as after a crash.
func BenchmarkLoadAll(b *testing.B) {
	b.Run("checkpointed", func(b *testing.B) { benchLoadAll(b, openBench(b)) })
	b.Run("log", func(b *testing.B) {
		db, err := store.Open(b.TempDir(), store.Options{CheckpointInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		benchLoadAll(b, db)
	})
}

func benchLoadAll(b *testing.B, db *store.DB) {
	for m := range 100 {
		id := fmt.Sprint("meeting-", m)
		gen, err := db.Acquire(id)
		if err != nil {
			b.Fatal(err)
		}
		err = db.PutMeeting(gen, store.Meeting{ID: id, AssignedBy: "gc-1", CreatedAt: time.Now(),
			Assignments: []store.Assignment{{MHID: "mh-1", WebTransportEndpoint: "https://mh-1:4433", GRPCEndpoint: "mh-1:50051"}}})
		if err != nil {
			b.Fatal(err)
		}
		r := workload.Run(workload.Config{Writers: 20, Ops: 20}, func(w, _ int) error {
			p := store.Participant{ID: fmt.Sprint("p-", w), UserID: fmt.Sprint("user-", w), Name: "Participant",
				Role: "participant", Connected: true, JoinedAt: time.Now()}
			if err := db.PutParticipant(id, gen, p); err != nil {
				return err
			}
			return db.PutBinding(id, gen, store.Binding{CorrelationID: fmt.Sprint("c-", w), ParticipantID: p.ID,
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

func openBench(b *testing.B) *store.DB {
	b.Helper()
	db, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func report(b *testing.B, r workload.Result) {
	b.Helper()
	if r.Err != nil {
		b.Fatal(r.Err)
	}
	b.ReportMetric(r.PerSecond(), "writes/s")
	b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
	b.ReportMetric(float64(r.P999.Microseconds()), "p99.9-µs")
}
