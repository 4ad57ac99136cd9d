package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// gate stands in for a file sync in tests: each call announces itself on entered and waits for an answer on
// release (nil: go on and sync for real). Once opened (at the test's end) it lets every call through.
type gate struct {
	entered chan string
	release chan error
	opened  chan struct{}
	once    sync.Once
}

func newGate() *gate {
	return &gate{entered: make(chan string), release: make(chan error), opened: make(chan struct{})}
}

// wait is the gate itself; it returns what the test released the call with.
func (g *gate) wait(name string) error {
	select {
	case g.entered <- name:
	case <-g.opened:
		return nil
	}
	select {
	case err := <-g.release:
		return err
	case <-g.opened:
		return nil
	}
}

// sync is a gated fdatasync.
func (g *gate) sync(f *os.File) error {
	if err := g.wait(f.Name()); err != nil {
		return err
	}
	return fdatasync(f)
}

// open lets every call through from now on; register it with t.Cleanup after opening the store, so it runs before
// the store's Close.
func (g *gate) open() { g.once.Do(func() { close(g.opened) }) }

// disk models what survives a crash: each file as of its last completed sync.
type disk struct {
	mu    sync.Mutex
	files map[string][]byte // base name → contents
}

// synced records path's contents as durable.
func (d *disk) synced(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.files == nil {
		d.files = map[string][]byte{}
	}
	d.files[filepath.Base(path)] = b
}

// crash writes the durable files into a new directory, with change applied to a copy of them first.
func (d *disk) crash(t *testing.T, change func(files map[string][]byte)) string {
	t.Helper()
	d.mu.Lock()
	files := map[string][]byte{}
	for name, b := range d.files {
		files[name] = append([]byte(nil), b...)
	}
	d.mu.Unlock()
	if change != nil {
		change(files)
	}
	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// No write is acknowledged before the sync of its log record has returned, and a crash at any moment keeps every
// acknowledged write: a store opened from what the syncs made durable holds them all. A crash that tears the record
// being synced loses only that unacknowledged write.
func TestWriteAcknowledgedOnlyAfterItsSync(t *testing.T) {
	dir := t.TempDir()
	g := newGate()
	var d disk
	opts := logOnly
	opts.Now = func() time.Time { return t0 } // a record ends in a non-zero byte: the nanoseconds of its expiry
	opts.fdatasync = func(f *os.File) error {
		if err := g.sync(f); err != nil {
			return err
		}
		d.synced(t, f.Name())
		return nil
	}
	db := openTest(t, dir, opts)
	t.Cleanup(g.open)
	// Open has synced the file and both log segments; no checkpoint runs in this test.
	for _, name := range append([]string{FileName}, segmentNames[:]...) {
		d.synced(t, filepath.Join(dir, name))
	}

	const writes = 4
	nonce := func(i int) string { return fmt.Sprint("n-", i) }
	for i := range writes {
		done := make(chan error, 1)
		go func() { done <- db.ConsumeNonce("m", nonce(i), time.Hour) }()
		var segment string
		select {
		case segment = <-g.entered:
		case err := <-done:
			t.Fatalf("write %d acknowledged (err %v) without a sync of the log", i, err)
		}
		select {
		case err := <-done:
			t.Fatalf("write %d acknowledged (err %v) while its sync had not returned", i, err)
		default:
		}
		if i == writes-1 {
			// The record is written, not synced: a crash now may keep any part of it.
			tornTail(t, &d, segment, func(dir string) {
				checkNonces(t, dir, nonce, i, i)
			})
		}
		g.release <- nil
		if err := <-done; err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		checkNonces(t, d.crash(t, nil), nonce, i+1, -1)
	}
}

// tornTail opens, through check, crash images in which the record written to segment since its last sync is cut
// at several points.
func tornTail(t *testing.T, d *disk, segment string, check func(dir string)) {
	t.Helper()
	pending, err := os.ReadFile(segment)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(segment)
	d.mu.Lock()
	durable := d.files[name]
	d.mu.Unlock()
	end, _, _ := chain(durable, func(uint64, []byte) error { return nil })
	size := int64(binary.BigEndian.Uint32(pending[end:end+4])) + 8
	for _, cut := range []int64{4, recordHeader, size / 2, size - 1} {
		check(d.crash(t, func(files map[string][]byte) {
			copy(files[name][end:end+cut], pending[end:end+cut])
		}))
	}
}

// checkNonces opens a crash image and checks that nonces 0..n-1 are consumed and nonce absent (if >= 0) is not.
func checkNonces(t *testing.T, dir string, nonce func(int) string, n, absent int) {
	t.Helper()
	db := openTest(t, dir, logOnly)
	defer db.Close()
	for j := range n {
		if err := db.ConsumeNonce("m", nonce(j), time.Hour); !errors.Is(err, ErrNonceUsed) {
			t.Errorf("acknowledged nonce %d after a crash: %v, want ErrNonceUsed", j, err)
		}
	}
	if st, _ := db.Stats(); st.Nonces != n {
		t.Errorf("Stats after a crash = %+v, want %d nonces", st, n)
	}
	if absent >= 0 {
		if err := db.ConsumeNonce("m", nonce(absent), time.Hour); err != nil {
			t.Errorf("nonce %d, whose record was torn, after a crash: %v, want it unused", absent, err)
		}
	}
}

// A failed fdatasync of the log is final: the write fails with ErrSyncFailed, and the store neither retries the
// sync nor accepts another call until it is reopened, which replays every acknowledged write.
func TestSyncFailureIsFinal(t *testing.T) {
	dir := t.TempDir()
	var (
		syncs atomic.Int32
		fail  atomic.Bool
	)
	opts := logOnly
	opts.fdatasync = func(f *os.File) error {
		syncs.Add(1)
		if fail.Load() {
			return syscall.EIO
		}
		return fdatasync(f)
	}
	db := openTest(t, dir, opts)
	gen := fill(t, db)
	fail.Store(true)
	err := db.PutParticipant(sampleMeeting.ID, gen, Participant{ID: "unacknowledged"})
	if !errors.Is(err, ErrSyncFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("write whose sync failed: %v, want ErrSyncFailed wrapping EIO", err)
	}
	t.Logf("write whose sync failed: %v", err)
	fail.Store(false)
	after := syncs.Load()

	// The next sync would succeed, but nothing is retried on this file.
	for name, err := range map[string]error{
		"PutParticipant": db.PutParticipant(sampleMeeting.ID, gen, Participant{ID: "later"}),
		"ConsumeNonce":   db.ConsumeNonce(sampleMeeting.ID, "n", time.Hour),
		"Acquire":        func() error { _, err := db.Acquire("other"); return err }(),
		"LoadAll":        func() error { _, err := db.LoadAll(); return err }(),
		"Ping":           db.Ping(context.Background()),
		"Check":          db.Check(),
	} {
		if !errors.Is(err, ErrSyncFailed) {
			t.Errorf("%s after a failed sync: %v, want ErrSyncFailed", name, err)
		}
	}
	if n := syncs.Load(); n != after {
		t.Errorf("the store synced the log %d more times after a failed sync", n-after)
	}
	if err := db.Close(); err != nil {
		t.Errorf("Close after a failed sync: %v", err)
	}

	db = openTest(t, dir, logOnly)
	got, err := db.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0].Participants[:len(sampleParticipants)], sampleParticipants) {
		t.Fatalf("after reopening: %+v, want the acknowledged writes", got)
	}
	// The failed write's record reached the page cache, so the replay finds it: its outcome was unknown.
	t.Logf("participants after reopening: %d (the write whose sync failed may be among them)", len(got[0].Participants))
	if err := db.PutParticipant(sampleMeeting.ID, gen, Participant{ID: "later"}); err != nil {
		t.Errorf("write after reopening: %v", err)
	}
	if err := db.Check(); err != nil {
		t.Errorf("Check after reopening: %v", err)
	}
}

