package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// committer is edgemc's group commit. Writers queue a function; one goroutine takes everything queued, runs it over
// the store's current state, appends the group's changes to the write-ahead log as one record, syncs the log once,
// adds the changes to its memtable and acknowledges the whole group. The next group starts as soon as the sync
// returns, so a lone writer pays one sync and concurrent writers share one, with no fixed delay.
//
// Every CheckpointInterval (or when the log segment fills) a checkpoint freezes the memtable, switches the log to its
// other segment and folds the frozen changes into the database file in a goroutine of its own: writers go on
// meanwhile, reading the new memtable over the frozen one over the file. A failed sync of the log, or a failed
// checkpoint, is final (see ErrSyncFailed).
//
// Reads run through the committer as well: only it sees every acknowledged write.
type committer struct {
	logger     *slog.Logger
	db         *bolt.DB
	log        *wal
	maxGroup   int
	interval   time.Duration              // checkpoint at least this often while writes are pending
	observe    func(time.Duration, error) // called after every checkpoint
	commitFile func(*bolt.Tx) error       // commits a checkpoint's transaction: (*bolt.Tx).Commit
	calls      sync.Pool                  // *call

	mu     sync.Mutex
	queue  []*call
	closed bool
	health error  // last failure that a later success clears (a failed log write); nil after a good group
	noRoom error  // the last checkpoint's, when the disk had no room for it; nil once one folds
	failed error  // a failed sync or checkpoint: final until the store is reopened
	counts counts // of the acknowledged state

	wake chan struct{} // capacity 1: "the queue may be non-empty"

	// Owned by run's goroutine.
	group      *memtable  // the group being run
	reader     *bolt.Tx   // a read transaction of the file kept open between checkpoints; nil while one runs
	mem        *memtable  // changes acknowledged since the last checkpoint began
	frozen     *memtable  // changes the running checkpoint folds into the file; nil if none runs
	folded     chan error // the running checkpoint's result
	foldStart  time.Time
	frozenSeq  uint64    // last record the running checkpoint folds in
	dirtySince time.Time // first change in mem; zero if none
	rec        []byte    // the record being built
}

type call struct {
	fn   func(*txn) error
	read bool // a read: records nothing, its error is its result, and it runs once even if its group re-runs
	ran  bool
	err  error
	done chan error // capacity 1: the committer never waits for a caller
}

// txn is what a queued function gets: the store's state, with writes recorded for the group and the log.
type txn struct {
	*layers
	rec   *[]byte // nil in a read
	delta *counts
}

// put stores key → value in bucket. The memtables keep value until the checkpoint: callers pass fresh slices.
func (t *txn) put(bucket, key, value []byte) error {
	switch {
	case t.rec == nil:
		return errors.New("store: write in a read")
	case len(key) == 0 || len(key) > bolt.MaxKeySize || len(value) > bolt.MaxValueSize:
		return fmt.Errorf("%w: %d-byte key or %d-byte value in %s", ErrInvalid, len(key), len(value), bucket)
	}
	if value == nil {
		value = []byte{}
	}
	return t.change(opPut, bucket, key, value)
}

// del removes key from bucket.
func (t *txn) del(bucket, key []byte) error {
	if t.rec == nil {
		return errors.New("store: write in a read")
	}
	return t.change(opDelete, bucket, key, nil)
}

func (t *txn) change(op byte, bucket, key, value []byte) error {
	*t.rec = appendOp(*t.rec, op, bucket, key, value)
	if len(*t.rec) > maxRecord {
		return fmt.Errorf("%w: a group's changes exceed %d bytes", ErrInvalid, maxRecord)
	}
	// Only counted buckets need to know whether the key existed before.
	had := t.delta.of(bucket) != nil && t.get(bucket, key) != nil
	t.delta.change(bucket, key, had, value)
	t.mem[0].set(string(bucket), string(key), value)
	return nil
}

// counts are what Stats reports, kept as writes are acknowledged.
type counts struct {
	meetings, participants, bindings, nonces int
	maxGeneration                            uint64
}

// change accounts for key in bucket going from existing (had) to value (nil: deleted).
func (c *counts) change(bucket, key []byte, had bool, value []byte) {
	if string(bucket) == string(bucketGenerations) && string(key) == string(keyGlobalGeneration) {
		if g, err := decodeGeneration(value); err == nil {
			c.maxGeneration = max(c.maxGeneration, g)
		}
		return
	}
	n := c.of(bucket)
	switch {
	case n == nil:
	case !had && value != nil:
		*n++
	case had && value == nil:
		*n--
	}
}

