// Package server runs one metcd member: it bootstraps the data dir, ties
// the raft driver (package consensus) to the state machine (package
// kvstore) and the peer transport, and offers the operations the client
// APIs need: writes that return once committed and applied on this member,
// linearizable reads through batched ReadIndex rounds, serializable reads,
// and membership changes.
//
// Goroutines and what they own:
//   - the consensus.Node goroutine owns the raft.Node and the WAL;
//   - the apply goroutine owns every write to the kvstore and the raft
//     ConfState, and decides when to snapshot;
//   - the read goroutine batches linearizable reads into ReadIndex rounds;
//   - snapshots are written and sent on goroutines of their own, from
//     consistent views, while writes go on.
package server