// Ping answers through the committer's queue: while the committer hangs in a sync, Ping gives up with ctx's error,
// and the committer answers it later without anyone waiting.
func TestPing(t *testing.T) {
	g := newGate()
	db := openTest(t, t.TempDir(), Options{fdatasync: g.sync})
	t.Cleanup(g.open)
	if err := db.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}

	done := make(chan error, 1)
	go func() { done <- db.ConsumeNonce("m", "n", time.Hour) }()
	select {
	case <-g.entered: // the committer now waits in the sync
	case err := <-done:
		t.Fatalf("write answered (%v) without a sync", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := db.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping while the committer hangs: %v, want context.DeadlineExceeded", err)
	}
	g.release <- nil
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(context.Background()); err != nil {
		t.Errorf("Ping once the sync returned: %v", err)
	}
	db.Close()
	if err := db.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close: %v, want ErrClosed", err)
	}
}

// A checkpoint folds the log into the file beside the writers: while its commit hangs, writes are acknowledged and
// reads see both what it folds and what came after. Its duration goes to ObserveCheckpoint.
func TestCheckpointDoesNotStallWriters(t *testing.T) {
	dir := t.TempDir()
	db, g, observed := openGatedCheckpoints(t, dir)
	gen := fill(t, db)
	awaitCheckpoint(t, g) // the checkpoint of fill's writes hangs in its commit

	done := make(chan error, 1)
	go func() {
		for i := range 20 {
			if err := db.PutParticipant(sampleMeeting.ID, gen, Participant{ID: fmt.Sprint("late-", i)}); err != nil {
				done <- err
				return
			}
		}
		got, err := db.LoadAll()
		if err == nil && (len(got) != 1 || len(got[0].Participants) != len(sampleParticipants)+20 || got[0].Meeting.AssignedBy != "gc-1") {
			err = fmt.Errorf("LoadAll during the checkpoint: %+v", got)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second): // a guard only: the writes take milliseconds unless they wait for the commit
		t.Fatal("writes waited for the checkpoint's commit")
	}
	g.release <- nil
	if err := <-observed; err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	g.open()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if n := rosterSize(t, dir); n != len(sampleParticipants)+20 {
		t.Errorf("the file holds %d roster entries after Close, want %d", n, len(sampleParticipants)+20)
	}
}

