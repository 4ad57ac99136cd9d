package store

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// committer is edgemc's group commit. Writers queue a function; one goroutine takes everything queued, runs it in
// the bbolt read-write transaction it keeps open, appends the group's changes to the write-ahead log as one record,
// syncs the log once and acknowledges the whole group. The next group starts as soon as the sync returns, so a lone
// writer pays one sync and concurrent writers share one, with no fixed delay. Every CheckpointInterval (or when the
// log fills) the open transaction is committed to the database file and the log rewound.
//
// Reads run through the committer as well: only its open transaction sees every acknowledged write.
type committer struct {
	logger   *slog.Logger
	db       *bolt.DB
	log      *wal
	maxGroup int
	interval time.Duration // checkpoint at least this often while writes are pending
	calls    sync.Pool     // *call

	mu     sync.Mutex
	queue  []*call
	closed bool
	health error // last failure of the log or the file itself; nil after a good group

	wake chan struct{} // capacity 1: "the queue may be non-empty"

	// Owned by run's goroutine.
	tx         *bolt.Tx  // holds every change since the last checkpoint; nil until needed
	stale      bool      // tx was discarded with changes the log holds: replay them into the next one
	checkpoint uint64    // sequence number of the last record the database file holds
	dirtySince time.Time // first change since the last checkpoint; zero if none
	rec        []byte    // the record being built
}

type call struct {
	fn   func(*txn) error
	read bool // a read: records nothing, its error is its result, and it runs once even if its group re-runs
	ran  bool
	err  error
	done chan error
}

// txn is what a queued function gets: the committer's open transaction, with writes recorded for the log.
type txn struct {
	tx  *bolt.Tx
	rec *[]byte // nil in a read
}

// bucket returns a bucket for reading; all changes go through put and del.
func (t *txn) bucket(name []byte) *bolt.Bucket { return t.tx.Bucket(name) }

// put stores key → value in bucket. bbolt keeps key and value until the checkpoint: callers pass fresh slices.
func (t *txn) put(bucket, key, value []byte) error {
	if t.rec == nil {
		return errors.New("store: write in a read")
	}
	if err := t.tx.Bucket(bucket).Put(key, value); err != nil {
		return err
	}
	*t.rec = appendOp(*t.rec, opPut, bucket, key, value)
	return nil
}

// del removes key from bucket.
func (t *txn) del(bucket, key []byte) error {
	if t.rec == nil {
		return errors.New("store: write in a read")
	}
	if err := t.tx.Bucket(bucket).Delete(key); err != nil {
		return err
	}
	*t.rec = appendOp(*t.rec, opDelete, bucket, key, nil)
	return nil
}

func newCommitter(logger *slog.Logger, db *bolt.DB, log *wal, checkpoint uint64, interval time.Duration, maxGroup int) *committer {
	c := &committer{logger: logger, db: db, log: log, checkpoint: checkpoint, interval: interval, maxGroup: maxGroup,
		wake: make(chan struct{}, 1)}
	c.calls.New = func() any { return &call{done: make(chan error, 1)} }
	return c
}

// do runs fn in a durable transaction shared with other writers and returns fn's error, or the log's. fn may run
// more than once (when another function in its group fails) and must only have effects through tx. A function that
// refuses before writing anything returns refuse(err); any other error makes the committer re-run the rest of the
// group without it.
func (c *committer) do(fn func(*txn) error) error { return c.enqueue(fn, false) }

// read runs fn, which must not write, after the writes queued before it; its error is returned as is.
func (c *committer) read(fn func(*txn) error) error { return c.enqueue(fn, true) }

func (c *committer) enqueue(fn func(*txn) error, read bool) error {
	cl := c.calls.Get().(*call)
	cl.fn, cl.read, cl.ran = fn, read, false
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.calls.Put(cl)
		return ErrClosed
	}
	c.queue = append(c.queue, cl)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	err := <-cl.done
	cl.fn = nil
	c.calls.Put(cl)
	return err
}

// run commits queued groups until close is called and the queue is empty, then checkpoints.
func (c *committer) run() error {
	timer := time.NewTimer(c.interval)
	timer.Stop()
	armed := false
	var group []*call
	for {
		var due <-chan time.Time
		if armed {
			due = timer.C
		}
		select {
		case <-c.wake:
		case <-due:
			armed = false
		}
		c.mu.Lock()
		group, c.queue = c.queue, group[:0]
		closed := c.closed
		c.mu.Unlock()
		for rest := group; len(rest) > 0; {
			n := min(len(rest), c.maxGroup)
			c.commit(rest[:n])
			rest = rest[n:]
		}
		clear(group)
		if closed {
			return c.checkpointNow()
		}
		if c.dirtySince.IsZero() {
			continue
		}
		wait := c.interval - time.Since(c.dirtySince)
		if wait <= 0 || c.log.off >= checkpointBytes {
			_ = c.checkpointNow() // a failure is in health, and the log still holds every write: retry later
			wait = c.interval
		}
		if !c.dirtySince.IsZero() && !armed {
			timer.Reset(wait)
			armed = true
		}
	}
}

