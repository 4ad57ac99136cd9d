package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
)

// FileName is the database file's name inside the data directory.
const FileName = "edgemc.db"

// maxKeyLen bounds ids used as keys; bbolt allows 32 KiB, edgemc's ids are far shorter.
const maxKeyLen = 1024

// maxGroup bounds how many writes share one transaction.
const maxGroup = 4096

var (
	bucketGenerations = []byte("generations")
	bucketMeetings    = []byte("meetings")
	bucketRoster      = []byte("roster")
	bucketBindings    = []byte("bindings")
	bucketNonces      = []byte("nonces")
	bucketLog         = []byte("log")
	allBuckets        = [][]byte{bucketGenerations, bucketMeetings, bucketRoster, bucketBindings, bucketNonces, bucketLog}

	keyCheckpoint = []byte("checkpoint")
	// keyGlobalGeneration holds the newest generation handed out to any meeting; meeting ids cannot contain NUL.
	keyGlobalGeneration = []byte{0}
)

// Options configure Open. The zero value is usable; a nil Logger discards the store's log.
type Options struct {
	LockTimeout   time.Duration // default 1s; a second opener fails with ErrLocked (wrapped with the path)
	SweepInterval time.Duration // default 10s; background sweeper of expired nonces and bindings
	// CheckpointInterval (default 500ms) bounds how long acknowledged writes stay in the log only; a checkpoint
	// costs one bbolt commit whatever the number of writes it folds in.
	CheckpointInterval time.Duration
	Now                func() time.Time // default time.Now (tests)
	Logger             *slog.Logger
	Observe            func(op string, d time.Duration, err error) // optional: metrics hook, called after every op
	// ObserveCheckpoint (optional) is called after every checkpoint with how long it took to fold the log into the
	// file, and its error; writers do not wait for it.
	ObserveCheckpoint func(d time.Duration, err error)

	// Tests only: the log's fdatasync (default: fdatasync, sync_linux.go) and a checkpoint's commit (default:
	// (*bolt.Tx).Commit).
	fdatasync  func(*os.File) error
	commitFile func(*bolt.Tx) error
}

func (o Options) withDefaults() Options {
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 10 * time.Second
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 500 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observe == nil {
		o.Observe = func(string, time.Duration, error) {}
	}
	if o.ObserveCheckpoint == nil {
		o.ObserveCheckpoint = func(time.Duration, error) {}
	}
	if o.fdatasync == nil {
		o.fdatasync = fdatasync
	}
	if o.commitFile == nil {
		o.commitFile = (*bolt.Tx).Commit
	}
	return o
}

// DB is an open store. Its methods are safe for concurrent use.
type DB struct {
	bolt   *bolt.DB
	log    *wal
	path   string
	opts   Options
	logger *slog.Logger
	commit *committer

	stop      context.CancelFunc
	group     *errgroup.Group
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store in dir: dir is created 0700, the files dir/edgemc.db and the log's two
// segments dir/edgemc.wal and dir/edgemc.wal.1 0600. Writes a crash left in the log are replayed into the file. If
// another process holds the file, Open fails after opts.LockTimeout with an error wrapping ErrLocked. Open starts
// the committer and the sweeper; Close stops them.
func Open(dir string, opts Options) (*DB, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	bdb, err := openBolt(path, opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	log, err := openWAL(dir, opts.fdatasync)
	if err != nil {
		bdb.Close()
		return nil, err
	}
	replayed, n, err := recoverLog(bdb, log)
	if err != nil {
		log.close()
		bdb.Close()
		return nil, fmt.Errorf("store: initialise %s: %w", path, err)
	}

	ctx, stop := context.WithCancel(context.Background())
	logger := opts.Logger.With("component", "store")
	db := &DB{
		bolt:   bdb,
		log:    log,
		path:   path,
		opts:   opts,
		logger: logger,
		commit: newCommitter(logger, bdb, log, n, opts),
		stop:   stop,
	}
	db.group, ctx = errgroup.WithContext(ctx)
	db.group.Go(db.commit.run)
	db.group.Go(func() error { db.sweepLoop(ctx); return nil })
	db.logger.Info("store opened", "path", path, "replayed_log_records", replayed)
	return db, nil
}

// recoverLog creates missing buckets, replays the log records the file does not hold yet, prunes generations (see
// pruneGenerations) and checkpoints, so the log starts empty. It returns how many records it replayed and the
// counts Stats starts from: the one walk over the store, at Open.
func recoverLog(bdb *bolt.DB, log *wal) (replayed uint64, n counts, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, p)
		}
	}()
	var checkpoint uint64
	segs, err := log.readAll()
	if err != nil {
		return 0, n, err
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		var from uint64
		if v := tx.Bucket(bucketLog).Get(keyCheckpoint); v != nil {
			if from, err = decodeGeneration(v); err != nil {
				return corrupt(string(bucketLog), keyCheckpoint, err)
			}
		}
		if checkpoint, err = replay(tx, segs[:], from); err != nil {
			return err
		}
		replayed = checkpoint - from
		if n.maxGeneration, err = pruneGenerations(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketLog).Put(keyCheckpoint, encodeGeneration(checkpoint))
	})
	if err != nil {
		return 0, n, err
	}
	// Bucket.Stats counts pages, which hold a transaction's changes only once it is committed.
	_ = bdb.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeetings, bucketRoster, bucketBindings, bucketNonces} {
			*n.of(name) = tx.Bucket(name).Stats().KeyN
		}
		return nil
	})
	log.seq, log.cur, log.off = checkpoint, 0, 0
	return replayed, n, nil
}