func (c *counts) of(bucket []byte) *int {
	switch string(bucket) {
	case string(bucketMeetings):
		return &c.meetings
	case string(bucketRoster):
		return &c.participants
	case string(bucketBindings):
		return &c.bindings
	case string(bucketNonces):
		return &c.nonces
	}
	return nil
}

func (c *counts) add(d counts) {
	c.meetings += d.meetings
	c.participants += d.participants
	c.bindings += d.bindings
	c.nonces += d.nonces
	c.maxGeneration = max(c.maxGeneration, d.maxGeneration)
}

func newCommitter(logger *slog.Logger, db *bolt.DB, log *wal, n counts, opts Options) *committer {
	c := &committer{logger: logger, db: db, log: log, counts: n, interval: opts.CheckpointInterval,
		maxGroup: maxGroup, observe: opts.ObserveCheckpoint, commitFile: opts.commitFile,
		wake: make(chan struct{}, 1), group: newMemtable(), mem: newMemtable()}
	c.calls.New = func() any { return &call{done: make(chan error, 1)} }
	return c
}

// do runs fn in a durable transaction shared with other writers and returns fn's error, or the log's. fn may run
// more than once (when another function in its group fails) and must only have effects through tx. A function that
// refuses before writing anything returns refuse(err); any other error makes the committer re-run the rest of the
// group without it.
func (c *committer) do(fn func(*txn) error) error { return c.enqueue(context.Background(), fn, false) }

// read runs fn, which must not write, after the writes queued before it; its error is returned as is.
func (c *committer) read(fn func(*txn) error) error { return c.enqueue(context.Background(), fn, true) }

// enqueue queues fn and waits for its answer or for ctx to end. A caller that gives up leaves its call to the
// committer, which answers it into its buffered channel and forgets it.
func (c *committer) enqueue(ctx context.Context, fn func(*txn) error, read bool) error {
	cl := c.calls.Get().(*call)
	cl.fn, cl.read, cl.ran = fn, read, false
	c.mu.Lock()
	if err := c.refusal(); err != nil {
		c.mu.Unlock()
		c.calls.Put(cl)
		return err
	}
	c.queue = append(c.queue, cl)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-cl.done:
		cl.fn = nil
		c.calls.Put(cl)
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refusal is the error every call gets without being queued: ErrClosed after close, or the store's final failure.
// c.mu must be held.
func (c *committer) refusal() error {
	if c.closed {
		return ErrClosed
	}
	return c.failed
}

// run commits queued groups and starts checkpoints until close is called and the queue is empty, then waits for the
// running checkpoint and folds in what is left.
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
		fired := false
		select {
		case <-c.wake:
		case <-due:
			armed, fired = false, true
		case err := <-c.folded:
			c.checkpointDone(err)
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
			return c.finish()
		}
		if c.frozen != nil && c.folded == nil && c.failure() == nil {
			// A checkpoint the disk had no room for: fold it again after an interval.
			if fired {
				c.startFold()
			} else if !armed {
				timer.Reset(c.interval)
				armed = true
			}
			continue
		}
		if c.dirtySince.IsZero() || c.frozen != nil || c.failure() != nil {
			continue // a running checkpoint's end wakes the loop
		}
		wait := c.interval - time.Since(c.dirtySince)
		if wait <= 0 || c.log.off >= checkpointBytes {
			c.startCheckpoint()
			continue
		}
		if !armed {
			timer.Reset(wait)
			armed = true
		}
	}
}

