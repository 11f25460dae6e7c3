// Package kvstore holds the engine that metcd's replicated state lives in
// and the cluster's own part of that state: the membership, the alarms
// and the applied raft index. The key space itself (package mvcc) and the
// leases (package lease) write into the same engine batch (Txn.Batch), so
// one commit per raft Ready covers all of them.
//
// Layout inside the engine (first byte is the key space):
//
//	'v' ...                      -> mvcc (see package mvcc)
//	'l', 'L' ...                 -> leases (see package lease)
//	'm' + member id              -> member record (JSON)
//	'r' + member id              -> tombstone of a removed member
//	'A' + member id + alarm type -> a raised alarm
//	'a'                          -> applied raft index (8 bytes, big endian)
//
// The applied index is written in the same batch as the writes it covers,
// so a durable engine never applies an entry twice after a restart.
//
// The package also owns the engine-neutral snapshot stream, which carries
// every key of the engine.
package kvstore
