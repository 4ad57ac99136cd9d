package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/edgemc/edgemc/store/atomicfile"
)

// LogFileName is the write-ahead log's first segment inside the data directory; the second is LogFileName + ".1".
const LogFileName = "edgemc.wal"

// The write-ahead log makes a group of writes durable with one fdatasync of one contiguous write, where a bbolt
// commit costs two fdatasyncs and a page per touched leaf. The committer applies each group to its memtable,
// appends the group's changes to the log as one record, syncs the log and only then acknowledges the writers. The
// log has two segment files: a checkpoint freezes the memtable, switches the log to the other segment and folds the
// frozen changes into the bbolt file in the background (recording the last record's sequence number in the file)
// while new groups append to the other segment. Open replays the records the file does not hold yet, from both.
//
// Each segment is preallocated with zeros and rewritten in place from its start once the file holds its records,
// so a sync flushes data only, never file-size metadata. Record layout, big-endian:
//
//	[4] n, the length of what follows the checksum   [4] CRC-32C of those n bytes
//	[8] sequence number   then changes, each: [1] opPut or opDelete, bucket name, key, and for opPut the value,
//	                      each of the three a uvarint length then the bytes
//
// A segment's valid log is the chain of records from offset 0 whose sequence numbers rise by one. A record torn by a
// crash fails its checksum, and what lies past the chain's end is older (a previous round's records, with lower
// sequence numbers, or zeros), so the chain ends exactly where acknowledged writes end.
const (
	recordHeader    = 16       // n, checksum, sequence number
	logPrealloc     = 4 << 20  // bytes of zeros written when a segment is created
	checkpointBytes = 2 << 20  // a checkpoint is due once the segment being written holds this much
	maxRecord       = 64 << 20 // larger n is a damaged header, not a record
)

const (
	opPut    byte = 1
	opDelete byte = 2
)

