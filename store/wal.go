package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// LogFileName is the write-ahead log's name inside the data directory.
const LogFileName = "edgemc.wal"

// The write-ahead log makes a group of writes durable with one fdatasync of one contiguous write, where a bbolt
// commit costs two fdatasyncs and a page per touched leaf. The committer applies each group to a bbolt transaction
// it keeps open, appends the group's changes to the log as one record, syncs the log and only then acknowledges
// the writers. A checkpoint commits the open transaction (synced, recording the last record's sequence number in
// the file) and rewinds the log to its start; Open replays the records the file does not hold yet.
//
// The file is preallocated with zeros and rewritten in place after each checkpoint, so a sync flushes data only,
// never file-size metadata. Record layout, big-endian:
//
//	[4] n, the length of what follows the checksum   [4] CRC-32C of those n bytes
//	[8] sequence number   then changes, each: [1] opPut or opDelete, bucket name, key, and for opPut the value,
//	                      each of the three a uvarint length then the bytes
//
// The valid log is the chain of records from offset 0 whose sequence numbers rise by one. A record torn by a crash
// fails its checksum, and what lies past the chain's end is older (a previous round's records, with lower sequence
// numbers, or zeros), so the chain ends exactly where acknowledged writes end.
const (
	recordHeader    = 16       // n, checksum, sequence number
	logPrealloc     = 4 << 20  // bytes of zeros written when the log is created
	checkpointBytes = 2 << 20  // a checkpoint is due once the log holds this much
	maxRecord       = 64 << 20 // larger n is a damaged header, not a record
)

const (
	opPut    byte = 1
	opDelete byte = 2
)

var (
	errLogRecord = errors.New("malformed log record")
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// wal is the log file. Only the committer's goroutine uses it after Open.
type wal struct {
	f    *os.File
	size int64  // file size
	off  int64  // where the next record goes
	seq  uint64 // sequence number of the last record written or checkpointed
}

// openWAL opens (creating and preallocating if needed) the log at path.
func openWAL(path string) (*wal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: open log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("store: open log: %w", err)
	}
	w := &wal{f: f, size: fi.Size()}
	if w.size < logPrealloc {
		if _, err := f.WriteAt(make([]byte, logPrealloc-w.size), w.size); err != nil {
			f.Close()
			return nil, fmt.Errorf("store: preallocate log: %w", err)
		}
		w.size = logPrealloc
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("store: sync log: %w", err)
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, err
		}
	}
	return w, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: sync data dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
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

// append writes rec as the next record and syncs it. On failure the log is unchanged as far as replay can tell:
// the next record overwrites whatever was written.
func (w *wal) append(rec []byte) error {
	seq := w.seq + 1
	seal(rec, seq)
	if _, err := w.f.WriteAt(rec, w.off); err != nil {
		return fmt.Errorf("store: write log: %w", err)
	}
	if err := fdatasync(w.f); err != nil {
		return fmt.Errorf("store: sync log: %w", err)
	}
	w.off += int64(len(rec))
	w.size = max(w.size, w.off)
	w.seq = seq
	return nil
}

// seal fills in a record's header.
func seal(rec []byte, seq uint64) {
	binary.BigEndian.PutUint32(rec[0:4], uint32(len(rec)-8))
	binary.BigEndian.PutUint64(rec[8:16], seq)
	binary.BigEndian.PutUint32(rec[4:8], crc32.Checksum(rec[8:], castagnoli))
}

// read returns the first n bytes of the log.
func (w *wal) read(n int64) ([]byte, error) {
	buf := make([]byte, n)
	if _, err := w.f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("store: read log: %w", err)
	}
	return buf, nil
}

func (w *wal) close() error { return w.f.Close() }

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
