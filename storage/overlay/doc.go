// Package overlay is a write batch with read-your-writes over a
// storage.Reader.
//
// The state machine applies every committed entry of one raft Ready into a
// single engine batch, so that a Ready costs one atomic Commit (and at most
// one fsync) instead of one per entry. The entries are small transactions
// that read before they write: an MVCC put reads the key's previous
// revision, a transaction compares and ranges before its puts and
// deletes. Because nothing reaches the engine until the Ready's batch
// commits, an entry reading the engine directly would miss the writes of
// the entries before it in the same Ready. A Batch closes that gap: it
// records the writes in an ordered tree, and its Get and NewIterator merge
// them over the base reader (normally the engine itself), so every entry
// sees its predecessors' writes, including through range iteration in
// either direction. When the Ready is done, ApplyTo replays the net writes
// into one engine batch, the caller commits it, and Reset readies the
// Batch for the next Ready:
//
//	ob := overlay.New(engine)
//	for _, ent := range rd.CommittedEntries {
//		apply(ob, ent) // ob.Get, ob.NewIterator, ob.Put, ob.Delete
//	}
//	eb := engine.NewBatch()
//	ob.ApplyTo(eb)
//	err := eb.Commit(false)
//	eb.Close()
//	ob.Reset(engine)
//
// Pending writes live in a B-tree (github.com/tidwall/btree), so iteration
// is a sorted two-way merge with no sorting per iterator, and an iterator
// reads an O(1) copy-on-write clone of the tree: writes made after
// NewIterator never disturb it. The tree takes a path hint per family of
// keys (their first two bytes), because writes come in ascending runs
// within a family: a range delete of 500k keys writes three such runs
// (the keys' current records, their revision records, their index
// entries), and a hint makes each insert start where the last one of its
// run ended. The bytes of the pending pairs are carved from slabs that
// double from 512 bytes to 64 KiB, a few allocations per Ready rather than
// one per write.
package overlay
