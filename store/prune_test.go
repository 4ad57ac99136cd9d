package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// keysIn counts the keys of every bucket straight from a closed store's file.
func keysIn(t *testing.T, dir string) map[string]int {
	t.Helper()
	bdb, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	n := map[string]int{}
	_ = bdb.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			n[string(name)] = b.Stats().KeyN
			return nil
		})
	})
	return n
}

// Meetings that ended leave nothing in the file but the one global generation counter, however many there were.
func TestEndedMeetingsLeaveNothingBehind(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, Options{})
	const meetings = 200
	for i := range meetings {
		id := fmt.Sprint("meeting-", i)
		gen := mustAcquire(t, db, id)
		if err := db.PutMeeting(gen, Meeting{ID: id}); err != nil {
			t.Fatal(err)
		}
		if err := db.PutSession(id, gen, Participant{ID: "p"}, Binding{CorrelationID: "c"}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteMeeting(id, gen); err != nil {
			t.Fatal(err)
		}
	}
	st, err := db.Stats()
	if want := (Stats{Path: db.Path(), FileSize: st.FileSize, MaxGeneration: meetings}); err != nil || st != want {
		t.Errorf("Stats = %+v, %v; want %+v", st, err, want)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"generations": 1, "meetings": 0, "roster": 0, "bindings": 0, "nonces": 0, "log": 1}
	if got := keysIn(t, dir); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("keys in the file after %d meetings ended: %v, want %v", meetings, got, want)
	}
}

// An old owner stays fenced out after its meeting is deleted, and after the meeting is acquired again; so is the
// owner that deleted it once a newer generation has been handed out. Restarts change nothing.
func TestDeletedMeetingStaysFenced(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, Options{})
	old := mustAcquire(t, db, "m")
	if err := db.PutMeeting(old, Meeting{ID: "m"}); err != nil {
		t.Fatal(err)
	}
	cur := mustAcquire(t, db, "m")
	if err := db.DeleteMeeting("m", cur); err != nil {
		t.Fatal(err)
	}
	fencedOut := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrFencedOut) {
			t.Errorf("%s: %v, want ErrFencedOut", what, err)
		}
	}
	fencedOut("old owner recreating the deleted meeting", db.PutMeeting(old, Meeting{ID: "m"}))
	fencedOut("old owner deleting it again", db.DeleteMeeting("m", old))
	mustAcquire(t, db, "other")
	fencedOut("deleting owner after a newer acquire", db.PutMeeting(cur, Meeting{ID: "m"}))

	db.Close()
	db = openTest(t, dir, Options{})
	fencedOut("old owner after a restart", db.PutMeeting(old, Meeting{ID: "m"}))
	again := mustAcquire(t, db, "m")
	if again <= cur+1 {
		t.Errorf("Acquire after delete = %d, want above %d", again, cur+1)
	}
	if err := db.PutMeeting(again, Meeting{ID: "m"}); err != nil {
		t.Fatal(err)
	}
	for _, gen := range []uint64{old, cur} {
		fencedOut(fmt.Sprint("generation ", gen, " after the meeting was acquired again"), db.PutParticipant("m", gen, Participant{ID: "p"}))
	}
	if err := db.PutParticipant("m", again, Participant{ID: "p"}); err != nil {
		t.Errorf("new owner: %v", err)
	}
}

// A file written by an older edgemc keeps one generation counter per meeting ever held. Open sets the global counter
// to the newest of them and drops those of meetings without a record, and fencing holds as before.
func TestOpenPrunesOldGenerations(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, Options{})
	live := mustAcquire(t, db, "live")
	if err := db.PutMeeting(live, Meeting{ID: "live"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	bdb, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		gens := tx.Bucket(bucketGenerations)
		for id, g := range map[string]uint64{"ended-1": 7, "ended-2": 3} {
			if err := gens.Put([]byte(id), encodeGeneration(g)); err != nil {
				return err
			}
		}
		return gens.Delete(keyGlobalGeneration)
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}

	db = openTest(t, dir, Options{})
	if st, _ := db.Stats(); st.MaxGeneration != 7 || st.Meetings != 1 {
		t.Errorf("Stats after opening an old file = %+v, want max generation 7 and 1 meeting", st)
	}
	if err := db.PutMeeting(6, Meeting{ID: "ended-1"}); !errors.Is(err, ErrFencedOut) {
		t.Errorf("old owner of a pruned meeting: %v, want ErrFencedOut", err)
	}
	if err := db.PutParticipant("live", live, Participant{ID: "p"}); err != nil {
		t.Errorf("owner of a live meeting: %v", err)
	}
	if g := mustAcquire(t, db, "ended-2"); g != 8 {
		t.Errorf("Acquire = %d, want 8", g)
	}
	db.Close()
	if n := keysIn(t, dir)["generations"]; n != 3 { // live, ended-2, global
		t.Errorf("generations in the file: %d, want 3", n)
	}
}