// openBolt opens the file, turning bbolt's panics on a damaged file into ErrCorrupt and checking that the file
// holds every page its meta page claims (a truncated copy or a short disk would otherwise fault on read).
func openBolt(path string, lockTimeout time.Duration) (db *bolt.DB, err error) {
	defer func() {
		// bbolt has mapped the file by then and keeps it (and its lock) until the process exits; the appliance
		// stops on this error anyway, and the operator moves the file aside.
		if p := recover(); p != nil {
			err = fmt.Errorf("store: open %s: %w: %v", path, ErrCorrupt, p)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: lockTimeout,
		// The freelist stays synced: without it bbolt rebuilds it at open by walking the whole file in a goroutine
		// of its own, which crashes the process on a damaged file instead of returning an error.
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: %w (is another edgemc running with this data dir?)", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	var need int64
	_ = db.View(func(tx *bolt.Tx) error { need = tx.Size(); return nil })
	if fi, err := os.Stat(path); err != nil || fi.Size() < need {
		db.Close()
		return nil, fmt.Errorf("store: open %s: %w: file is shorter than the %d bytes its header names", path, ErrCorrupt, need)
	}
	return db, nil
}

// Close stops the sweeper, commits writes already queued, refuses new ones with ErrClosed, folds the log into the
// file and closes it. After ErrSyncFailed, Close leaves the log as it is, for the next Open to replay.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.stop()
		db.commit.close()
		db.closeErr = errors.Join(db.group.Wait(), db.log.close(), db.bolt.Close())
		if db.closeErr != nil {
			db.closeErr = fmt.Errorf("store: close %s: %w", db.path, db.closeErr)
		}
	})
	return db.closeErr
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Check is the cheap health probe that readiness, heartbeats and every assignment ask: it fails after Close, after a
// failed sync (ErrSyncFailed, final until the store is reopened) and while the last commit has failed (a full disk,
// an I/O error). It does not queue behind writes.
func (db *DB) Check() error {
	if err := db.commit.lastError(); err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrSyncFailed) {
			return err
		}
		return fmt.Errorf("store: last commit failed: %w", err)
	}
	return nil
}

// Ping is the watchdog's liveness probe: a no-op read queued behind the writes already queued, so it answers only
// when the committer does. It returns nil, the error every call gets now (ErrClosed, ErrSyncFailed), or ctx's error
// if ctx ends first; a caller that gives up leaves nothing blocked (the committer answers into a buffered channel).
func (db *DB) Ping(ctx context.Context) error {
	start := time.Now()
	err := db.commit.enqueue(ctx, func(*txn) error { return nil }, true)
	db.opts.Observe("ping", time.Since(start), err)
	return err
}

// Stats summarises the store for the status page.
type Stats struct {
	Path          string
	FileSize      int64
	Meetings      int
	Participants  int
	Bindings      int
	Nonces        int
	MaxGeneration uint64 // the newest generation handed out to any meeting
}

// Stats reports what the store holds: counts kept as writes are acknowledged, so it costs the same whatever the
// store holds and does not queue behind writes. It fails only after Close.
func (db *DB) Stats() (Stats, error) {
	if errors.Is(db.commit.lastError(), ErrClosed) {
		return Stats{}, ErrClosed
	}
	n := db.commit.stats()
	s := Stats{Path: db.path, Meetings: n.meetings, Participants: n.participants, Bindings: n.bindings,
		Nonces: n.nonces, MaxGeneration: n.maxGeneration}
	if fi, err := os.Stat(db.path); err == nil {
		s.FileSize = fi.Size()
	}
	return s, nil
}

// view runs fn through the committer, after the writes queued before it, reporting a damaged page (bbolt panics)
// as ErrCorrupt.
func (db *DB) view(fn func(*txn) error) error {
	return db.commit.read(func(tx *txn) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("store: read %s: %w: %v", db.path, ErrCorrupt, p)
			}
		}()
		return fn(tx)
	})
}

// write runs fn through the group committer and reports the op to the Observe hook.
func (db *DB) write(op string, fn func(*txn) error) error {
	start := time.Now()
	err := db.commit.do(fn)
	db.opts.Observe(op, time.Since(start), err)
	return err
}

// checkMeetingID validates a meeting id: a key, and the prefix of its entries' keys.
func checkMeetingID(id string) error {
	if strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("%w: meeting id contains NUL", ErrInvalid)
	}
	return checkKey("meeting id", id)
}

// checkKey validates an id used as a key.
func checkKey(what, id string) error {
	if id == "" || len(id) > maxKeyLen {
		return fmt.Errorf("%w: %s must be 1..%d bytes", ErrInvalid, what, maxKeyLen)
	}
	return nil
}
