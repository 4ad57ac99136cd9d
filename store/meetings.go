package store

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Assignment is one media handler the Global Controller assigned to a meeting.
type Assignment struct{ MHID, WebTransportEndpoint, GRPCEndpoint string }

// Meeting is a meeting's own record. Generation is not stored in the record: writes set it from the generation they
// hold, reads from the meeting's generation counter.
type Meeting struct {
	ID          string
	Generation  uint64
	Assignments []Assignment
	AssignedBy  string
	CreatedAt   time.Time
}

// Participant is one roster entry.
type Participant struct {
	ID, UserID, Name, Role string // Role "host"|"participant"; UserID is the token's sub

	AudioSelfMuted, VideoSelfMuted, AudioHostMuted, VideoHostMuted bool
	HostMutedBy                                                    string

	JoinedAt          time.Time
	Connected         bool
	DisconnectedSince time.Time // zero when connected
}

// Binding ties a session's correlation id to a participant and the nonce it must present next.
type Binding struct {
	CorrelationID, ParticipantID, UserID, Nonce string
	ExpiresAt                                   time.Time
}

// MeetingState is everything stored for one meeting.
type MeetingState struct {
	Meeting      Meeting
	Participants []Participant
	Bindings     []Binding
}

// Acquire hands the meeting a new generation, persists it durably and returns it. Generations come from one counter
// for all meetings (the first is 1), so one is never handed out twice, across restarts and meeting deletions, and
// a new one is newer than every generation any meeting had before. Writes holding an older generation of the
// meeting are fenced out.
func (db *DB) Acquire(meetingID string) (uint64, error) {
	var gen uint64
	err := db.checked("acquire", checkMeetingID(meetingID), func(tx *txn) error {
		top, err := globalGeneration(tx)
		if err != nil {
			return refuse(err)
		}
		if top == math.MaxUint64 {
			return refuse(errors.New("store: generation counter exhausted"))
		}
		gen = top + 1
		if err := tx.put(bucketGenerations, []byte(meetingID), encodeGeneration(gen)); err != nil {
			return err
		}
		return tx.put(bucketGenerations, keyGlobalGeneration, encodeGeneration(gen))
	})
	if err != nil {
		return 0, err
	}
	return gen, nil
}

// PutMeeting creates or replaces the meeting's record, fenced on m.ID with gen; m.Generation is ignored.
func (db *DB) PutMeeting(gen uint64, m Meeting) error {
	value := encodeMeeting(m)
	return db.fenced("put_meeting", m.ID, gen, checkMeetingID(m.ID), entry{}, func(tx *txn) error {
		return tx.put(bucketMeetings, []byte(m.ID), value)
	})
}

