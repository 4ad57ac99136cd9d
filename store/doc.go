// Package store is edgemc's durable local state in one bbolt file: meeting generations (fencing tokens), each
// meeting's MH assignments, roster and session bindings, and one-time nonces.
//
// It replaces Dark Tower's Redis and its Lua check-and-write: every meeting write names the generation its writer
// holds, and the check and the write happen in one transaction. Writes are durable when a call returns: concurrent
// writers share a group commit whose changes go to a write-ahead log (edgemc.wal) with one fdatasync, and a
// checkpoint folds the log into the bbolt file every CheckpointInterval; Open replays what a crash left in the log.
// Throughput grows with concurrency instead of paying one sync per write. A background sweeper removes expired
// nonces and bindings.
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
//	log/checkpoint                      → sequence number of the last log record the file holds
//
// Where each step lives:
//
//   - Fencing, meetings.go: every meeting write goes through (*DB).fenced, which runs fence, the ErrNotFound
//     check (entry.exists) and raise before the write itself; Acquire bumps the generation counter.
//   - Group commit, commit.go: (*DB).write (store.go) queues a write with (*committer).do; (*committer).run takes
//     everything queued and (*committer).commit runs it in the open transaction (begin), appends one log record and
//     answers every writer. A writer that fails is answered alone and the rest of its group runs again (discard).
//     Reads queue the same way: (*DB).view, (*committer).read.
//   - WAL, wal.go: openWAL creates and preallocates the log; newRecord and appendOp build a record; (*wal).append
//     writes it and syncs it once (fdatasync, sync_linux.go); nextRecord, chain and forEachOp read records back.
//   - Checkpoint, commit.go: (*committer).run calls (*committer).checkpointNow every CheckpointInterval, when the
//     log holds checkpointBytes, and on Close; it commits the open transaction with the last record's sequence
//     number under log/checkpoint and rewinds the log.
//   - Replay, store.go and commit.go: Open calls recoverLog, which applies the records past log/checkpoint with
//     replay; (*committer).begin replays the same way after a failed group discarded the open transaction.
//   - Sweeping, nonces.go: sweepLoop calls Sweep, which lists expired entries (findExpired) and deletes them in
//     chunks (deleteIfExpired).
package store