// awaitCheckpoint waits for a checkpoint's commit to reach the gate.
func awaitCheckpoint(t *testing.T, g *gate) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(20 * time.Second): // a guard only: the checkpoint is due 1 ms after the first write
		t.Fatal("no checkpoint started")
	}
}

// openGatedCheckpoints opens a store in dir whose checkpoint commits wait at
// g (released with an error to fail one), reporting each result on observed;
// every checkpoint must report a positive duration.
func openGatedCheckpoints(t *testing.T, dir string) (db *DB, g *gate, observed chan error) {
	t.Helper()
	g = newGate()
	observed = make(chan error, 10)
	db = openTest(t, dir, Options{
		CheckpointInterval: time.Millisecond,
		commitFile: func(tx *bolt.Tx) error {
			if err := g.wait(""); err != nil {
				_ = tx.Rollback()
				return err
			}
			return tx.Commit()
		},
		ObserveCheckpoint: func(d time.Duration, err error) {
			if d <= 0 {
				t.Errorf("checkpoint took %v", d)
			}
			select {
			case observed <- err:
			default: // only the first ones matter
			}
		},
	})
	t.Cleanup(g.open)
	return db, g, observed
}

// A failed checkpoint commit is final like a failed log sync; reopening replays both log segments: the one the
// checkpoint was folding in and the one written meanwhile.
func TestCheckpointFailureIsFinal(t *testing.T) {
	dir := t.TempDir()
	db, g, observed := openGatedCheckpoints(t, dir)
	gen := fill(t, db)
	awaitCheckpoint(t, g)
	if err := db.PutParticipant(sampleMeeting.ID, gen, Participant{ID: "during"}); err != nil {
		t.Fatal(err)
	}
	g.release <- syscall.EIO
	if err := <-observed; !errors.Is(err, ErrSyncFailed) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("observed checkpoint error %v, want ErrSyncFailed wrapping EIO", err)
	}
	if err := db.PutParticipant(sampleMeeting.ID, gen, Participant{ID: "after"}); !errors.Is(err, ErrSyncFailed) {
		t.Errorf("write after a failed checkpoint: %v, want ErrSyncFailed", err)
	}
	if err := db.Check(); !errors.Is(err, ErrSyncFailed) {
		t.Errorf("Check after a failed checkpoint: %v, want ErrSyncFailed", err)
	}
	g.open()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if n := rosterSize(t, dir); n != 0 {
		t.Fatalf("the file holds %d roster entries: the test needs them in the log only", n)
	}

	db = openTest(t, dir, logOnly)
	got, err := db.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := wantState(gen)
	want[0].Participants = append([]Participant{{ID: "during"}}, want[0].Participants...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after reopening:\n got %+v\nwant %+v", got, want)
	}
}

// A checkpoint commit that finds the disk full synced nothing: the store is
// unhealthy but not failed, writes go on, the checkpoint is folded again and
// the store is healthy once it fits.
func TestCheckpointOnAFullDiskIsRetried(t *testing.T) {
	dir := t.TempDir()
	db, g, observed := openGatedCheckpoints(t, dir)
	gen := fill(t, db)
	awaitCheckpoint(t, g)
	g.release <- syscall.ENOSPC
	if err := <-observed; errors.Is(err, ErrSyncFailed) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("observed checkpoint error %v, want ENOSPC and not ErrSyncFailed", err)
	}
	if err := db.Check(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Check after a checkpoint found the disk full: %v, want ENOSPC", err)
	}
	if err := db.PutParticipant(sampleMeeting.ID, gen, Participant{ID: "after"}); err != nil {
		t.Fatalf("write after a checkpoint found the disk full: %v", err)
	}
	if err := db.Check(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Check after a write, the checkpoint still unfolded: %v, want ENOSPC", err)
	}
	g.open() // room again: the frozen changes are folded
	for {
		if err := <-observed; err == nil {
			break
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for db.Check() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still unhealthy after the checkpoint fitted: %v", db.Check())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, dir, logOnly)
	got, err := db.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := wantState(gen)
	want[0].Participants = append([]Participant{{ID: "after"}}, want[0].Participants...)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after reopening:\n got %+v\nwant %+v", got, want)
	}
}
