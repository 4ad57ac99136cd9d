// Package store is edgemc's durable local state in one bbolt file: meeting generations (fencing tokens), each
// meeting's MH assignments, roster and session bindings, and one-time nonces.
//
// It replaces Dark Tower's Redis and its Lua check-and-write: every meeting write names the generation its writer
// holds, and the check and the write happen in one bbolt transaction. Writes are durable (fsynced) when a call
// returns; concurrent writers share commits through a group committer, so throughput grows with concurrency instead
// of paying one fsync per write. A background sweeper removes expired nonces and bindings.
//
// Layout (bucket/key → value; every value starts with a format version byte). Buckets are flat — per-meeting
// entries are keyed "<meeting>\x00<id>" — because a commit costs one page per distinct leaf it touches, and nested
// per-meeting buckets would add two more pages per meeting written:
//
//	generations/<meeting>               → generation counter (kept when the meeting is deleted)
//	meetings/<meeting>                  → MH assignments, assigned-by, created-at
//	roster/<meeting>\x00<participant>    → participant
//	bindings/<meeting>\x00<correlation>  → binding
//	nonces/<meeting>\x00<nonce>          → expiry
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
	allBuckets        = [][]byte{bucketGenerations, bucketMeetings, bucketRoster, bucketBindings, bucketNonces}
)

// Options configure Open. The zero value is usable.
type Options struct {
	LockTimeout   time.Duration    // default 1s; a second opener fails with ErrLocked (wrapped with the path)
	SweepInterval time.Duration    // default 10s; background sweeper of expired nonces and bindings
	Now           func() time.Time // default time.Now (tests)
	Logger        *slog.Logger
	Observe       func(op string, d time.Duration, err error) // optional: metrics hook, called after every op
}

func (o Options) withDefaults() Options {
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 10 * time.Second
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
	return o
}

// DB is an open store. Its methods are safe for concurrent use.
type DB struct {
	bolt   *bolt.DB
	path   string
	opts   Options
	log    *slog.Logger
	commit *committer

	stop      context.CancelFunc
	group     *errgroup.Group
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store in dir: dir is created 0700 and the file dir/edgemc.db 0600. If another
// process holds the file, Open fails after opts.LockTimeout with an error wrapping ErrLocked. Open starts the
// committer and the sweeper; Close stops them.
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
	err = bdb.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("store: initialise %s: %w", path, err)
	}

	ctx, stop := context.WithCancel(context.Background())
	db := &DB{
		bolt:   bdb,
		path:   path,
		opts:   opts,
		log:    opts.Logger.With("component", "store"),
		commit: newCommitter(bdb, maxGroup),
		stop:   stop,
	}
	db.group, ctx = errgroup.WithContext(ctx)
	db.group.Go(func() error { db.commit.run(); return nil })
	db.group.Go(func() error { db.sweepLoop(ctx); return nil })
	db.log.Info("store opened", "path", path)
	return db, nil
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

// Close stops the sweeper, commits writes already queued, refuses new ones with ErrClosed and closes the file.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.stop()
		db.commit.close()
		_ = db.group.Wait()
		db.closeErr = db.bolt.Close()
		if db.closeErr != nil {
			db.closeErr = fmt.Errorf("store: close %s: %w", db.path, db.closeErr)
		}
	})
	return db.closeErr
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Check is a cheap health probe: the store is open, its last commit did not fail and a read transaction works.
func (db *DB) Check() error {
	if err := db.commit.lastError(); err != nil {
		return fmt.Errorf("store: last commit failed: %w", err)
	}
	return db.view(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				return &CorruptError{Bucket: string(name), Err: errors.New("bucket missing")}
			}
		}
		return nil
	})
}

// Stats summarises the store for the status page.
type Stats struct {
	Path          string
	FileSize      int64
	Meetings      int
	Participants  int
	Bindings      int
	Nonces        int
	MaxGeneration uint64
}

// Stats counts what the store holds.
func (db *DB) Stats() (Stats, error) {
	start := time.Now()
	s := Stats{Path: db.path}
	err := db.view(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketGenerations).ForEach(func(k, v []byte) error {
			g, err := decodeGeneration(v)
			if err != nil {
				return corrupt(string(bucketGenerations), k, err)
			}
			s.MaxGeneration = max(s.MaxGeneration, g)
			return nil
		})
		if err != nil {
			return err
		}
		for _, c := range []struct {
			n      *int
			bucket []byte
		}{{&s.Meetings, bucketMeetings}, {&s.Participants, bucketRoster}, {&s.Bindings, bucketBindings}, {&s.Nonces, bucketNonces}} {
			*c.n = tx.Bucket(c.bucket).Stats().KeyN
		}
		return nil
	})
	if fi, statErr := os.Stat(db.path); statErr == nil {
		s.FileSize = fi.Size()
	}
	db.opts.Observe("stats", time.Since(start), err)
	return s, err
}

// view runs a read transaction, reporting a closed store as ErrClosed and a damaged page (bbolt panics) as
// ErrCorrupt.
func (db *DB) view(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: read %s: %w: %v", db.path, ErrCorrupt, p)
		}
	}()
	err = db.bolt.View(fn)
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// write runs fn through the group committer and reports the op to the Observe hook.
func (db *DB) write(op string, fn func(*bolt.Tx) error) error {
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