// DeleteMeeting removes the meeting with its generation, roster and bindings, fenced with gen; its nonces stay until
// they expire. A meeting that does not exist gives ErrNotFound. Every generation handed out so far stays fenced out
// (see generation), and a later Acquire returns a newer one.
func (db *DB) DeleteMeeting(meetingID string, gen uint64) error {
	return db.fenced("delete_meeting", meetingID, gen, checkMeetingID(meetingID), meetingRecord, func(tx *txn) error {
		for _, name := range [][]byte{bucketMeetings, bucketGenerations} {
			if err := tx.del(name, []byte(meetingID)); err != nil {
				return err
			}
		}
		for _, name := range [][]byte{bucketRoster, bucketBindings} {
			if err := deletePrefix(tx, name, childPrefix(meetingID)); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutParticipant creates or replaces a roster entry, fenced with gen. The meeting must exist (ErrNotFound).
func (db *DB) PutParticipant(meetingID string, gen uint64, p Participant) error {
	value := encodeParticipant(p)
	return db.putChild("put_participant", meetingID, gen, bucketRoster, "participant id", p.ID, value)
}

// DeleteParticipant removes a roster entry, fenced with gen; a missing meeting or participant gives ErrNotFound.
func (db *DB) DeleteParticipant(meetingID string, gen uint64, participantID string) error {
	return db.deleteChild("delete_participant", meetingID, gen, bucketRoster, "participant id", participantID)
}

// PutBinding creates or replaces the binding keyed by b.CorrelationID, fenced with gen. The meeting must exist
// (ErrNotFound). The sweeper removes the binding once ExpiresAt has passed (never, if ExpiresAt is zero).
func (db *DB) PutBinding(meetingID string, gen uint64, b Binding) error {
	value := encodeBinding(b)
	return db.putChild("put_binding", meetingID, gen, bucketBindings, "correlation id", b.CorrelationID, value)
}

// DeleteBinding removes a binding, fenced with gen; a missing meeting or binding gives ErrNotFound.
func (db *DB) DeleteBinding(meetingID string, gen uint64, correlationID string) error {
	return db.deleteChild("delete_binding", meetingID, gen, bucketBindings, "correlation id", correlationID)
}

// PutSession writes a participant's roster entry and its binding in one
// durable, fenced transaction: what a join or a reconnection changes.
func (db *DB) PutSession(meetingID string, gen uint64, p Participant, b Binding) error {
	valid := errors.Join(checkMeetingID(meetingID), checkKey("participant id", p.ID), checkKey("correlation id", b.CorrelationID))
	return db.putChildren("put_session", meetingID, gen, valid,
		child{bucketRoster, p.ID, encodeParticipant(p)}, child{bucketBindings, b.CorrelationID, encodeBinding(b)})
}

// child is one roster entry or binding to write.
type child struct {
	bucket []byte
	id     string
	value  []byte
}

func (db *DB) putChild(op, meetingID string, gen uint64, bucket []byte, what, id string, value []byte) error {
	valid := errors.Join(checkMeetingID(meetingID), checkKey(what, id))
	return db.putChildren(op, meetingID, gen, valid, child{bucket, id, value})
}

func (db *DB) putChildren(op, meetingID string, gen uint64, valid error, children ...child) error {
	return db.fenced(op, meetingID, gen, valid, meetingRecord, func(tx *txn) error {
		for _, c := range children {
			if err := tx.put(c.bucket, childKey(meetingID, c.id), c.value); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteSession removes a participant's roster entry and, if there is one,
// its binding, in one fenced commit: what a leave changes. A missing
// participant gives ErrNotFound.
func (db *DB) DeleteSession(meetingID string, gen uint64, participantID, correlationID string) error {
	valid := errors.Join(checkMeetingID(meetingID), checkKey("participant id", participantID), checkKey("correlation id", correlationID))
	need := entry{bucketRoster, "participant id", participantID}
	return db.fenced("delete_session", meetingID, gen, valid, need, func(tx *txn) error {
		if err := tx.del(bucketRoster, childKey(meetingID, participantID)); err != nil {
			return err
		}
		if bk := childKey(meetingID, correlationID); tx.get(bucketBindings, bk) != nil {
			return tx.del(bucketBindings, bk)
		}
		return nil
	})
}

func (db *DB) deleteChild(op, meetingID string, gen uint64, bucket []byte, what, id string) error {
	valid := errors.Join(checkMeetingID(meetingID), checkKey(what, id))
	return db.fenced(op, meetingID, gen, valid, entry{bucket, what, id}, func(tx *txn) error {
		return tx.del(bucket, childKey(meetingID, id))
	})
}

// checked reports an argument error without queueing, or runs fn through the committer.
func (db *DB) checked(op string, valid error, fn func(*txn) error) error {
	if valid != nil {
		db.opts.Observe(op, 0, valid)
		return valid
	}
	return db.write(op, fn)
}

// fenced is the one sequence every write to a meeting follows, in one transaction: check the arguments (valid),
// fence on gen, refuse with ErrNotFound unless need exists, raise the generation counter to gen, then write.
// Everything before raise only reads, so its errors are refusals; write runs after the checks and must not refuse.
func (db *DB) fenced(op, meetingID string, gen uint64, valid error, need entry, write func(*txn) error) error {
	return db.checked(op, valid, func(tx *txn) error {
		key := []byte(meetingID)
		cur, own, err := fence(tx, meetingID, key, gen)
		if err != nil {
			return err
		}
		if err := need.exists(tx, meetingID, key); err != nil {
			return err
		}
		if err := raise(tx, key, cur, own, gen); err != nil {
			return err
		}
		return write(tx)
	})
}

// entry names what a fenced write needs to exist: the meeting's record (meetingRecord), one of its roster entries
// or bindings (its bucket, what the id is, the id), or nothing (the zero entry).
type entry struct {
	bucket   []byte
	what, id string
}

var meetingRecord = entry{bucket: bucketMeetings}

// exists refuses with ErrNotFound when e is missing.
func (e entry) exists(tx *txn, meetingID string, key []byte) error {
	switch {
	case e.bucket == nil:
	case e.what == "":
		if tx.get(e.bucket, key) == nil {
			return refuse(fmt.Errorf("meeting %q: %w", meetingID, ErrNotFound))
		}
	default:
		if tx.get(e.bucket, childKey(meetingID, e.id)) == nil {
			return refuse(fmt.Errorf("meeting %q: %s %q: %w", meetingID, e.what, e.id, ErrNotFound))
		}
	}
	return nil
}

// generation reads a meeting's generation: its own (own is true) while the meeting exists or has been acquired, else
// the global one, the newest handed out to any meeting. A deleted meeting has none of its own, and every generation
// it ever had is at most the global one, so its old owners stay fenced out without a key per meeting ever held.
func generation(tx *txn, key []byte) (gen uint64, own bool, err error) {
	if v := tx.get(bucketGenerations, key); v != nil {
		g, err := decodeGeneration(v)
		return g, true, corrupt(string(bucketGenerations), key, err)
	}
	g, err := globalGeneration(tx)
	return g, false, err
}

// globalGeneration reads the newest generation handed out to any meeting (0 if none).
func globalGeneration(tx *txn) (uint64, error) {
	v := tx.get(bucketGenerations, keyGlobalGeneration)
	if v == nil {
		return 0, nil
	}
	g, err := decodeGeneration(v)
	return g, corrupt(string(bucketGenerations), keyGlobalGeneration, err)
}

// fence refuses a write holding gen when the meeting's generation is newer, and returns the meeting's generation
// and whether it is its own. It writes nothing, so its errors are refusals.
func fence(tx *txn, meetingID string, key []byte, gen uint64) (uint64, bool, error) {
	if gen == 0 {
		return 0, false, refuse(fmt.Errorf("%w: generation 0 is never acquired", ErrInvalid))
	}
	cur, own, err := generation(tx, key)
	if err != nil {
		return 0, false, refuse(err)
	}
	if gen < cur {
		return 0, false, refuse(&FencedOutError{MeetingID: meetingID, Held: gen, Current: cur})
	}
	return cur, own, nil
}

// raise gives the meeting gen as its own generation when it has none (a meeting record is never without one), or
// when gen is newer than the stored one (possible only if the counter was lost), raising the global counter with it
// so Acquire can never hand that generation out again.
func raise(tx *txn, key []byte, cur uint64, own bool, gen uint64) error {
	if own && gen <= cur {
		return nil
	}
	if err := tx.put(bucketGenerations, key, encodeGeneration(gen)); err != nil {
		return err
	}
	top, err := globalGeneration(tx)
	if err != nil || gen <= top {
		return err
	}
	return tx.put(bucketGenerations, keyGlobalGeneration, encodeGeneration(gen))
}

// pruneGenerations is Open's upkeep of the generations bucket: it sets the global counter (left out by an older
// edgemc, which kept one counter per meeting) to the newest generation stored and removes the generation of every
// meeting without a record — deleted by an older edgemc, or acquired by a call that never wrote the meeting. A value
// it cannot decode stays, for the meeting's writes to report. It returns the global generation.
func pruneGenerations(tx *bolt.Tx) (uint64, error) {
	gens, meetings := tx.Bucket(bucketGenerations), tx.Bucket(bucketMeetings)
	var (
		top     uint64
		orphans [][]byte
	)
	_ = gens.ForEach(func(k, v []byte) error {
		if g, err := decodeGeneration(v); err == nil {
			top = max(top, g)
			if !bytes.Equal(k, keyGlobalGeneration) && meetings.Get(k) == nil {
				orphans = append(orphans, bytes.Clone(k))
			}
		}
		return nil
	})
	for _, k := range orphans {
		if err := gens.Delete(k); err != nil {
			return 0, err
		}
	}
	if top == 0 {
		return 0, nil
	}
	return top, gens.Put(keyGlobalGeneration, encodeGeneration(top))
}

// LoadAll returns every stored meeting with its current generation, roster and bindings, in meeting id order. Values
// that cannot be decoded are skipped and reported together in the returned error (errors.Is ErrCorrupt, each
// *CorruptError naming its key); everything that could be decoded is still returned.
func (db *DB) LoadAll() ([]MeetingState, error) {
	start := time.Now()
	var (
		states []MeetingState
		errs   []error
	)
	err := db.view(func(tx *txn) error {
		// One pass over each bucket: a scan walks every key of the memtable, which after a crash holds all
		// that the log replayed.
		var participants map[string][]Participant
		var bindings map[string][]Binding
		participants, errs = loadChildren(tx, bucketRoster, decodeParticipant, errs)
		bindings, errs = loadChildren(tx, bucketBindings, decodeBinding, errs)
		return tx.scan(bucketMeetings, nil, func(k, v []byte) error {
			id := string(k)
			m, err := decodeMeeting(id, v)
			if err != nil {
				errs = append(errs, corrupt(string(bucketMeetings), k, err))
				return nil
			}
			if m.Generation, _, err = generation(tx, k); err != nil {
				errs = append(errs, err)
				return nil
			}
			states = append(states, MeetingState{Meeting: m, Participants: participants[id], Bindings: bindings[id]})
			return nil
		})
	})
	if err == nil {
		err = errors.Join(errs...)
	}
	db.opts.Observe("load_all", time.Since(start), err)
	return states, err
}

// loadChildren decodes every entry of a roster-like bucket, by meeting id in key order, collecting undecodable ones
// in errs.
func loadChildren[T any](tx *txn, bucket []byte, decode func(string, []byte) (T, error), errs []error) (map[string][]T, []error) {
	out := map[string][]T{}
	_ = tx.scan(bucket, nil, func(k, v []byte) error {
		meetingID, id, ok := bytes.Cut(k, []byte{0})
		if !ok {
			return nil // not a child key (see childPrefix)
		}
		x, err := decode(string(id), v)
		if err != nil {
			errs = append(errs, corrupt(string(bucket), k, err))
			return nil
		}
		out[string(meetingID)] = append(out[string(meetingID)], x)
		return nil
	})
	return out, errs
}

// Keys of per-meeting entries are the meeting id, a NUL byte, then the entry's own id; meeting ids cannot contain
// NUL, so one meeting's entries are one contiguous key range.
func childPrefix(meetingID string) []byte { return append([]byte(meetingID), 0) }

func childKey(meetingID, id string) []byte { return append(childPrefix(meetingID), id...) }

// deletePrefix deletes every key of bucket that starts with prefix.
func deletePrefix(tx *txn, bucket, prefix []byte) error {
	var keys [][]byte
	_ = tx.scan(bucket, prefix, func(k, _ []byte) error {
		keys = append(keys, bytes.Clone(k))
		return nil
	})
	for _, k := range keys {
		if err := tx.del(bucket, k); err != nil {
			return err
		}
	}
	return nil
}
