package store

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
)

func TestFencing(t *testing.T) {
	db, old := newMeeting(t, "m")
	if err := db.PutParticipant("m", old, Participant{ID: "p"}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutBinding("m", old, Binding{CorrelationID: "c"}); err != nil {
		t.Fatal(err)
	}
	cur := mustAcquire(t, db, "m")

	fencedOut := map[string]error{
		"PutMeeting":        db.PutMeeting(old, Meeting{ID: "m"}),
		"PutParticipant":    db.PutParticipant("m", old, Participant{ID: "p"}),
		"DeleteParticipant": db.DeleteParticipant("m", old, "p"),
		"PutBinding":        db.PutBinding("m", old, Binding{CorrelationID: "c"}),
		"DeleteBinding":     db.DeleteBinding("m", old, "c"),
		"PutSession":        db.PutSession("m", old, Participant{ID: "p"}, Binding{CorrelationID: "c"}),
		"DeleteSession":     db.DeleteSession("m", old, "p", "c"),
		"DeleteMeeting":     db.DeleteMeeting("m", old),
	}
	for name, err := range fencedOut {
		var fe *FencedOutError
		if !errors.Is(err, ErrFencedOut) || !errors.As(err, &fe) {
			t.Errorf("%s with old generation: %v, want ErrFencedOut", name, err)
			continue
		}
		if want := (FencedOutError{MeetingID: "m", Held: old, Current: cur}); *fe != want {
			t.Errorf("%s: %+v, want %+v", name, *fe, want)
		}
	}
	// Nothing the old owner tried changed the state.
	st, err := db.Stats()
	if err != nil || st.Meetings != 1 || st.Participants != 1 || st.Bindings != 1 {
		t.Fatalf("state after fenced writes: %+v %v", st, err)
	}

	// Equal generation passes; a session is its roster entry and binding at once.
	if err := db.PutParticipant("m", cur, Participant{ID: "q"}); err != nil {
		t.Errorf("equal generation: %v", err)
	}
	if err := db.PutSession("m", cur, Participant{ID: "q2"}, Binding{CorrelationID: "c2", ParticipantID: "q2"}); err != nil {
		t.Errorf("PutSession: %v", err)
	}
	if st, _ := db.Stats(); st.Participants != 3 || st.Bindings != 2 {
		t.Errorf("after PutSession: %+v", st)
	}
	if err := db.DeleteSession("m", cur, "q2", "c2"); err != nil {
		t.Errorf("DeleteSession: %v", err)
	}
	if err := db.DeleteSession("m", cur, "q", "no-binding"); err != nil {
		t.Errorf("DeleteSession of a participant without a binding: %v", err)
	}
	if err := db.DeleteSession("m", cur, "q", "c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteSession of a missing participant: %v, want ErrNotFound", err)
	}
	if st, _ := db.Stats(); st.Participants != 1 || st.Bindings != 1 {
		t.Errorf("after DeleteSession: %+v", st)
	}
	// A newer generation than was ever acquired passes and raises the counter, so it is never handed out.
	if err := db.PutParticipant("m", cur+5, Participant{ID: "r"}); err != nil {
		t.Errorf("newer generation: %v", err)
	}
	if err := db.PutParticipant("m", cur, Participant{ID: "s"}); !errors.Is(err, ErrFencedOut) {
		t.Errorf("after newer write, old holder: %v, want ErrFencedOut", err)
	}
	if g := mustAcquire(t, db, "m"); g != cur+6 {
		t.Errorf("Acquire after newer write = %d, want %d", g, cur+6)
	}
	// Deletes are fenced and keep the counter.
	if err := db.DeleteMeeting("m", cur+6); err != nil {
		t.Fatal(err)
	}
	if g := mustAcquire(t, db, "m"); g != cur+7 {
		t.Errorf("Acquire after delete = %d, want %d", g, cur+7)
	}
}

