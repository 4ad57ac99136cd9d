package store

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// committer is edgemc's group commit. Writers queue a function; one goroutine takes everything queued, runs it in
// one bbolt read-write transaction and fsyncs once. The next group starts as soon as the previous commit returns,
// so a lone writer pays one commit and concurrent writers share one: latency of Update when idle, throughput of
// Batch when busy, and no fixed delay.
type committer struct {
	db       *bolt.DB
	maxGroup int
	calls    sync.Pool // *call

	mu     sync.Mutex
	queue  []*call
	closed bool
	health error // last transaction failure that was not a function's own error; nil after a good commit

	wake chan struct{} // capacity 1: "the queue may be non-empty"
}

type call struct {
	fn   func(*bolt.Tx) error
	err  error
	done chan error
}

func newCommitter(db *bolt.DB, maxGroup int) *committer {
	c := &committer{db: db, maxGroup: maxGroup, wake: make(chan struct{}, 1)}
	c.calls.New = func() any { return &call{done: make(chan error, 1)} }
	return c
}

// do runs fn in a durable read-write transaction shared with other writers and returns fn's error, or the
// transaction's. fn may run more than once (when another function in its group fails) and must only have effects
// inside tx. A function that refuses before writing anything returns refuse(err); any other error makes the
// committer re-run the rest of the group without it.
func (c *committer) do(fn func(*bolt.Tx) error) error {
	cl := c.calls.Get().(*call)
	cl.fn = fn
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

// run commits queued groups until close is called and the queue is empty.
func (c *committer) run() {
	var group []*call
	for range c.wake {
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
			return
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

// commit runs calls in one transaction. A call whose function fails without refusing is taken out and run on its
// own, and the others are run again in a fresh transaction, so every writer gets its own result.
func (c *committer) commit(calls []*call) {
	for len(calls) > 0 {
		failed := -1
		err := c.update(func(tx *bolt.Tx) error {
			for i, cl := range calls {
				cl.err = safeCall(cl.fn, tx)
				var r refusal
				if errors.As(cl.err, &r) {
					cl.err = r.err
				} else if cl.err != nil {
					failed = i
					return cl.err
				}
			}
			return nil
		})
		if failed >= 0 {
			cl := calls[failed]
			calls = append(calls[:failed:failed], calls[failed+1:]...)
			cl.done <- c.solo(cl.fn)
			continue
		}
		c.setHealth(err, false)
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

// solo runs one function in its own transaction.
func (c *committer) solo(fn func(*bolt.Tx) error) error {
	fnFailed := false
	err := c.update(func(tx *bolt.Tx) error {
		err := safeCall(fn, tx)
		fnFailed = err != nil
		return err
	})
	c.setHealth(err, fnFailed)
	var r refusal
	if errors.As(err, &r) {
		return r.err
	}
	return err
}

// update is bolt's Update with a panic inside bbolt itself (a damaged page met while writing) turned into an
// error; Update has already rolled the transaction back by then.
func (c *committer) update(fn func(*bolt.Tx) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: commit: %w: %v", ErrCorrupt, p)
		}
	}()
	return c.db.Update(fn)
}

// setHealth records whether the last transaction failed for a reason of its own (I/O, disk full) rather than
// because of a function's error.
func (c *committer) setHealth(txErr error, fnFailed bool) {
	if fnFailed {
		return
	}
	c.mu.Lock()
	c.health = txErr
	c.mu.Unlock()
}

func (c *committer) lastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

// safeCall turns a panic in fn into an error, so a bug in one write never takes down the appliance.
func safeCall(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: write function panicked: %v", p)
		}
	}()
	return fn(tx)
}
