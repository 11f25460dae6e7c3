// Package memory is the in-memory storage.Engine: an ordered B-tree
// (github.com/google/btree) guarded by a read-write mutex. It is the
// default engine for tests and for nodes that rebuild their state from raft
// snapshots and the log, so it never touches disk and reports
// Durable() == false.
//
// Snapshots are lazy copy-on-write clones of the tree, which makes taking
// one O(1) and lets iterators run without holding the engine lock: a long
// scan never blocks writers, and writers never disturb a scan in progress.
package memory