// Many owners of the same meeting race; each writes until fenced out. Afterwards every stored participant was
// written by a generation that was current at its commit, and every owner but the last was fenced out.
func TestConcurrentWritersDifferentGenerations(t *testing.T) {
	db, _ := newMeeting(t, "m")
	const owners, writes = 16, 40
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		acquired []uint64
		fenced   = map[uint64]bool{}
	)
	for o := range owners {
		wg.Go(func() {
			gen, err := db.Acquire("m")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			acquired = append(acquired, gen)
			mu.Unlock()
			for i := range writes {
				err := db.PutParticipant("m", gen, Participant{ID: fmt.Sprintf("o%d-%d", o, i), Name: fmt.Sprint(gen)})
				var fe *FencedOutError
				if errors.As(err, &fe) {
					if fe.Current <= gen {
						t.Errorf("fenced out by %d while holding %d", fe.Current, gen)
					}
					mu.Lock()
					fenced[gen] = true
					mu.Unlock()
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	top := uint64(0)
	for _, g := range acquired {
		top = max(top, g)
	}
	if len(acquired) != owners || top != owners+1 {
		t.Fatalf("acquired %v: want %d distinct generations up to %d", acquired, owners, owners+1)
	}
	if fenced[top] {
		t.Errorf("newest owner %d was fenced out", top)
	}
	// The newest owner is never fenced out, so all its writes landed.
	states, err := db.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range states[0].Participants {
		if p.Name == fmt.Sprint(top) {
			n++
		}
	}
	if n != writes {
		t.Errorf("newest owner stored %d of %d writes", n, writes)
	}
}

// One failing write in a group gets its own error; the others in the same group commit.
func TestGroupIsolatesFailures(t *testing.T) {
	db, old := newMeeting(t, "m")
	gen := mustAcquire(t, db, "m")
	release := blockCommitter(t, db)

	const n = 50
	errs := make([]error, n)
	var wg sync.WaitGroup
	reads := 0 // a read queued first runs once, though the failures after it make its group run again
	wg.Go(func() {
		if err := db.commit.read(func(*txn) error { reads++; return nil }); err != nil {
			t.Error(err)
		}
	})
	waitQueued(t, db, 1)
	for i := range n {
		wg.Go(func() {
			switch i % 5 {
			case 1: // refused before writing: fenced out
				errs[i] = db.PutParticipant("m", old, Participant{ID: fmt.Sprint(i)})
			case 2: // fails after writing: must be rolled back alone
				errs[i] = db.commit.do(func(tx *txn) error {
					if err := tx.put(bucketRoster, childKey("m", fmt.Sprint(i)), encodeParticipant(Participant{})); err != nil {
						return err
					}
					return fmt.Errorf("late failure %d", i)
				})
			case 3: // panics
				errs[i] = db.commit.do(func(*txn) error { panic("boom") })
			default:
				errs[i] = db.PutParticipant("m", gen, Participant{ID: fmt.Sprint(i)})
			}
		})
	}
	waitQueued(t, db, n+1)
	release()
	wg.Wait()
	if reads != 1 {
		t.Errorf("the read ran %d times, want once", reads)
	}

	states, err := db.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, p := range states[0].Participants {
		stored[p.ID] = true
	}
	for i, err := range errs {
		id := fmt.Sprint(i)
		switch i % 5 {
		case 1:
			if !errors.Is(err, ErrFencedOut) {
				t.Errorf("write %d: %v, want refusal", i, err)
			}
		case 2:
			if err == nil || err.Error() != fmt.Sprintf("late failure %d", i) {
				t.Errorf("write %d: %v, want its own late failure", i, err)
			}
		case 3:
			if err == nil {
				t.Errorf("write %d: panic not reported", i)
			}
		default:
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
			if !stored[id] {
				t.Errorf("write %d acknowledged but not stored", i)
			}
			continue
		}
		if stored[id] {
			t.Errorf("failed write %d was stored", i)
		}
	}
	if err := db.Check(); err != nil {
		t.Errorf("Check after function failures: %v", err)
	}
}

// Writers that queue while a commit is in flight share the next transaction.
func TestQueuedWritesShareOneCommit(t *testing.T) {
	db, _ := newMeeting(t, "m")
	release := blockCommitter(t, db)
	const n = 64
	records := make([]uint64, n) // the sequence number of the log record before each write's
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := db.commit.do(func(tx *txn) error {
				records[i] = db.commit.log.seq // the committer's goroutine runs this
				return tx.put(bucketNonces, childKey("m", fmt.Sprint(i)), encodeNonce(t0))
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, db, n)
	release()
	wg.Wait()
	for i, seq := range records {
		if seq != records[0] {
			t.Fatalf("write %d went into the record after %d, write 0 after %d: not grouped", i, seq, records[0])
		}
	}
	var last uint64
	if err := db.commit.read(func(*txn) error { last = db.commit.log.seq; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := last; got != records[0]+1 {
		t.Errorf("%d writers took log records %d..%d, want one record", n, records[0]+1, got)
	}
}

// blockCommitter holds the committer inside a transaction until release is called, so tests can queue writers
// behind it deterministically.
func blockCommitter(t *testing.T, db *DB) (release func()) {
	t.Helper()
	entered, hold := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.commit.do(func(*txn) error {
			select {
			case <-entered:
			default:
				close(entered)
			}
			<-hold
			return nil
		})
	}()
	<-entered
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(hold)
			if err := <-done; err != nil {
				t.Errorf("blocking write: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// waitQueued waits until n writers are queued behind a blocked committer.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	for {
		db.commit.mu.Lock()
		q := len(db.commit.queue)
		db.commit.mu.Unlock()
		if q >= n {
			return
		}
		if t.Context().Err() != nil {
			t.Fatal("writers never queued")
		}
		runtime.Gosched()
	}
}
