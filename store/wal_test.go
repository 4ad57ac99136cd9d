package store

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// logOnly keeps every write in the log: no checkpoint happens before Close.
var logOnly = Options{CheckpointInterval: time.Hour}

// crashCopy copies the store's two files as they are now into a new directory, which is what a crash would leave
// (the committer is idle between calls, so no write is half done).
func crashCopy(t *testing.T, db *DB) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range append([]string{FileName}, segmentNames[:]...) {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(db.Path()), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// logEnd is where the next log record goes.
func logEnd(t *testing.T, db *DB) int64 {
	t.Helper()
	var off int64
	if err := db.commit.read(func(*txn) error { off = db.commit.log.off; return nil }); err != nil {
		t.Fatal(err)
	}
	return off
}

// rosterSize counts roster entries straight from the bbolt file, without the log.
func rosterSize(t *testing.T, dir string) int {
	t.Helper()
	bdb, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	n := 0
	_ = bdb.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketRoster); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

func TestLogReplaysWritesNotCheckpointed(t *testing.T) {
	db := openTest(t, t.TempDir(), logOnly)
	gen := fill(t, db)
	dir := crashCopy(t, db)
	if n := rosterSize(t, dir); n != 0 {
		t.Fatalf("database file already holds %d roster entries: the test needs them in the log only", n)
	}
	db2 := openTest(t, dir, logOnly)
	got, err := db2.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	if want := wantState(gen); !reflect.DeepEqual(got, want) {
		t.Errorf("after replay:\n got %+v\nwant %+v", got, want)
	}
	db2.Close()
	if n := rosterSize(t, dir); n != len(sampleParticipants) {
		t.Errorf("Open left %d roster entries in the file, want the replayed %d", n, len(sampleParticipants))
	}
}

// A record cut short or damaged by a crash ends the log there; the writes before it survive.
func TestLogTornTail(t *testing.T) {
	for name, damage := range map[string]func(log []byte, from, to int64){
		"flipped byte": func(log []byte, from, to int64) { log[(from+to)/2] ^= 0x40 },
		"cut short":    func(log []byte, from, to int64) { clear(log[from+recordHeader : to]) },
		"header only":  func(log []byte, from, to int64) { clear(log[from+4 : to]) },
	} {
		t.Run(name, func(t *testing.T) {
			db := openTest(t, t.TempDir(), logOnly)
			gen := fill(t, db)
			from := logEnd(t, db)
			if err := db.PutParticipant(sampleMeeting.ID, gen, Participant{ID: "late"}); err != nil {
				t.Fatal(err)
			}
			to := logEnd(t, db)
			dir := crashCopy(t, db)
			path := filepath.Join(dir, LogFileName)
			log, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			damage(log, from, to)
			if err := os.WriteFile(path, log, 0o600); err != nil {
				t.Fatal(err)
			}
			db2 := openTest(t, dir, logOnly)
			got, err := db2.LoadAll()
			if err != nil {
				t.Fatal(err)
			}
			if want := wantState(gen); !reflect.DeepEqual(got, want) {
				t.Errorf("after replay of a damaged log:\n got %+v\nwant %+v", got, want)
			}
			// The store goes on from there: the next write gets the torn record's place.
			if err := db2.PutParticipant(sampleMeeting.ID, gen, Participant{ID: "next"}); err != nil {
				t.Fatal(err)
			}
			got, err = openTest(t, crashCopy(t, db2), logOnly).LoadAll()
			if err != nil || len(got) != 1 || len(got[0].Participants) != len(sampleParticipants)+1 {
				t.Errorf("after a write past the damage: %+v, %v", got, err)
			}
		})
	}
}

// After a checkpoint the log is rewritten from its start; the older records further on are never replayed.
func TestLogIgnoresOlderRecordsPastItsEnd(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, logOnly)
	gen := mustAcquire(t, db, "m")
	if err := db.PutMeeting(gen, Meeting{ID: "m"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := db.PutParticipant("m", gen, Participant{ID: "p", Name: "old", JoinedAt: t0.Add(time.Duration(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir, logOnly)
	if err := db.PutParticipant("m", gen, Participant{ID: "p", Name: "new"}); err != nil {
		t.Fatal(err)
	}
	log, err := os.ReadFile(filepath.Join(dir, LogFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log[logEnd(t, db):], []byte("old")) {
		t.Fatal("no older records past the log's end: the test needs them")
	}
	got, err := openTest(t, crashCopy(t, db), logOnly).LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Participants) != 1 || got[0].Participants[0].Name != "new" {
		t.Errorf("after replay: %+v, want participant p named new", got)
	}
}

func TestChainStopsAtAGapOrDamage(t *testing.T) {
	var log []byte
	for _, seq := range []uint64{5, 6, 7, 3, 4} {
		rec := appendOp(newRecord(nil), opPut, bucketNonces, []byte{byte(seq)}, []byte("v"))
		seal(rec, seq)
		log = append(log, rec...)
	}
	var seen []uint64
	end, last, err := chain(log, func(seq uint64, _ []byte) error { seen = append(seen, seq); return nil })
	if err != nil || last != 7 || !reflect.DeepEqual(seen, []uint64{5, 6, 7}) || end != int64(len(log))/5*3 {
		t.Errorf("chain = %d, %d, %v; saw %v, want records 5..7", end, last, err, seen)
	}
	// Replay refuses a log that starts past the file's checkpoint: one of the two files is not the other's.
	bdb, err := bolt.Open(filepath.Join(t.TempDir(), FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	err = bdb.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucket(bucketNonces); err != nil {
			return err
		}
		_, err := replay(tx, [][]byte{log}, 2)
		return err
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("replay of records 5..7 onto checkpoint 2: %v, want ErrCorrupt", err)
	}
}

// FuzzLogRecords checks that the log decoder never panics on any bytes and that every record it accepts encodes
// back to the same bytes.
func FuzzLogRecords(f *testing.F) {
	rec := newRecord(nil)
	rec = appendOp(rec, opPut, bucketRoster, childKey("m", "p"), encodeParticipant(sampleParticipants[1]))
	rec = appendOp(rec, opDelete, bucketNonces, childKey("m", "n"), nil)
	seal(rec, 1)
	f.Add(rec)
	two := appendOp(newRecord(nil), opPut, bucketGenerations, []byte("m"), encodeGeneration(3))
	seal(two, 2)
	f.Add(append(append([]byte(nil), rec...), two...))
	f.Add(make([]byte, 64))
	f.Add(rec[:len(rec)-1])
	f.Add([]byte{0, 0, 0, 9, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 1, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		end, _, _ := chain(data, func(uint64, []byte) error { return nil })
		if end > int64(len(data)) {
			t.Fatalf("chain ended at %d past %d bytes", end, len(data))
		}
		for b := data; ; {
			seq, ops, size, ok := nextRecord(b)
			if !ok {
				return
			}
			b = b[size:]
			changes, err := decodeOps(ops)
			if err != nil {
				continue
			}
			again := newRecord(nil)
			for _, c := range changes {
				again = appendOp(again, c[0][0], c[1], c[2], c[3])
			}
			seal(again, seq)
			seq2, ops2, _, ok := nextRecord(again)
			changes2, err := decodeOps(ops2)
			if !ok || seq2 != seq || err != nil || !reflect.DeepEqual(changes, changes2) {
				t.Fatalf("record %d: %q re-encodes to %q (%v)", seq, changes, changes2, err)
			}
		}
	})
}

// decodeOps lists a record's changes as [op, bucket, key, value].
func decodeOps(ops []byte) ([][4][]byte, error) {
	var out [][4][]byte
	err := forEachOp(ops, func(op byte, bucket, key, value []byte) error {
		out = append(out, [4][]byte{{op}, bucket, key, value})
		return nil
	})
	return out, err
}