// Stats answers from counts kept as writes are acknowledged: it does not queue behind writes, and it matches what
// the file holds, after failed, refused and re-run writes, sweeps and restarts.
func TestStatsKeepsCounts(t *testing.T) {
	dir := t.TempDir()
	now := t0
	db := openTest(t, dir, Options{Now: func() time.Time { return now }})
	gen := fill(t, db)
	if err := db.ConsumeNonce("m", "n1", time.Minute); err != nil {
		t.Fatal(err)
	}

	release := blockCommitter(t, db)
	done := make(chan error, 1)
	go func() { done <- db.PutParticipant(sampleMeeting.ID, gen, Participant{ID: "queued"}) }()
	waitQueued(t, db, 1)
	var (
		st    Stats
		err   error
		stats = make(chan struct{})
	)
	go func() { st, err = db.Stats(); close(stats) }()
	select {
	case <-stats:
	case <-time.After(20 * time.Second): // a guard only: Stats takes microseconds unless it queues
		t.Fatal("Stats waited for the busy committer")
	}
	if want := (Stats{Path: db.Path(), FileSize: st.FileSize, Meetings: 1, Participants: 2, Bindings: 1, Nonces: 1,
		MaxGeneration: gen}); err != nil || st != want {
		t.Errorf("Stats behind a busy committer = %+v, %v; want %+v", st, err, want)
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Writes that change nothing, refused writes and a write that fails in its group do not count.
	if err := db.PutParticipant(sampleMeeting.ID, gen, Participant{ID: "queued", Name: "again"}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutBinding("missing", gen, Binding{CorrelationID: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("binding of a missing meeting: %v", err)
	}
	if err := db.ConsumeNonce("m", "n1", time.Minute); !errors.Is(err, ErrNonceUsed) {
		t.Fatalf("nonce used twice: %v", err)
	}
	late := errors.New("late failure")
	if err := db.commit.do(func(tx *txn) error {
		if err := tx.put(bucketNonces, childKey("m", "failed"), encodeNonce(t0)); err != nil {
			return err
		}
		return late
	}); err != late {
		t.Fatalf("failing write: %v", err)
	}
	if err := db.DeleteSession(sampleMeeting.ID, gen, "p-2", "no-binding"); err != nil {
		t.Fatal(err)
	}
	other := mustAcquire(t, db, "other")
	if err := db.PutMeeting(other, Meeting{ID: "other"}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSession("other", other, Participant{ID: "q"}, Binding{CorrelationID: "c", ExpiresAt: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	now = t0.Add(time.Hour)
	if n, err := db.Sweep(); err != nil || n != 3 { // nonce n1, binding c and the sample binding
		t.Fatalf("Sweep = %d, %v; want 3", n, err)
	}
	want := Stats{Meetings: 2, Participants: 3, Bindings: 0, Nonces: 0, MaxGeneration: other}
	check := func(when string) {
		t.Helper()
		st, err := db.Stats()
		want.Path, want.FileSize = db.Path(), st.FileSize
		if err != nil || st != want {
			t.Errorf("Stats %s = %+v, %v; want %+v", when, st, err, want)
		}
	}
	check("after the writes")
	db.Close()
	keys := keysIn(t, dir)
	if got := [4]int{keys["meetings"], keys["roster"], keys["bindings"], keys["nonces"]}; got != [4]int{2, 3, 0, 0} {
		t.Errorf("the file holds %v meetings, participants, bindings, nonces", got)
	}
	db = openTest(t, dir, Options{})
	check("after a restart")
}