// close refuses new calls and lets run drain what is already queued.
func (c *committer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// finish waits for the running checkpoint and folds in the rest, so the next Open has nothing to replay.
func (c *committer) finish() error {
	defer c.closeReader()
	if c.folded != nil {
		_ = c.waitFold()
	}
	if c.frozen != nil && c.failure() == nil { // a checkpoint the disk had no room for: one more try
		c.startFold()
		if err := c.waitFold(); err != nil {
			return err // the log still holds every change, for the next Open
		}
	}
	if c.failure() != nil || c.dirtySince.IsZero() {
		return nil
	}
	c.startCheckpoint()
	return c.waitFold()
}

// commit runs calls as one group. A call whose function fails without refusing is answered alone, the group's
// changes are dropped and the others run again, so every writer gets its own result.
func (c *committer) commit(calls []*call) {
	for len(calls) > 0 {
		file, err := c.begin()
		if err != nil {
			for _, cl := range calls {
				cl.done <- err
			}
			return
		}
		var delta counts
		l := &layers{mem: [3]*memtable{c.group, c.mem, c.frozen}, file: file}
		write, read := &txn{layers: l, rec: &c.rec, delta: &delta}, &txn{layers: l}
		c.rec = newRecord(c.rec)
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
		c.end(file)
		if failed >= 0 {
			calls[failed].done <- calls[failed].err
			calls = append(calls[:failed:failed], calls[failed+1:]...)
			continue
		}
		if len(c.rec) > recordHeader {
			if err = c.log.append(c.rec); err == nil {
				c.group.mergeInto(c.mem)
				if c.dirtySince.IsZero() {
					c.dirtySince = time.Now()
				}
			}
		}
		c.group.reset()
		if errors.Is(err, ErrSyncFailed) {
			c.fail(err)
		} else {
			c.setHealth(err, delta)
		}
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

// begin returns a read transaction of the database file for a group, or the store's final failure. The file only
// changes when a checkpoint commits, so between checkpoints one transaction serves every group; while a checkpoint
// runs, each group has its own, because a commit that grows the file waits for every reader to finish.
func (c *committer) begin() (*bolt.Tx, error) {
	if err := c.failure(); err != nil {
		return nil, err
	}
	c.group.reset()
	if c.reader != nil {
		return c.reader, nil
	}
	file, err := c.db.Begin(false)
	if err != nil {
		err = fmt.Errorf("store: begin: %w", err)
		c.setHealth(err, counts{})
		return nil, err
	}
	if c.frozen == nil {
		c.reader = file
	}
	return file, nil
}

// end is the end of a group's use of file.
func (c *committer) end(file *bolt.Tx) {
	if file != c.reader {
		_ = file.Rollback()
	}
}

// closeReader ends the read transaction kept between checkpoints.
func (c *committer) closeReader() {
	if c.reader != nil {
		_ = c.reader.Rollback()
		c.reader = nil
	}
}

// startCheckpoint freezes the memtable, switches the log to its other segment (whose records the file holds) and
// folds the frozen changes into the file in a goroutine, whose result arrives on c.folded.
func (c *committer) startCheckpoint() {
	c.closeReader()
	c.frozen, c.mem = c.mem, c.mem.sizedLike()
	c.frozenSeq = c.log.seq
	c.log.rotate()
	c.dirtySince = time.Time{}
	c.startFold()
}

// fold commits m's changes to the database file, with seq as the last log record the file holds. It runs beside
// the committer, which only reads m meanwhile.
func (c *committer) fold(m *memtable, seq uint64) (err error) {
	tx, err := c.db.Begin(true)
	if err != nil {
		return fmt.Errorf("store: checkpoint: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: checkpoint: %w: %v", ErrCorrupt, p)
		}
		if err != nil {
			_ = tx.Rollback() // after a failed Commit bbolt has rolled back already
		}
	}()
	if err := m.apply(tx); err != nil {
		return fmt.Errorf("store: checkpoint: %w", err)
	}
	if err := tx.Bucket(bucketLog).Put(keyCheckpoint, encodeGeneration(seq)); err != nil {
		return fmt.Errorf("store: checkpoint: %w", err)
	}
	// bbolt syncs the file twice in a commit and does not say which step failed; after a failed one its meta page
	// may be in the page cache, which later transactions would read. Only reopening the store starts again from the
	// disk and the log. A write that found no room failed before its sync: that one is tried again.
	if err := c.commitFile(tx); err != nil {
		if noSpace(err) { // a write found no room; nothing was synced
			return fmt.Errorf("store: checkpoint commit: %w", err)
		}
		return fmt.Errorf("%w: checkpoint commit: %w", ErrSyncFailed, err)
	}
	return nil
}

// checkpointDone takes the running checkpoint's result: the file now holds the frozen changes, or the store fails.
// A file that could not grow (a full disk) synced nothing: the store is unhealthy, the frozen changes stay (the log
// segment they came from is not reused until they are folded) and the run loop folds them again later.
func (c *committer) checkpointDone(err error) {
	took := time.Since(c.foldStart)
	defer c.observe(took, err) // once the store's state says what happened
	c.folded = nil
	switch {
	case noSpace(err):
		c.setNoRoom(err)
		return
	case err != nil:
		c.fail(err)
		return
	}
	c.frozen = nil
	c.setNoRoom(nil)
}

// noSpace reports whether err is a file system out of space or quota, which a later attempt may overcome.
func noSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// startFold folds the frozen changes into the file in a goroutine of its own, which answers on c.folded: a new
// checkpoint's, or again those of one the disk had no room for.
func (c *committer) startFold() {
	c.folded = make(chan error, 1)
	c.foldStart = time.Now()
	go func(m *memtable, seq uint64, done chan<- error) { done <- c.fold(m, seq) }(c.frozen, c.frozenSeq, c.folded)
}

// waitFold waits for the running fold and takes its result.
func (c *committer) waitFold() error {
	err := <-c.folded
	c.checkpointDone(err)
	return err
}

// setHealth records the outcome of a group (err nil: acknowledged, with its counts delta) and logs each change of
// health, so that a full disk or an I/O error is seen in the log, not only in Check.
func (c *committer) setHealth(err error, delta counts) {
	c.mu.Lock()
	was := c.health
	c.health = err
	if err == nil {
		c.counts.add(delta)
	}
	c.mu.Unlock()
	c.logHealth("write", was, err)
}

// setNoRoom records the outcome of a checkpoint that found no room on the disk (err), or of one that folded (nil).
// Groups do not clear it: only a checkpoint that fits does.
func (c *committer) setNoRoom(err error) {
	c.mu.Lock()
	was := c.noRoom
	c.noRoom = err
	c.mu.Unlock()
	c.logHealth("checkpoint", was, err)
}

// logHealth logs a change of health of what (a write, a checkpoint).
func (c *committer) logHealth(what string, was, err error) {
	switch {
	case err != nil && (was == nil || was.Error() != err.Error()):
		c.logger.Error("store "+what+" failed; the store reports unhealthy until a "+what+" succeeds", "err", err)
	case err == nil && was != nil:
		c.logger.Info("store " + what + " succeeded again")
	}
}

// fail makes err the store's final state: every call from now on gets it, until the store is reopened.
func (c *committer) fail(err error) {
	c.mu.Lock()
	first := c.failed == nil
	if first {
		c.failed = err
	}
	c.mu.Unlock()
	if first {
		c.logger.Error("store failed; it refuses every call until it is reopened (restart edgemc)", "err", err)
	}
}

func (c *committer) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

// lastError is ErrClosed after Close, the store's final failure, or the last failure of the log or the file (nil
// after a good group). It never waits for the committer.
func (c *committer) lastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.refusal(); err != nil {
		return err
	}
	if c.health != nil {
		return c.health
	}
	return c.noRoom
}

// stats returns the counts of the acknowledged state.
func (c *committer) stats() counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts
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

// replay applies to tx the records of the log segments that follow checkpoint, in sequence order, and returns the
// last sequence number (at least checkpoint). They must continue the file's checkpoint without a gap.
func replay(tx *bolt.Tx, segments [][]byte, checkpoint uint64) (last uint64, err error) {
	type record struct {
		seq uint64
		ops []byte
	}
	var recs []record
	for _, data := range segments {
		_, _, _ = chain(data, func(seq uint64, ops []byte) error {
			if seq > checkpoint {
				recs = append(recs, record{seq, ops})
			}
			return nil
		})
	}
	slices.SortFunc(recs, func(a, b record) int { return cmp.Compare(a.seq, b.seq) })
	last = checkpoint
	for _, r := range recs {
		if r.seq != last+1 {
			return 0, fmt.Errorf("store: log: %w: record %d follows %d (was one of the files replaced?)", ErrCorrupt, r.seq, last)
		}
		err := forEachOp(r.ops, func(op byte, bucket, key, value []byte) error {
			b := tx.Bucket(bucket)
			switch {
			case b == nil:
				return errNoBucket
			case op == opPut:
				return b.Put(key, value)
			default:
				return b.Delete(key)
			}
		})
		if err != nil {
			return 0, fmt.Errorf("store: log record %d: %w: %w", r.seq, ErrCorrupt, err)
		}
		last = r.seq
	}
	return last, nil
}
