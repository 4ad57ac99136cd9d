package store

import (
	"bytes"
	"maps"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// memtable holds changes the database file does not hold yet: per bucket, key → value, where a nil value records a
// delete. The committer keeps three: the group being run, the changes acknowledged since the last checkpoint began
// (mem), and those a checkpoint is folding into the file (frozen, read-only while the checkpoint runs).
type memtable struct {
	buckets map[string]map[string][]byte
}

func newMemtable() *memtable { return &memtable{buckets: map[string]map[string][]byte{}} }

// sizedLike returns an empty memtable whose buckets have room for as many keys as m's, to spare the next one the
// growth of its maps.
func (m *memtable) sizedLike() *memtable {
	n := newMemtable()
	for name, b := range m.buckets {
		n.buckets[name] = make(map[string][]byte, len(b))
	}
	return n
}

// get returns key's value and whether the memtable knows the key at all (a nil value is a delete).
func (m *memtable) get(bucket, key []byte) ([]byte, bool) {
	v, ok := m.buckets[string(bucket)][string(key)]
	return v, ok
}

// set records key → value, or a delete if value is nil.
func (m *memtable) set(bucket, key string, value []byte) {
	b := m.buckets[bucket]
	if b == nil {
		b = map[string][]byte{}
		m.buckets[bucket] = b
	}
	b[key] = value
}

// mergeInto copies every change of m into dst, m's winning.
func (m *memtable) mergeInto(dst *memtable) {
	for name, b := range m.buckets {
		for k, v := range b {
			dst.set(name, k, v)
		}
	}
}

// reset empties m, keeping its maps for the next group.
func (m *memtable) reset() {
	for _, b := range m.buckets {
		clear(b)
	}
}

// apply writes m's changes into a bbolt transaction, each bucket's keys in order (fewer pages touched in turn).
func (m *memtable) apply(tx *bolt.Tx) error {
	for name, b := range m.buckets {
		bucket := tx.Bucket([]byte(name))
		if bucket == nil {
			return corrupt(name, nil, errNoBucket)
		}
		for _, k := range slices.Sorted(maps.Keys(b)) {
			var err error
			if v := b[k]; v == nil {
				err = bucket.Delete([]byte(k))
			} else {
				err = bucket.Put([]byte(k), v)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// layers is what a queued function reads: its group's changes over the memtables over a read transaction of the
// file. Newest first; nil memtables are skipped.
type layers struct {
	mem  [3]*memtable // group, mem, frozen
	file *bolt.Tx

	// The last key read from the file: a write that checked a key usually writes it next, and counting that write
	// (txn.change) need not search the file's B+tree again.
	lastBucket []byte
	lastKey    string
	lastValue  []byte
}

// get returns key's value in bucket, nil if there is none.
func (l *layers) get(bucket, key []byte) []byte {
	for _, m := range l.mem {
		if m == nil {
			continue
		}
		if v, ok := m.get(bucket, key); ok {
			return v
		}
	}
	if bytes.Equal(bucket, l.lastBucket) && string(key) == l.lastKey {
		return l.lastValue
	}
	v := l.file.Bucket(bucket).Get(key)
	l.lastBucket, l.lastKey, l.lastValue = bucket, string(key), v
	return v
}

// scan calls fn for every key of bucket that starts with prefix, in key order, until fn returns an error. fn must not
// change the bucket; k and v are valid during the call only.
func (l *layers) scan(bucket, prefix []byte, fn func(k, v []byte) error) error {
	over := map[string][]byte{}
	for i := len(l.mem) - 1; i >= 0; i-- { // oldest first: newer layers overwrite
		if m := l.mem[i]; m != nil {
			for k, v := range m.buckets[string(bucket)] {
				if strings.HasPrefix(k, string(prefix)) {
					over[k] = v
				}
			}
		}
	}
	keys := slices.Sorted(maps.Keys(over))
	c := l.file.Bucket(bucket).Cursor()
	fk, fv := c.First()
	if len(prefix) > 0 {
		fk, fv = c.Seek(prefix)
	}
	for {
		inFile := fk != nil && bytes.HasPrefix(fk, prefix)
		if !inFile && len(keys) == 0 {
			return nil
		}
		if len(keys) > 0 && (!inFile || keys[0] <= string(fk)) {
			k := keys[0]
			keys = keys[1:]
			if inFile && k == string(fk) {
				fk, fv = c.Next()
			}
			if v := over[k]; v != nil {
				if err := fn([]byte(k), v); err != nil {
					return err
				}
			}
			continue
		}
		if err := fn(fk, fv); err != nil {
			return err
		}
		fk, fv = c.Next()
	}
}
