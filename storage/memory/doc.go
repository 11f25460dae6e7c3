// Package memory is the in-memory storage.Engine: an ordered B-tree
// (github.com/tidwall/btree) guarded by a read-write mutex. It is the
// default engine for tests and for nodes that rebuild their state from raft
// snapshots and the log, so it never touches disk and reports
// Durable() == false.
//
// Snapshots are lazy copy-on-write copies of the tree, which makes taking
// one O(1) and lets iterators run without holding the engine lock: a long
// scan never blocks writers, and writers never disturb a scan in progress.
// A commit inserts with a path hint per family of keys, as the overlay
// does, since its writes come in the same ascending runs.
package memory
