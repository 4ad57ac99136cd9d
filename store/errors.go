package store

import (
	"errors"
	"fmt"
)

// Errors callers branch on. Every error the store returns either is one of these (errors.Is) or reports a failure
// of the files themselves (I/O, disk full), which Check also reports.
var (
	// ErrFencedOut: a write named an older generation than the meeting's current one; the concrete error is a
	// *FencedOutError. The caller no longer owns the meeting and must stop it.
	ErrFencedOut = errors.New("store: fenced out by a newer generation")
	// ErrLocked: another process holds the database file.
	ErrLocked = errors.New("store: database file is locked by another process")
	// ErrNonceUsed: ConsumeNonce on a nonce already consumed (and not yet swept).
	ErrNonceUsed = errors.New("store: nonce already used")
	// ErrNotFound: the meeting, participant or binding does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrCorrupt: a stored value could not be decoded (the concrete error is then a *CorruptError), or the file
	// itself is damaged.
	ErrCorrupt = errors.New("store: corrupt data")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrInvalid: an argument cannot be stored (empty or oversized id, generation 0).
	ErrInvalid = errors.New("store: invalid argument")
	// ErrSyncFailed: an fdatasync of the log, or the commit of a checkpoint into the database file, failed. What it
	// was to make durable may be lost, and a later sync of the same file that succeeds would not mean it reached
	// the disk, so the store retries nothing: every call fails with this error until the store is closed and opened
	// again, which replays the log. The write that failed may or may not be in the store after that.
	ErrSyncFailed = errors.New("store: sync to disk failed, the store must be reopened")
)

// FencedOutError is returned when a write holds generation Held but the meeting is at Current > Held.
type FencedOutError struct {
	MeetingID     string
	Held, Current uint64
}

func (e *FencedOutError) Error() string {
	return fmt.Sprintf("store: meeting %q: generation %d fenced out by %d", e.MeetingID, e.Held, e.Current)
}

// Is makes errors.Is(err, ErrFencedOut) true.
func (e *FencedOutError) Is(target error) bool { return target == ErrFencedOut }

// CorruptError names a stored value that could not be decoded.
type CorruptError struct {
	Bucket, Key string
	Err         error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("store: corrupt value %s/%q: %v", e.Bucket, e.Key, e.Err)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func (e *CorruptError) Unwrap() error { return e.Err }

func corrupt(bucket string, key []byte, err error) error {
	if err == nil {
		return nil
	}
	return &CorruptError{Bucket: bucket, Key: string(key), Err: err}
}

// refusal marks an error returned by a write function before it changed anything, so the committer can hand it
// back without re-running the rest of its group.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

func refuse(err error) error { return refusal{err} }
