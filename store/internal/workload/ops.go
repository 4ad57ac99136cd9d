package store

import (
	"fmt"
	"time"
)

// FencedWriteOp prepares the fenced-write benchmark workload on db: writer w owns meeting "bench-<w>" (acquired and
// created here) and its i-th call durably rewrites participant i%100 of that meeting. Exported for edgemc's
// store-versus-Redis comparison program, which runs the same workload against Redis.
func FencedWriteOp(db *DB, writers int) (func(w, i int) error, error) {
	gens := make([]uint64, writers)
	for w := range gens {
		id := fmt.Sprint("bench-", w)
		gen, err := db.Acquire(id)
		if err != nil {
			return nil, err
		}
		if err := db.PutMeeting(gen, Meeting{ID: id}); err != nil {
			return nil, err
		}
		gens[w] = gen
	}
	return func(w, i int) error {
		return db.PutParticipant(fmt.Sprint("bench-", w), gens[w], BenchParticipant(i))
	}, nil
}

// BenchParticipant is the roster entry the fenced-write benchmark writes on its i-th call.
func BenchParticipant(i int) Participant {
	return Participant{ID: fmt.Sprint("p-", i%100), UserID: fmt.Sprint("user-", i%100), Name: "Benchmark Participant",
		Role: "participant", Connected: true, JoinedAt: time.Unix(1767225600, 0)}
}

// NonceOp is the nonce benchmark workload: every call consumes a new nonce of meeting "bench-<w>".
func NonceOp(db *DB, prefix string) func(w, i int) error {
	return func(w, i int) error {
		return db.ConsumeNonce(fmt.Sprint("bench-", w), fmt.Sprint(prefix, "-", i), time.Hour)
	}
}
