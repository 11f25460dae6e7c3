// Package bolt is a durable storage.Engine on go.etcd.io/bbolt, the
// copy-on-write B+tree that etcd itself uses. The whole key space lives in
// one bucket of one file, <dir>/bolt.db, which bbolt memory-maps read-only
// and locks with flock so that only one Engine (in any process) has it open.
//
// # Durability and fsync policy
//
// Every Batch.Commit is one bbolt read-write transaction, so a batch is
// atomic across crashes: bbolt writes the new pages, fsyncs, then writes
// and fsyncs the meta page that makes them reachable. Commits are fsynced
// whatever the sync argument says, because bbolt's NoSync mode is not safe
// against power loss: a later transaction may overwrite free pages that the
// last durable meta page still references, leaving a corrupt file rather
// than an older state. A commit with sync=false therefore costs the same as
// one with sync=true, and Sync has nothing left to do. To reduce the cost
// the freelist is not written on each commit (NoFreelistSync); bbolt
// rebuilds it on Open by walking every page, so opening a large database
// takes time proportional to its size. File growth is fsynced too
// (NoGrowSync is off).
//
// Options.NoSync turns bbolt's NoSync on. It survives a process crash
// (SIGKILL) because the data is in the page cache, but a power failure or
// kernel crash can corrupt the file; it is meant for tests and benchmarks.
// With it, Sync and sync=true commits call fdatasync.
//
// # Snapshots and iterators
//
// A snapshot is a read-only bbolt transaction; its iterators are cursors in
// that transaction. Every iterator on the Engine itself opens its own
// read-only transaction, so it is a consistent point-in-time view too; it
// releases the transaction as soon as it is exhausted, or at Close. Keys
// and values returned by iterators are copied out of the memory map into
// buffers owned by the iterator (valid until the next Next or Close), and
// Get returns a fresh copy, so callers may modify them and they stay valid
// even after the Engine closes.
//
// # Memory map and long-lived snapshots
//
// bbolt must remap its file when the file outgrows the mapping, and the
// remap waits until every open read transaction has ended; meanwhile the
// committing goroutine (and every new transaction) blocks. A snapshot that
// is streamed to a follower for seconds would then stall all commits, and a
// goroutine that commits while holding a snapshot would deadlock. Open
// therefore maps Options.InitialMmapSize bytes up front: 10 GiB of virtual
// address space by default on 64-bit platforms (512 MiB on 32-bit). This
// costs address space, not memory or disk: the file still grows on demand.
// Once the data outgrows the mapping the hazard returns, so size the
// option above the largest expected database (for example 2x the etcd
// style --quota-backend-bytes).
//
// Open read transactions also pin the pages they see: pages freed by later
// commits are not reused until every older snapshot and iterator is
// closed, so a leaked snapshot makes the file grow without bound.
//
// # Close
//
// Close invalidates snapshots and iterators that are still open (rolling
// back their transactions; afterwards they return storage.ErrClosed) instead
// of waiting for them, then waits for in-flight calls and closes the file.
//
// # Limits
//
// Keys must be non-empty (a Put with an empty key makes Commit fail with
// ErrEmptyKey; a Delete of an empty key is a no-op) and at most 32 KiB;
// values must be smaller than 2 GiB. The file never shrinks: space freed by
// deletes is reused but not returned to the file system (bbolt's offline
// compaction, "bbolt compact", does that).
package bolt
