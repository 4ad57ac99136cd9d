package store

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Each decoder must never panic, and whatever it accepts must survive a re-encode unchanged.

func FuzzDecodeMeeting(f *testing.F) {
	f.Add("m", encodeMeeting(sampleMeeting))
	f.Add("", encodeMeeting(Meeting{}))
	f.Add("m", []byte{formatV1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add("m", []byte{2})
	f.Fuzz(func(t *testing.T, id string, v []byte) {
		m, err := decodeMeeting(id, v)
		if err != nil {
			return
		}
		again, err := decodeMeeting(id, encodeMeeting(m))
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encode changed %+v to %+v (%v)", m, again, err)
		}
	})
}

func FuzzDecodeParticipant(f *testing.F) {
	for _, p := range sampleParticipants {
		f.Add(p.ID, encodeParticipant(p))
	}
	f.Add("p", []byte{formatV1, 0, 0, 0, 0x80, 0, 0, 0})
	f.Fuzz(func(t *testing.T, id string, v []byte) {
		p, err := decodeParticipant(id, v)
		if err != nil {
			return
		}
		again, err := decodeParticipant(id, encodeParticipant(p))
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("re-encode changed %+v to %+v (%v)", p, again, err)
		}
	})
}

func FuzzDecodeBinding(f *testing.F) {
	f.Add("c", encodeBinding(sampleBinding))
	f.Add("c", encodeBinding(Binding{}))
	f.Add("c", []byte{formatV1, 1, 'p', 0, 0, 1, 0x80})
	f.Fuzz(func(t *testing.T, id string, v []byte) {
		b, err := decodeBinding(id, v)
		if err != nil {
			return
		}
		again, err := decodeBinding(id, encodeBinding(b))
		if err != nil || !reflect.DeepEqual(again, b) {
			t.Fatalf("re-encode changed %+v to %+v (%v)", b, again, err)
		}
	})
}

func FuzzDecodeGeneration(f *testing.F) {
	f.Add(encodeGeneration(1))
	f.Add(encodeGeneration(1 << 63))
	f.Add([]byte{formatV1, 0, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		g, err := decodeGeneration(v)
		if err != nil {
			return
		}
		if again, err := decodeGeneration(encodeGeneration(g)); err != nil || again != g {
			t.Fatalf("re-encode changed %d to %d (%v)", g, again, err)
		}
	})
}

func FuzzDecodeNonce(f *testing.F) {
	f.Add(encodeNonce(t0))
	f.Add(encodeNonce(time.Time{}))
	f.Add([]byte{formatV1, 1, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, v []byte) {
		exp, err := decodeNonce(v)
		if err != nil {
			return
		}
		if again, err := decodeNonce(encodeNonce(exp)); err != nil || !again.Equal(exp) {
			t.Fatalf("re-encode changed %v to %v (%v)", exp, again, err)
		}
	})
}

func TestDecodeRejects(t *testing.T) {
	good := encodeParticipant(sampleParticipants[1])
	for name, v := range map[string][]byte{
		"empty":           nil,
		"unknown version": append([]byte{9}, good[1:]...),
		"truncated":       good[:len(good)-3],
		"trailing":        append(append([]byte(nil), good...), 0),
		"length overflow": {formatV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if _, err := decodeParticipant("p", v); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decodeMeeting("m", []byte{formatV1, 0xff, 0x7f}); !errors.Is(err, errBadCount) {
		t.Errorf("huge assignment count: %v, want errBadCount", err)
	}
}

// poke writes a raw value into a closed store's file, as a damaged or foreign file would hold it.
func poke(t *testing.T, dir string, value []byte, bucket []byte, key []byte) {
	t.Helper()
	bdb, err := bolt.Open(dir+"/"+FileName, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	err = bdb.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put(key, value)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCorruptValuesAreReported(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, Options{})
	gen := fill(t, db)
	good, err := db.Acquire("good")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutMeeting(good, Meeting{ID: "good"}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	m := sampleMeeting.ID
	poke(t, dir, encodeParticipant(sampleParticipants[0])[:5], bucketRoster, childKey(m, "p-1")) // truncated
	poke(t, dir, []byte{7, 1, 2, 3}, bucketBindings, childKey(m, "corr-1"))                      // unknown version
	poke(t, dir, []byte{formatV1, 1}, bucketGenerations, []byte("broken"))                       // short counter

	db = openTest(t, dir, Options{})
	states, err := db.LoadAll()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("LoadAll: %v, want ErrCorrupt", err)
	}
	t.Logf("LoadAll error: %v", err)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Key != m+"\x00p-1" || ce.Bucket != "roster" {
		t.Errorf("first corrupt value = %+v, want the roster entry p-1", ce)
	}
	// Everything decodable is still returned.
	if len(states) != 2 || states[1].Meeting.ID != m || states[1].Meeting.Generation != gen ||
		len(states[1].Participants) != 1 || len(states[1].Bindings) != 0 {
		t.Errorf("LoadAll states = %+v", states)
	}
	if err := db.PutMeeting(1, Meeting{ID: "broken"}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("fenced write on corrupt counter: %v, want ErrCorrupt", err)
	}
	// Acquire hands out a generation newer than any meeting's, which replaces the damaged counter.
	if g, err := db.Acquire("broken"); err != nil || g <= good {
		t.Errorf("Acquire on corrupt counter: %d, %v; want a generation above %d", g, err, good)
	} else if err := db.PutMeeting(g, Meeting{ID: "broken"}); err != nil {
		t.Errorf("PutMeeting after Acquire replaced the corrupt counter: %v", err)
	}
	// The store keeps working for everything else.
	if err := db.PutParticipant("good", good, Participant{ID: "x"}); err != nil {
		t.Errorf("write to an intact meeting: %v", err)
	}
	if err := db.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

// A damaged file fails Open with an error, never a crash.
func TestTruncatedFileFailsOpen(t *testing.T) {
	for _, keep := range []float64{0.002, 0.5} {
		t.Run(fmt.Sprint(keep), func(t *testing.T) {
			dir := t.TempDir()
			db := openTest(t, dir, Options{})
			var wg sync.WaitGroup
			for w := range 32 { // grow the file past a few pages, cheaply through shared commits
				wg.Go(func() {
					for i := range 20 {
						_ = db.ConsumeNonce("m", fmt.Sprintf("%0100d", w*100+i), time.Hour)
					}
				})
			}
			wg.Wait()
			db.Close()
			fi, err := os.Stat(db.Path())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(db.Path(), int64(float64(fi.Size())*keep)); err != nil {
				t.Fatal(err)
			}
			_, err = Open(dir, Options{})
			if err == nil {
				t.Fatalf("Open of a file truncated from %d to %.1f%% succeeded", fi.Size(), keep*100)
			}
			t.Logf("Open truncated: %v", err)
		})
	}
}
