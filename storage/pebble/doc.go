// Package pebble is a durable storage.Engine built on Pebble
// (github.com/cockroachdb/pebble/v2), the log-structured merge tree that
// CockroachDB uses. Writes go to a write-ahead log and an in-memory
// memtable; full memtables are flushed to sorted sstables that background
// compactions merge. Everything lives in one directory, which Open creates
// if needed and locks for the lifetime of the Engine.
//
// # Durability and fsync policy
//
// Every commit is appended to Pebble's write-ahead log before it becomes
// visible, as one WAL record, so after a crash a batch is replayed whole
// or not at all (a torn record at the tail of the log is discarded on
// recovery).
//
//   - Commit(true) returns only after the WAL has been fsynced up to and
//     including the batch (Pebble groups concurrent synced commits into one
//     fsync).
//   - Commit(false) returns once the batch is in the WAL buffer and the
//     memtable. Pebble's background flusher hands the buffer to the OS
//     soon after, but nothing is fsynced, so a process or machine crash
//     may lose a suffix of unsynced commits (never a part of one).
//   - Sync fsyncs the WAL up to everything committed before the call. It
//     commits an empty "log data" record with pebble.Sync; see Engine.Sync.
//   - A synced Commit of an empty batch behaves like Sync, so it too makes
//     earlier unsynced commits durable.
//   - A clean Close flushes and fsyncs the WAL, so no acknowledged commit is
//     lost by a clean shutdown; the memtable itself is not flushed, the WAL
//     is replayed on the next Open instead.
//
// # Reads
//
// Get reads the latest committed state and returns a copy. Snapshots are
// Pebble snapshots: a sequence number that pins the versions visible at
// NewSnapshot, O(1) to take. Iterators, on the engine or on a snapshot, are
// Pebble iterators and therefore point-in-time views; Key and Value are
// copied into per-iterator buffers, so callers may even write into them
// without corrupting Pebble's blocks or memtable.
//
// # Bulk loads
//
// Engine implements storage.Loader: NewLoad takes keys in strictly
// ascending order, gathers them into runs of about 16 MiB, and has a few
// workers write each run as an sstable in load.tmp/ inside the store's
// directory, fsynced when it is complete, while the caller goes on (runs
// are disjoint key ranges, so the tables do not overlap); Finish waits for
// the workers and ingests the tables all at once (Pebble links them into
// the tree and syncs its manifest), and Abort deletes them. Both give the
// runs' memory back to the OS. Ingested tables skip the
// WAL, the memtables and the compactions that batches would cause; into
// an empty store they go to the bottom level. A snapshot install uses it.
//
// # Write stalls
//
// Pebble stops taking writes while its memtables wait for a flush or level
// 0 holds too many files, and every commit waits. A stall that lasts more
// than a second is reported through the Logger (Errorf, which the default
// logger writes to the standard log) with Pebble's reason, and again when
// it ends, so a member whose writes hang says why.
//
// # Closing
//
// Pebble panics when a closed DB, snapshot or iterator is used, and reports
// "leaked iterators" when the DB is closed with iterators open. This package
// guards every handle with its own state: Engine.Close first closes every
// snapshot and iterator still open (they report storage.ErrClosed from then
// on), waits for in-flight calls, then closes the DB. Closing a snapshot
// likewise closes the iterators created from it.
//
// # Operational caveats
//
//   - One process, one Open per directory: a second Open of a directory that
//     is already open fails with a lock error, in this process or another.
//   - A long-lived iterator pins the memtables and sstables it started on,
//     so disk space freed by compactions is not reclaimed until it is
//     closed; prefer a snapshot for a long-lived read view and short-lived
//     iterators on it. A long-lived snapshot keeps overwritten and deleted
//     versions from being compacted away.
//   - Pebble treats a failed WAL write or fsync as fatal: it calls the
//     Logger's Fatalf, which by default logs and exits the process (the same
//     policy as Pebble's DefaultLogger), because the durability of commits
//     can no longer be known.
//   - Stats.DiskBytes is the sum of the file sizes in the directory (WAL,
//     sstables, manifest, options; obsolete files not yet deleted and
//     recycled WAL files included), one stat per file. Pebble's
//     Metrics.DiskSpaceUsage is not used: it counts the live WAL at its size
//     when it was created. Stats.Keys is -1: an LSM cannot count keys
//     cheaply.
//   - New stores use the newest format Pebble v2.1 supports; existing stores
//     are ratcheted up to it on Open, after which an older Pebble cannot open
//     them.
package pebble
