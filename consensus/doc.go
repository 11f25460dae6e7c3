// Package consensus drives the etcd raft library for one metcd member.
//
// A Node owns the raft.Node and is the only goroutine that reads its Ready
// channel. For each Ready it hands committed entries to the apply side (a
// channel of *Apply, consumed by another goroutine), sends messages to peers
// (the leader before its own fsync, as the raft thesis allows in §10.2.1,
// everyone else after), persists the HardState and entries to the WAL with
// one fsync, and then calls Advance.
//
// Disk holds the durable half of the raft log: etcd's WAL (checksummed
// records, torn-tail repair) and snapshot files. The state machine, the
// peer transport and the clock's tick rate belong to the caller.
package consensus
