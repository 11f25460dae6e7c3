// Package lease is metcd's lessor: the leases of the etcd v3 API, with
// etcd v3.7's semantics, split into two halves that never mix.
//
// # Replicated state
//
// Which leases exist, their granted TTL, their checkpointed remaining TTL
// and the keys attached to them are replicated state. It changes only
// through the applied methods (Grant, Revoke, Attach, Detach,
// Checkpoint), which the apply goroutine calls for committed raft entries
// in log order. They are deterministic: they read no clock and no local
// configuration other than Options.MinTTL (which every member must share,
// as in etcd), so every member that applies the same entries holds the
// same leases and writes the same engine keys. Each writes its changes
// into the caller's overlay.Batch, so they commit atomically with the rest
// of the Ready (the mvcc deletes of a revoked lease's keys, the applied
// index). The in-memory copy is updated at apply time, like etcd's; New
// (and Reload, after a snapshot install) rebuild it from the engine.
//
// Engine layout (keys owned by this package; see record.go):
//
//	l + id (8 bytes, big endian)  → 1, id, ttl, remaining TTL (8 bytes each)
//	L + id + key                  → (empty): key is attached to lease id
//
// # Leader-only expiry
//
// When a lease expires is not replicated: it is a clock reading on the
// leader. Promote (on becoming raft leader) starts the clock for every
// lease at its full TTL plus an extension, or at its checkpointed
// remaining TTL, so a new leader never expires leases whose keepalives
// went to the old one; Demote forgets all of it. While promoted, Renew
// (keepalive) and TimeToLive answer from the leader's clock, and
// ExpiredLeases and DueCheckpoints hand the server the leases to revoke
// and the remaining TTLs to checkpoint. The leader-only half never changes
// the replicated state: an expiry only becomes a revoke when the server
// proposes LeaseRevoke through raft and applies it like any other entry,
// so a follower (or a deposed leader) expires nothing, and every member
// revokes the same leases at the same log position.
//
//	// apply goroutine, one overlay batch per Ready:
//	l.Grant(ob, id, ttl); keys, err := l.Revoke(ob, id) // then mvcc deletes keys
//	l.Attach(ob, id, key); l.Detach(ob, id, key); l.Checkpoint(ob, id, rem)
//	// raft leadership changes:
//	l.Promote(electionTimeout); l.Demote()
//	// leader, any goroutine:
//	ttl, err := l.Renew(id)
//	granted, remaining, keys, err := l.TimeToLive(id, true)
//	every 500ms: propose LeaseRevoke for l.ExpiredLeases(0),
//	             LeaseCheckpoint for l.DueCheckpoints(0)
//
// # Concurrency
//
// One mutex guards both halves and is a leaf lock: nothing blocks while it
// is held, no other lock is taken under it, and the applied methods only
// write to the caller's in-memory batch under it. Applied methods must all
// be called from the apply goroutine (their order is the replicated
// order); every other method is safe from any goroutine.
//
// # Differences from etcd
//
//   - Renew of a lease that has expired but is not revoked yet fails at
//     once with ErrLeaseNotFound; etcd waits for the revoke (same error)
//     or the leader change (ErrNotPrimary).
//   - Renew does not propose the reset of a checkpointed remaining TTL
//     itself (etcd does, synchronously): it marks the lease, and
//     DueCheckpoints offers the reset to 0 first.
//   - TimeToLive reports -1 as the remaining TTL of an expired lease
//     that is not revoked yet (etcd truncates the negative duration).
//   - Errors are etcd's own lease sentinels (errors.go).
package lease
