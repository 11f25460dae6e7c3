// Package mvcc is the multi-version key space behind the etcd v3 KV API:
// revisions, history, past reads, transactions and compaction, with etcd
// v3.7's semantics (checked against a real etcd by a differential test).
// Unlike etcd it keeps its key index on disk, in the same engine as the
// data, so the number of keys is not bounded by memory.
//
// # Use
//
//	s, err := mvcc.Open(engine, mvcc.Options{LeaseExists: lessor.Exists, Leases: lessor})
//	// apply goroutine, one overlay batch per raft Ready:
//	ob := overlay.New(engine)
//	w := s.Write(ob)             // one write txn = at most one revision
//	w.Put(putReq); w.DeleteRange(delReq); w.Range(rangeReq)
//	w.End()
//	s.Txn(ob, txnReq)            // compares, then one branch, one revision
//	s.TxnSkipRanges(ob, txnReq)  // the same on a member that answers no client
//	keys, err := lessor.Revoke(ob, id); s.DeleteKeys(ob, keys) // lease revoke, one revision
//	s.Compact(ob, rev)           // logical
//	// commit ob into the engine (overlay.ApplyTo), then Reset it
//	// any goroutine:
//	s.Range(snapshot, rangeReq)
//	s.History(snapshot, from, key, end, fn) // watch catch-up (HistoryWithPrevKV for prev_kv)
//	s.HashKV(snapshot, rev)                 // etcd's HashKV: hash, hashed and compacted revisions
//	// watch hub: reads history through the adapter, told of each new
//	// revision (after the commit) with the events RevisionEvents reads:
//	hub := watch.NewHub(mvcc.WatchHistory{Store: s, Read: func(fn func(storage.Reader) error) error { return fn(engine) }}, s.Rev(), opts)
//	evs, err := s.RevisionEvents(ob, rev); /* commit ob */ hub.Notify(rev, evs)
//	s.PhysicalCompact(engine, rev, 1000, nil) // after Compact was committed
//
// Every write reads the revision state from its batch, so successive
// transactions in one batch get successive revisions and see each other's
// writes. Responses carry only header.revision; the server fills the rest
// of the header. Errors are etcd's sentinels (see errors.go) and ToGRPCError
// gives the gRPC error etcd would send.
//
// # Engine layout
//
// Every engine key starts with 'v', so the key space can share an engine
// with kvstore ('k', 'm', 'r', 'a', 'n'). Integers are 8-byte big endian;
// a revision is main then sub (16 bytes), so engine order is revision
// order.
//
//	vk + key                      → KeyValue (proto) of the key's current version
//	vx + esc(key) + main + sub    → 'p' (put) or 'd' (delete): the per-key revision index
//	vr + main + sub               → 'p' + KeyValue, or 'd' + KeyValue{key}: every change
//	vmrev                         → current revision (absent: 1)
//	vmcompact                     → logically compacted revision (absent: -1, as etcd)
//	vmphysical                    → revision history was physically removed up to (absent: 0)
//	vmkeys                        → number of live keys (absent: 0)
//
// esc(key) replaces each 0x00 of the key by 0x00 0xff and appends the
// terminator 0x00 0x01, so index entries sort by key first (bytewise, like
// the keys) and then by revision, whatever bytes a key holds.
//
// A write transaction at revision R writes, per change with sub-revision
// S: vr+R+S, vx+esc(key)+R+S, and vk+key (put) or its deletion (delete);
// its first change also sets vmrev to R. When a key's lease changes, the
// lease layer (Options.Leases) records the attachment in the same batch
// under its own keys. A read at the current revision scans vk; a read at
// a past revision scans the vx entries of its key range, taking for each
// key the last entry at or below the revision (a put means the key was
// live: its value is read from vr), so its cost grows with the
// uncompacted history of the range (a single key is one bounded reverse
// step). History scans vr from a revision. Compact only sets vmcompact; PhysicalCompact then removes,
// for each key with history at or below the revision, every vx entry but
// the last (and that one too if it is a delete), with the vr records
// below the revision that no vx entry keeps.
//
// # Consistency of reads
//
// Reads on a snapshot or a batch see one state. Reads on the live engine
// compare the meta keys before and after, retrying or answering
// ErrCompacted so that an answer is always that of one revision (see
// Store.Range). RangeCommitted, for the live engine whose changes all go
// through Store.Commit, takes the current revision from memory instead and
// checks a sequence number that Commit moves before and after each engine
// change.
//
// # Differences from etcd
//
// None in responses or errors as far as the differential test reaches
// (every request field, errors included, on all four engines, with
// batches grouping several writes and physical compaction running in the
// background). etcd's quirks are kept, such as its duplicate-key rule,
// which lets a txn delete with range_end "\x00" and put inside that range.
// Two deliberate differences, where etcd is not deterministic or crashes:
//
//   - History(from) with from equal to the compacted revision returns
//     every event of that revision. etcd's watch does too until its
//     background compaction finishes, then no longer sends the deletes
//     (and overwritten puts) of that revision.
//   - A Txn that etcd v3.7.3 accepts and then panics applying (a put with
//     ignore_value or ignore_lease of a key the same txn deleted, which
//     etcd's duplicate-key check misses when the delete has range_end
//     "\x00") fails here with ErrKeyNotFound before writing anything.
//
// Watch streams (package watch; WatchHistory and RevisionEvents feed its
// hub), and etcd's quota and auth checks are outside this package.
package mvcc