var (
	errLogRecord = errors.New("malformed log record")
	errNoBucket  = errors.New("no such bucket")
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// wal is the log's two segment files. Only the committer's goroutine uses it after Open.
type wal struct {
	segs [2]*os.File
	cur  int    // the segment records are appended to
	off  int64  // where the next record goes in it
	seq  uint64 // sequence number of the last record written or checkpointed
	sync func(*os.File) error
}

// segmentNames are the two segment files' names.
var segmentNames = [2]string{LogFileName, LogFileName + ".1"}

// openWAL opens (creating and preallocating if needed) both segments in dir; sync is the fdatasync appends use.
func openWAL(dir string, sync func(*os.File) error) (*wal, error) {
	w := &wal{sync: sync}
	for i, name := range segmentNames {
		f, err := openSegment(filepath.Join(dir, name))
		if err != nil {
			w.close()
			return nil, err
		}
		w.segs[i] = f
	}
	return w, nil
}

func openSegment(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: open log: %w", err)
	}
	if size := fi.Size(); size < logPrealloc {
		if _, err := f.WriteAt(make([]byte, logPrealloc-size), size); err != nil {
			f.Close()
			return nil, fmt.Errorf("store: preallocate log: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("store: preallocate log: %w", err)
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func syncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("store: sync data dir: %w", err)
	}
	return nil
}

// newRecord resets rec to an empty record (header only).
func newRecord(rec []byte) []byte {
	return append(rec[:0], make([]byte, recordHeader)...)
}

// appendOp adds one change to a record.
func appendOp(rec []byte, op byte, bucket, key, value []byte) []byte {
	rec = append(rec, op)
	for _, b := range [][]byte{bucket, key} {
		rec = binary.AppendUvarint(rec, uint64(len(b)))
		rec = append(rec, b...)
	}
	if op == opPut {
		rec = binary.AppendUvarint(rec, uint64(len(value)))
		rec = append(rec, value...)
	}
	return rec
}

// append writes rec as the next record of the current segment and syncs it. A failed write leaves the log
// unchanged as far as replay can tell: the next record overwrites whatever was written. A failed sync is reported
// wrapping ErrSyncFailed, and the log must not be used any more: the kernel may have dropped the data the sync was
// to write, and a later sync that succeeds would not mean it reached the disk.
func (w *wal) append(rec []byte) error {
	seq := w.seq + 1
	seal(rec, seq)
	f := w.segs[w.cur]
	if _, err := f.WriteAt(rec, w.off); err != nil {
		return fmt.Errorf("store: write log: %w", err)
	}
	if err := w.sync(f); err != nil {
		return fmt.Errorf("%w: fdatasync %s: %w", ErrSyncFailed, filepath.Base(f.Name()), err)
	}
	w.off += int64(len(rec))
	w.seq = seq
	return nil
}

// rotate makes the other segment the current one, from its start. Its records must all be in the database file.
func (w *wal) rotate() {
	w.cur ^= 1
	w.off = 0
}

// seal fills in a record's header.
func seal(rec []byte, seq uint64) {
	binary.BigEndian.PutUint32(rec[0:4], uint32(len(rec)-8))
	binary.BigEndian.PutUint64(rec[8:16], seq)
	binary.BigEndian.PutUint32(rec[4:8], crc32.Checksum(rec[8:], castagnoli))
}

// readAll returns both segments' contents.
func (w *wal) readAll() ([2][]byte, error) {
	var out [2][]byte
	for i, f := range w.segs {
		fi, err := f.Stat()
		if err != nil {
			return out, fmt.Errorf("store: read log: %w", err)
		}
		out[i] = make([]byte, fi.Size())
		if _, err := f.ReadAt(out[i], 0); err != nil && !errors.Is(err, io.EOF) {
			return out, fmt.Errorf("store: read log: %w", err)
		}
	}
	return out, nil
}

func (w *wal) close() error {
	var errs []error
	for _, f := range w.segs {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// nextRecord decodes the record at the start of b. ok is false where the chain ends: zeros, a short or torn record.
func nextRecord(b []byte) (seq uint64, ops []byte, size int, ok bool) {
	if len(b) < recordHeader {
		return 0, nil, 0, false
	}
	n := binary.BigEndian.Uint32(b[0:4])
	if n < 8 || n > maxRecord || uint64(len(b)-8) < uint64(n) {
		return 0, nil, 0, false
	}
	body := b[8 : 8+n]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[4:8]) {
		return 0, nil, 0, false
	}
	return binary.BigEndian.Uint64(body[:8]), body[8:], int(n) + 8, true
}

// chain calls fn for each record of the valid log at the start of b and returns where the chain ends and the last
// sequence number in it (0 if none).
func chain(b []byte, fn func(seq uint64, ops []byte) error) (end int64, last uint64, err error) {
	for {
		seq, ops, size, ok := nextRecord(b[end:])
		if !ok || (last != 0 && seq != last+1) {
			return end, last, nil
		}
		if err := fn(seq, ops); err != nil {
			return end, last, err
		}
		end += int64(size)
		last = seq
	}
}

// forEachOp decodes a record's changes, calling fn for each; value is nil for opDelete.
func forEachOp(ops []byte, fn func(op byte, bucket, key, value []byte) error) error {
	field := func() ([]byte, error) {
		n, k := binary.Uvarint(ops)
		if k <= 0 || n > uint64(len(ops)-k) {
			return nil, errLogRecord
		}
		f := ops[k : k+int(n)]
		ops = ops[k+int(n):]
		return f, nil
	}
	for len(ops) > 0 {
		op := ops[0]
		ops = ops[1:]
		if op != opPut && op != opDelete {
			return fmt.Errorf("%w: unknown change %d", errLogRecord, op)
		}
		bucket, err := field()
		if err != nil {
			return err
		}
		key, err := field()
		if err != nil {
			return err
		}
		var value []byte
		if op == opPut {
			if value, err = field(); err != nil {
				return err
			}
		}
		if err := fn(op, bucket, key, value); err != nil {
			return err
		}
	}
	return nil
}