// close refuses new writes and lets run drain what is already queued.
func (c *committer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// commit runs calls as one group. A call whose function fails without refusing is answered alone, the transaction
// is rebuilt from the database file and the log, and the others run again, so every writer gets its own result.
func (c *committer) commit(calls []*call) {
	for len(calls) > 0 {
		if err := c.begin(); err != nil {
			c.setHealth(err)
			for _, cl := range calls {
				cl.done <- err
			}
			return
		}
		c.rec = newRecord(c.rec)
		write, read := &txn{tx: c.tx, rec: &c.rec}, &txn{tx: c.tx}
		failed := -1
		for i, cl := range calls {
			t := write
			if cl.read {
				if cl.ran {
					continue
				}
				t, cl.ran = read, true
			}
			cl.err = safeCall(cl.fn, t)
			var r refusal
			switch {
			case cl.read:
			case errors.As(cl.err, &r):
				cl.err = r.err
			case cl.err != nil:
				failed = i
			}
			if failed >= 0 {
				break
			}
		}
		if failed >= 0 {
			calls[failed].done <- calls[failed].err
			calls = append(calls[:failed:failed], calls[failed+1:]...)
			c.discard()
			continue
		}
		var err error
		if len(c.rec) > recordHeader {
			if err = c.log.append(c.rec); err != nil {
				c.discard()
			} else if c.dirtySince.IsZero() {
				c.dirtySince = time.Now()
			}
		}
		c.setHealth(err)
		for _, cl := range calls {
			if err != nil {
				cl.done <- err
			} else {
				cl.done <- cl.err
			}
		}
		return
	}
}

// begin makes sure a transaction is open and holds every record the log has acknowledged.
func (c *committer) begin() (err error) {
	if c.tx != nil {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: replay log: %w: %v", ErrCorrupt, p)
		}
		if err != nil && c.tx != nil {
			_ = c.tx.Rollback()
			c.tx = nil
		}
	}()
	if c.tx, err = c.db.Begin(true); err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if !c.stale {
		return nil
	}
	data, err := c.log.read(c.log.off)
	if err != nil {
		return err
	}
	if _, _, err := replay(c.tx, data, c.checkpoint); err != nil {
		return err
	}
	c.stale = false
	return nil
}

// discard rolls the open transaction back; the next group rebuilds it from the file and the log.
func (c *committer) discard() {
	if c.tx != nil {
		_ = c.tx.Rollback()
		c.tx = nil
	}
	c.stale = c.stale || !c.dirtySince.IsZero()
}

// checkpointNow commits the open transaction to the database file, with the last record's sequence number, and
// rewinds the log.
func (c *committer) checkpointNow() (err error) {
	if c.dirtySince.IsZero() {
		c.discard()
		return nil
	}
	if err := c.begin(); err != nil {
		c.setHealth(err)
		return err
	}
	tx := c.tx
	c.tx = nil
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback() // bbolt may have panicked before releasing its writer lock
			err = fmt.Errorf("store: checkpoint: %w: %v", ErrCorrupt, p)
		}
		if err != nil {
			c.stale = true
			c.setHealth(err)
		}
	}()
	if err := tx.Bucket(bucketLog).Put(keyCheckpoint, encodeGeneration(c.log.seq)); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("store: checkpoint: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: checkpoint: %w", err)
	}
	c.checkpoint, c.log.off, c.dirtySince = c.log.seq, 0, time.Time{}
	c.setHealth(nil)
	return nil
}

// replay applies the records of the log data that follow the checkpoint to tx, and returns where the valid log ends
// and its last sequence number (at least checkpoint).
func replay(tx *bolt.Tx, data []byte, checkpoint uint64) (end int64, last uint64, err error) {
	applied := false
	end, last, err = chain(data, func(seq uint64, ops []byte) error {
		if seq <= checkpoint {
			return nil
		}
		if !applied && seq != checkpoint+1 {
			return fmt.Errorf("store: log: %w: it continues at record %d but the database file holds up to %d "+
				"(was one of the two files replaced?)", ErrCorrupt, seq, checkpoint)
		}
		applied = true
		err := forEachOp(ops, func(op byte, bucket, key, value []byte) error {
			b := tx.Bucket(bucket)
			switch {
			case b == nil:
				return fmt.Errorf("no bucket %q", bucket)
			case op == opPut:
				return b.Put(key, value)
			default:
				return b.Delete(key)
			}
		})
		if err != nil {
			return fmt.Errorf("store: log record %d: %w: %w", seq, ErrCorrupt, err)
		}
		return nil
	})
	return end, max(last, checkpoint), err
}

// setHealth records the store's state and logs each change of it, so that a
// full disk or an I/O error is seen in the log, not only in health.
func (c *committer) setHealth(err error) {
	c.mu.Lock()
	was := c.health
	c.health = err
	c.mu.Unlock()
	switch {
	case err != nil && (was == nil || was.Error() != err.Error()):
		c.logger.Error("store write failed; the store reports unhealthy until a write succeeds", "err", err)
	case err == nil && was != nil:
		c.logger.Info("store healthy again")
	}
}

// lastError is ErrClosed after Close, else the last failure of the log or
// the file (nil after a good group). It never waits for the committer.
func (c *committer) lastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return c.health
}

// safeCall turns a panic in fn into an error, so a bug in one write never takes down the appliance.
func safeCall(fn func(*txn) error, t *txn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: write function panicked: %v", p)
		}
	}()
	return fn(t)
}
