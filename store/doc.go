// Package store is edgemc's durable local state in one bbolt file: meeting generations (fencing tokens), each
// meeting's MH assignments, roster and session bindings, and one-time nonces.
//
// It replaces Dark Tower's Redis and its Lua check-and-write: every meeting write names the generation its writer
// holds, and the check and the write happen in one transaction. Writes are durable when a call returns: concurrent
// writers share a group commit whose changes go to a write-ahead log (edgemc.wal and edgemc.wal.1) with one
// fdatasync, and a checkpoint folds the log into the bbolt file every CheckpointInterval, beside the writers rather
// than in their way; Open replays what a crash left in the log. Throughput grows with concurrency instead of paying
// one sync per write. A background sweeper removes expired nonces and bindings.
//
// Layout (bucket/key → value; every value starts with a format version byte). Buckets are flat — per-meeting
// entries are keyed "<meeting>\x00<id>" — because a commit costs one page per distinct leaf it touches, and nested
// per-meeting buckets would add two more pages per meeting written:
//
//	generations/\x00                     → the newest generation handed out to any meeting (the global counter)
//	generations/<meeting>               → the meeting's generation, from Acquire until DeleteMeeting
//	meetings/<meeting>                  → MH assignments, assigned-by, created-at
//	roster/<meeting>\x00<participant>    → participant
//	bindings/<meeting>\x00<correlation>  → binding
//	nonces/<meeting>\x00<nonce>          → expiry
//	log/checkpoint                      → sequence number of the last log record the file holds
//
// Generations and what an ended meeting leaves. Acquire takes generations from the one global counter, so a new
// generation is newer than every generation any meeting had before. A meeting without a key of its own (deleted, or
// never acquired) is at the global generation: every generation handed out so far is fenced out of it but the newest
// (so its deleting owner can still write to it, as before the delete, until the next Acquire of any meeting). An old
// owner of a deleted meeting is therefore fenced out without a tombstone, also after the meeting is acquired again (a
// newer generation still) and after a restart (the counter is durable). So
// DeleteMeeting removes the meeting's generation with its record, roster and bindings, and a year of meetings leaves
// one key; its nonces stay until they expire, as replay protection outlives a meeting. Open drops the generation of
// every meeting without a record (an older edgemc kept them forever, and sets no global counter: Open sets it to the
// newest one stored). Stats answers from counts kept as writes are acknowledged, counted once by Open.
//
// Failures. A failed fdatasync of the log is final: the kernel may have dropped the data it was to write while
// marking it clean, so a later sync that succeeds would not cover it, and the store does not try. A failed checkpoint
// commit is final too: bbolt does not say which of its two syncs failed, and its new meta page may be in the page
// cache. From then on every call fails with ErrSyncFailed (Check and Ping too), until the store is reopened: Close,
// then Open, which replays the log into the file. edgemc does that by restarting. A failed write of the log (not its
// sync) is retried in place by the next group, and a checkpoint whose commit found no room on the disk (ENOSPC,
// EDQUOT: a write failed before any sync) keeps its changes and is folded again after CheckpointInterval; Check
// reports either until it succeeds.
//
// Where each step lives:
//
//   - Fencing, meetings.go: every meeting write goes through (*DB).fenced, which runs fence, the ErrNotFound
//     check (entry.exists) and raise before the write itself; Acquire bumps the global counter (globalGeneration).
//   - Group commit, commit.go: (*DB).write (store.go) queues a write with (*committer).do; (*committer).run takes
//     everything queued and (*committer).commit runs it over the store's layers (memtable.go: the group's changes
//     over the memtable over the frozen memtable over a read transaction of the file), appends one log record,
//     merges the group into the memtable and answers every writer. A writer that fails is answered alone and the
//     rest of its group runs again. Reads queue the same way: (*DB).view, (*committer).read; Ping is an empty read
//     whose caller can give up (enqueue).
//   - WAL, wal.go: openWAL creates and preallocates both segments; newRecord and appendOp build a record;
//     (*wal).append writes it and syncs it once (Options.fdatasync, by default fdatasync in sync_linux.go);
//     nextRecord, chain and forEachOp read records back.
//   - Checkpoint, commit.go: (*committer).run calls startCheckpoint every CheckpointInterval, or when the segment
//     being written holds checkpointBytes, if none is running: it freezes the memtable, rotates the log to its other
//     segment and runs fold in a goroutine, which commits the frozen changes with the last record's sequence number
//     under log/checkpoint; checkpointDone takes the result and reports its duration to Options.ObserveCheckpoint.
//     Close waits for it and folds in the rest (finish).
//   - Replay, store.go and commit.go: Open calls recoverLog, which applies the records of both segments past
//     log/checkpoint with replay, prunes generations (pruneGenerations) and counts what Stats reports.
//   - Sweeping, nonces.go: sweepLoop calls Sweep, which lists expired entries (findExpired) and deletes them in
//     chunks (deleteIfExpired).
package store
