package store

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

func openTest(t testing.TB, dir string, opts Options) *DB {
	t.Helper()
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newMeeting opens a store in a temp dir with one meeting at a freshly acquired generation.
func newMeeting(t testing.TB, id string) (*DB, uint64) {
	t.Helper()
	db := openTest(t, t.TempDir(), Options{})
	gen := mustAcquire(t, db, id)
	if err := db.PutMeeting(gen, Meeting{ID: id}); err != nil {
		t.Fatalf("PutMeeting: %v", err)
	}
	return db, gen
}

func mustAcquire(t testing.TB, db *DB, id string) uint64 {
	t.Helper()
	gen, err := db.Acquire(id)
	if err != nil {
		t.Fatalf("Acquire(%q): %v", id, err)
	}
	return gen
}

var (
	t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

	sampleMeeting = Meeting{
		ID: "meeting-1",
		Assignments: []Assignment{
			{MHID: "mh-a", WebTransportEndpoint: "https://mh-a:4433", GRPCEndpoint: "mh-a:50051"},
			{MHID: "mh-b", WebTransportEndpoint: "https://mh-b:4433", GRPCEndpoint: "mh-b:50051"},
		},
		AssignedBy: "gc-1",
		CreatedAt:  t0,
	}
	sampleParticipants = []Participant{
		{ID: "p-1", UserID: "user-1", Name: "Ada", Role: "host", JoinedAt: t0, Connected: true},
		{ID: "p-2", UserID: "user-2", Name: "Grace ✓", Role: "participant", AudioSelfMuted: true,
			AudioHostMuted: true, VideoHostMuted: true, HostMutedBy: "p-1", JoinedAt: t0.Add(time.Second),
			DisconnectedSince: t0.Add(time.Minute)},
	}
	sampleBinding = Binding{CorrelationID: "corr-1", ParticipantID: "p-1", UserID: "user-1", Nonce: "n-1",
		ExpiresAt: t0.Add(time.Hour)}
)

// fill writes the sample meeting and returns the generation it holds.
func fill(t *testing.T, db *DB) uint64 {
	t.Helper()
	gen := mustAcquire(t, db, sampleMeeting.ID)
	if err := db.PutMeeting(gen, sampleMeeting); err != nil {
		t.Fatal(err)
	}
	for _, p := range sampleParticipants {
		if err := db.PutParticipant(sampleMeeting.ID, gen, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutBinding(sampleMeeting.ID, gen, sampleBinding); err != nil {
		t.Fatal(err)
	}
	return gen
}

func wantState(gen uint64) []MeetingState {
	m := sampleMeeting
	m.Generation = gen
	return []MeetingState{{Meeting: m, Participants: sampleParticipants, Bindings: []Binding{sampleBinding}}}
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	db := openTest(t, dir, Options{})
	if got, want := db.Path(), filepath.Join(dir, FileName); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, db.Path(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %v, want %v", path, got, want)
		}
	}
	if err := db.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir, Options{})
	start := time.Now()
	_, err := Open(dir, Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %v", d)
	}
	t.Logf("second open: %v", err)
}

func TestRoundTripAndRestart(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, Options{})
	gen := fill(t, db)
	if err := db.ConsumeNonce(sampleMeeting.ID, "once", time.Hour); err != nil {
		t.Fatal(err)
	}
	other := mustAcquire(t, db, "ended")
	if err := db.PutMeeting(other, Meeting{ID: "ended"}); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteMeeting("ended", other); err != nil {
		t.Fatal(err)
	}

	check := func(db *DB) {
		t.Helper()
		got, err := db.LoadAll()
		if err != nil {
			t.Fatalf("LoadAll: %v", err)
		}
		if want := wantState(gen); !reflect.DeepEqual(got, want) {
			t.Errorf("LoadAll =\n%+v\nwant\n%+v", got, want)
		}
		st, err := db.Stats()
		if err != nil {
			t.Fatal(err)
		}
		want := Stats{Path: db.Path(), FileSize: st.FileSize, Meetings: 1, Participants: 2, Bindings: 1, Nonces: 1,
			MaxGeneration: other}
		if st != want || st.FileSize <= 0 {
			t.Errorf("Stats = %+v, want %+v", st, want)
		}
	}
	check(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	db = openTest(t, dir, Options{})
	check(db)
	if err := db.ConsumeNonce(sampleMeeting.ID, "once", time.Hour); !errors.Is(err, ErrNonceUsed) {
		t.Errorf("nonce after restart: %v, want ErrNonceUsed", err)
	}
	// Generations come from one counter that survives restarts and deletions: never reused.
	for i, id := range []string{sampleMeeting.ID, "ended"} {
		if g, want := mustAcquire(t, db, id), other+1+uint64(i); g != want {
			t.Errorf("Acquire(%q) after restart = %d, want %d", id, g, want)
		}
	}
}

func TestNotFoundAndInvalid(t *testing.T) {
	db, gen := newMeeting(t, "m")
	p := Participant{ID: "p"}
	for name, err := range map[string]error{
		"participant of missing meeting": db.PutParticipant("nope", gen, p),
		"binding of missing meeting":     db.PutBinding("nope", gen, Binding{CorrelationID: "c"}),
		"delete missing meeting":         db.DeleteMeeting("nope", gen),
		"delete missing participant":     db.DeleteParticipant("m", gen, "p"),
		"delete missing binding":         db.DeleteBinding("m", gen, "c"),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	for name, err := range map[string]error{
		"empty meeting id":     db.PutMeeting(gen, Meeting{}),
		"empty participant id": db.PutParticipant("m", gen, Participant{}),
		"generation 0":         db.PutParticipant("m", 0, p),
		"zero ttl":             db.ConsumeNonce("m", "n", 0),
		"empty nonce":          db.ConsumeNonce("m", "", time.Second),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := db.Acquire(string(make([]byte, maxKeyLen+1))); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized id: %v, want ErrInvalid", err)
	}
}

func TestDeletesRemoveState(t *testing.T) {
	db := openTest(t, t.TempDir(), Options{})
	gen := fill(t, db)
	if err := db.DeleteParticipant(sampleMeeting.ID, gen, "p-2"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteBinding(sampleMeeting.ID, gen, sampleBinding.CorrelationID); err != nil {
		t.Fatal(err)
	}
	got, err := db.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0].Participants) != 1 || got[0].Participants[0].ID != "p-1" || len(got[0].Bindings) != 0 {
		t.Fatalf("after deletes: %+v", got)
	}
	if err := db.DeleteMeeting(sampleMeeting.ID, gen); err != nil {
		t.Fatal(err)
	}
	if got, err := db.LoadAll(); err != nil || len(got) != 0 {
		t.Fatalf("after DeleteMeeting: %+v, %v", got, err)
	}
}

func TestClosedStore(t *testing.T) {
	db, gen := newMeeting(t, "m")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Acquire("m"); !errors.Is(err, ErrClosed) {
		t.Errorf("Acquire after Close: %v", err)
	}
	if err := db.PutParticipant("m", gen, Participant{ID: "p"}); !errors.Is(err, ErrClosed) {
		t.Errorf("PutParticipant after Close: %v", err)
	}
	if _, err := db.LoadAll(); !errors.Is(err, ErrClosed) {
		t.Errorf("LoadAll after Close: %v", err)
	}
	if err := db.Check(); !errors.Is(err, ErrClosed) {
		t.Errorf("Check after Close: %v", err)
	}
}

// Writes queued when Close is called are committed, not dropped.
func TestCloseDrainsQueuedWrites(t *testing.T) {
	dir := t.TempDir()
	db := openTest(t, dir, Options{})
	gen := mustAcquire(t, db, "m")
	if err := db.PutMeeting(gen, Meeting{ID: "m"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	acked := make([]bool, 200)
	for i := range acked {
		wg.Go(func() {
			acked[i] = db.PutParticipant("m", gen, Participant{ID: string(rune('A' + i))}) == nil
		})
	}
	db.Close()
	wg.Wait()
	db = openTest(t, dir, Options{})
	got, err := db.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range got[0].Participants {
		have[p.ID] = true
	}
	for i, ok := range acked {
		if ok && !have[string(rune('A'+i))] {
			t.Errorf("acknowledged write %d lost", i)
		}
	}
}

func TestObserveHook(t *testing.T) {
	var mu sync.Mutex
	ops := map[string]error{}
	db := openTest(t, t.TempDir(), Options{Observe: func(op string, _ time.Duration, err error) {
		mu.Lock()
		ops[op] = err
		mu.Unlock()
	}})
	gen := mustAcquire(t, db, "m")
	_ = db.PutParticipant("m", gen, Participant{ID: "p"}) // no meeting yet: ErrNotFound
	_, _ = db.LoadAll()
	mu.Lock()
	defer mu.Unlock()
	if err, ok := ops["acquire"]; !ok || err != nil {
		t.Errorf("acquire observed: %v %v", ok, err)
	}
	if err := ops["put_participant"]; !errors.Is(err, ErrNotFound) {
		t.Errorf("put_participant observed error %v", err)
	}
	if _, ok := ops["load_all"]; !ok {
		t.Error("load_all not observed")
	}
}
