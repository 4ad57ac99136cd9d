package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// sweepChunk bounds how many expired entries one sweep transaction deletes, so a large sweep never holds up other
// writers for long.
const sweepChunk = 1000

// ConsumeNonce records a one-time nonce of a meeting. It returns nil the first time and ErrNonceUsed while the nonce
// is stored, which is at least ttl: the sweeper removes it some time after it expires. The record is durable when
// the call returns, so a nonce accepted before a crash is still refused after it.
func (db *DB) ConsumeNonce(meetingID, nonce string, ttl time.Duration) error {
	valid := errors.Join(checkMeetingID(meetingID), checkKey("nonce", nonce))
	if valid == nil && ttl <= 0 {
		valid = fmt.Errorf("%w: nonce ttl must be positive", ErrInvalid)
	}
	value := encodeNonce(db.opts.Now().Add(ttl))
	return db.checked("consume_nonce", valid, func(tx *txn) error {
		key := childKey(meetingID, nonce)
		if tx.get(bucketNonces, key) != nil {
			// The nonce itself stays out of the error: it is a credential.
			return refuse(fmt.Errorf("meeting %q: %w", meetingID, ErrNonceUsed))
		}
		return tx.put(bucketNonces, key, value)
	})
}

// expired names one entry the sweeper removes: a nonce or a binding.
type expired struct {
	nonce bool // else a binding
	key   []byte
}

// Sweep removes nonces and bindings that expired at or before Options.Now and returns how many it removed. The
// background sweeper calls it every SweepInterval. Nonce entries that cannot be decoded are removed too (they can
// no longer be trusted and would otherwise stay forever); undecodable bindings are left for LoadAll to report.
func (db *DB) Sweep() (int, error) {
	start := time.Now()
	removed, err := db.sweep(db.opts.Now())
	db.opts.Observe("sweep", time.Since(start), err)
	return removed, err
}

func (db *DB) sweep(now time.Time) (int, error) {
	removed := 0
	for {
		batch, err := db.findExpired(now)
		if err != nil || len(batch) == 0 {
			return removed, err
		}
		n := 0
		err = db.commit.do(func(tx *txn) error {
			n = 0
			for _, e := range batch {
				ok, err := deleteIfExpired(tx, e, now)
				if err != nil {
					return err
				}
				if ok {
					n++
				}
			}
			return nil
		})
		removed += n
		if err != nil || len(batch) < sweepChunk {
			return removed, err
		}
	}
}

// findExpired lists up to sweepChunk expired entries.
func (db *DB) findExpired(now time.Time) ([]expired, error) {
	var out []expired
	errFull := errors.New("chunk full")
	err := db.view(func(tx *txn) error {
		for _, nonce := range []bool{true, false} {
			err := tx.scan(bucketOf(nonce), nil, func(k, v []byte) error {
				if isExpired(nonce, v, now) {
					out = append(out, expired{nonce: nonce, key: append([]byte(nil), k...)})
				}
				if len(out) >= sweepChunk {
					return errFull
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, errFull) {
		err = nil
	}
	return out, err
}

func bucketOf(nonce bool) []byte {
	if nonce {
		return bucketNonces
	}
	return bucketBindings
}

// isExpired reports whether a nonce (undecodable counts as expired) or a binding (undecodable or without expiry
// does not) has expired at now.
func isExpired(nonce bool, v []byte, now time.Time) bool {
	if nonce {
		exp, err := decodeNonce(v)
		return err != nil || !exp.After(now)
	}
	b, err := decodeBinding("", v)
	return err == nil && !b.ExpiresAt.IsZero() && !b.ExpiresAt.After(now)
}

// deleteIfExpired deletes e if it is still expired (a writer may have replaced it since findExpired looked).
func deleteIfExpired(tx *txn, e expired, now time.Time) (bool, error) {
	name := bucketOf(e.nonce)
	if v := tx.get(name, e.key); v == nil || !isExpired(e.nonce, v, now) {
		return false, nil
	}
	return true, tx.del(name, e.key)
}

// sweepLoop runs Sweep every SweepInterval until ctx ends. A failed sweep is logged and retried next time.
func (db *DB) sweepLoop(ctx context.Context) {
	t := time.NewTicker(db.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := db.Sweep()
		switch {
		case errors.Is(err, ErrClosed):
			return
		case err != nil:
			db.logger.Warn("sweep failed", "err", err)
		case n > 0:
			db.logger.Debug("swept expired entries", "removed", n)
		}
	}
}
