package workload

import (
	"fmt"
	"time"

	"github.com/edgemc/edgemc/store"
)

// FencedWrites prepares the fenced-write workload on db: writer w owns meeting "bench-<w>" (acquired and created
// here) and its i-th call durably rewrites participant i%100 of that meeting.
func FencedWrites(db *store.DB, writers int) (func(w, i int) error, error) {
	gens := make([]uint64, writers)
	for w := range gens {
		id := fmt.Sprint("bench-", w)
		gen, err := db.Acquire(id)
		if err != nil {
			return nil, err
		}
		if err := db.PutMeeting(gen, store.Meeting{ID: id}); err != nil {
			return nil, err
		}
		gens[w] = gen
	}
	return func(w, i int) error {
		return db.PutParticipant(fmt.Sprint("bench-", w), gens[w], benchParticipant(i))
	}, nil
}

// benchParticipant is the roster entry the fenced-write workload writes on its i-th call.
func benchParticipant(i int) store.Participant {
	return store.Participant{ID: fmt.Sprint("p-", i%100), UserID: fmt.Sprint("user-", i%100), Name: "Benchmark Participant",
		Role: "participant", Connected: true, JoinedAt: time.Unix(1767225600, 0)}
}

// Nonces is the nonce workload: every call consumes a new nonce of meeting "bench-<w>"; prefix keeps runs apart.
func Nonces(db *store.DB, prefix string) func(w, i int) error {
	return func(w, i int) error {
		return db.ConsumeNonce(fmt.Sprint("bench-", w), fmt.Sprint(prefix, "-", i), time.Hour)
	}
}
