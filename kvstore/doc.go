// Package kvstore is metcd's replicated state machine: the key space that
// raft entries are applied to, kept in a storage.Engine together with the
// cluster membership and the applied raft index.
//
// Layout inside the engine (first byte is the key space):
//
//	'k' + user key   -> value
//	'm' + member id  -> member record (JSON)
//	'r' + member id  -> tombstone of a removed member
//	'a'              -> applied raft index (8 bytes, big endian)
//
// The applied index is written in the same batch as the writes it covers,
// so a durable engine never applies an entry twice after a restart.
//
// The package also owns the two encodings that cross the wire: proposals
// (Request) and the engine-neutral snapshot stream.
package kvstore
