// Package leveldb is a durable storage.Engine on goleveldb
// (github.com/syndtr/goleveldb), a pure-Go LevelDB: an LSM tree with a
// write-ahead journal, a memtable, and levels of sorted, snappy-compressed
// table files that background goroutines compact. Open(dir, opts) owns the
// directory dir; Name is "leveldb" and Durable is true.
//
// # Durability and fsync policy
//
// Every Commit appends the batch to the journal as a single checksummed
// record and write(2)s it to the kernel before returning, so committed
// batches survive a crash of the process (SIGKILL, panic) even without
// sync. Recovery replays the journal and drops a torn last record, so a
// batch is applied whole or not at all.
//
//   - Commit(true) fsyncs the journal before returning. Since the journal
//     is append-only, that also makes every earlier commit durable.
//   - Commit(false) is durable against machine crashes only after the next
//     Sync or synced Commit. goleveldb does not sync in the background.
//   - Sync fsyncs if any unsynced commit is pending and is free otherwise.
//     goleveldb has no bare sync call and ignores empty batches, so Sync
//     commits, with Sync set, a deletion of the empty key: keys are
//     non-empty by the storage contract, so this marker never touches data
//     and is invisible to reads.
//   - goleveldb closes a journal without fsyncing it when it switches to a
//     new memtable, which would let a later synced record survive a power
//     failure while earlier unsynced ones are lost. After each synced
//     write this package therefore fsyncs any older journal files still on
//     disk, and the directory when a new journal appeared (see
//     journalSyncer). This costs one readdir per synced write.
//   - Close syncs pending commits before closing, so a clean shutdown
//     loses nothing.
//   - A batch larger than Options.WriteBuffer does not go through the
//     journal: goleveldb writes it as a transaction straight into level-0
//     tables (flushing the memtable first and waiting for compaction), which
//     is atomic and synced whatever the sync flag, but slow: keep batches
//     well under WriteBuffer (default 16 MiB).
//
// # Reads, snapshots and iterators
//
// Get returns goleveldb's own copy of the value. NewSnapshot is a goleveldb
// snapshot: a pinned sequence number, O(1) to take. Iterators on the engine
// need no snapshot: a goleveldb iterator reads at the sequence number
// current when it is created and holds references to that moment's
// memtables and table files, so it is a point-in-time view. Reverse
// iteration uses Last/Prev. Value returns the iterator's own buffer
// (overwritten by Next); Key is copied into a per-iterator buffer because
// goleveldb reads its key buffer to skip old versions.
//
// After Close every call on the engine, its snapshots, batches and
// iterators returns storage.ErrClosed. Close waits for calls in flight
// (a synced Commit holds it up for its fsync) and releases the library
// resources of iterators still open, which goleveldb requires.
//
// # Operational caveats
//
//   - One process at a time: goleveldb flock(2)s dir/LOCK, so a second Open
//     of the same directory fails (also within one process) until the
//     first engine is closed.
//   - Open snapshots keep compaction from dropping the versions they see,
//     and open iterators pin table files on disk and memtables in memory:
//     close them promptly, long-lived ones cost space.
//   - Memory: goleveldb preallocates each memtable's whole WriteBuffer and
//     holds up to three (active, flushing, pooled spare), so budget about
//     3 x WriteBuffer (48 MiB by default) plus the block cache
//     (BlockCacheCapacity, default 32 MiB, filled lazily) plus metadata of
//     up to 500 open table files, per engine. Lower both for many small engines
//     in one process (tests).
//   - Writes stall (sleep 1 ms) once level 0 holds 8 tables and pause at
//     12 until compaction catches up: sustained bulk loads are throttled.
//   - Stats.DiskBytes is the sum of the file sizes in dir, including the
//     journal, MANIFEST and goleveldb's LOG file; Stats.Keys is -1 because
//     goleveldb keeps no count.
//   - Open does not repair a corrupted database; it returns an error naming
//     the corruption (goleveldb's leveldb.RecoverFile can salvage one, with
//     possible loss).
//   - goleveldb sees little development any more; go.mod pins a 2022
//     revision.
package leveldb
