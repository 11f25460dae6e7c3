// Package watch is the watch hub that etcd's v3 Watch service sits on: it
// fans the events of committed revisions out to watchers with etcd v3.7
// semantics, independent of storage. The hub reads past events through the
// small History interface (the mvcc store implements it) and is told of
// new ones by the apply loop, in revision order, once they are readable
// through History. The apply loop asks Interest whether any watcher exists and whether one
// asks for prev_kv: it reads a batch's events only in the first case, and
// each event's previous version only in the second, and hands the batch
// over with NotifyBatch. If a watcher made in the meantime needs what was
// not read, NotifyBatch refuses the batch and the apply loop reads it again
// and hands it over again, so the new watcher stays synced, as etcd's
// would. Advance moves the hub to a revision without its events,
// after a snapshot install: any watcher that still expects one of the
// skipped revisions catches up from History.
//
// # Synced and unsynced watchers
//
// As in etcd's watchable store, every watcher is in one of two groups,
// both guarded by the hub's mutex together with the hub revision (the
// last revision passed to Notify):
//
//   - synced: the watcher has received everything up to the hub revision.
//     Notify delivers each new revision's matching events to it directly,
//     as one response per revision (header revision = that revision).
//     Single-key watchers are found through a map by key, range watchers
//     by a scan of the range set.
//   - unsynced: the watcher still needs the revisions from its minRev up to
//     the hub revision. One background goroutine (the sync loop) serves
//     these watchers from History.
//
// A watcher created with start_revision 0, or above the hub revision, is
// synced at once (its first revision is the next one, or its start
// revision); one with a start revision at or below the hub revision starts
// unsynced, and the sync loop is woken.
//
// # The no-gap handoff
//
// The sync loop notes the hub revision as its target, then, without the
// hub lock (so Notify is never held up by History), reads the watcher's
// events from minRev up to the target, at most MaxRevsPerBatch revisions,
// cut at a revision boundary; events History already holds beyond the
// target (committed but not yet notified) are left to Notify. Under the
// lock again it sends the batch, advances minRev past what it read, and
// only if minRev is now above the hub revision moves the watcher into the
// synced group. Notify updates the hub revision and delivers to the synced
// group under the same lock, so every revision is delivered exactly once:
// revisions up to the hub revision at the move came from History, later
// ones come from Notify. If Notify advanced the revision during the read,
// the watcher stays unsynced and the loop reads again at once.
//
// Unsynced watchers whose next revisions lie within MaxRevsPerBatch of
// each other share one read, over the smallest key range that holds all
// of theirs (keeping only events some of them want), from the lowest of
// their revisions, at most 4096 watchers to a read; each takes its own
// events from it, from its own revision on, without the hub lock. So many watchers that resume
// from about the same revision (clients failing over from a member that
// went down, or a snapshot install) cost one scan of the history per
// batch, not one per watcher, while one watcher far behind is read in a
// group of its own and holds up no other.
//
// # Streams and slow watchers
//
// A watcher made by Hub.Watch has a bounded channel of its own (BufferSize
// responses). The watchers of one etcd watch stream are made by
// Stream.Watch instead and share the stream's queue, which holds their
// responses and the caller's (created, canceled) in the order they were
// made; one reader takes them all (Stream.Take) and sends them on. A
// watcher then costs its state alone, with no channel and no goroutine,
// and a client that stops reading holds at most BufferSize of the hub's
// responses per stream, as etcd's stream buffer of 128 (and 16 more of
// the caller's).
//
// Notify never blocks: when a synced watcher's queue is full it drops the
// response, moves the watcher to the unsynced group with minRev at that
// revision (the role of etcd's victims) and wakes the sync loop, which
// reads those revisions from History again once the queue has room
// (checked every SyncInterval, and at once when a stream's reader takes
// from a queue a watcher found full). Memory per slow watcher is thus
// bounded by its queue; nothing is queued for it elsewhere. Catch-up
// responses also stop at about 8 MiB queued, estimated from the last one's
// size, so a reader that does not keep up does not make the hub read
// history ahead into memory.
//
// When History answers ErrCompacted for a watcher's minRev (a start
// revision below the compaction, or a slow watcher that fell behind a
// compaction), the watcher gets a final response with Canceled and
// CompactRevision (History.CompactRevision) after the responses it already
// has, and its channel is closed (a stream's watcher just ends), as etcd
// cancels it. A batch of a History
// read that failed is never delivered.
//
// # Responses
//
// Watcher.C and Stream.Take yield *etcdserverpb.WatchResponse values:
// the caller fills the header's cluster, member and term and forwards
// them. Events are shared between watchers and must not be modified; a
// watcher that did not ask for prev_kv gets a copy of each event without
// PrevKv. Filters (NOPUT, NODELETE) are applied by the hub, and a revision
// whose events are all filtered out sends nothing. Fragments splits a
// response under a size limit for watchers created with fragment.
//
// Progress: a watcher created with progress_notify gets an empty response
// at the hub revision at each Watcher.ProgressTick that ends a period in
// which it got nothing else (Stream.ProgressTick for a whole stream); the
// caller keeps the clock (etcd's is one per watch stream, 10 minutes plus
// jitter by default).
// Watcher.RequestProgress and Stream.RequestProgress answer explicit
// requests; like etcd they do nothing for watchers that are catching up
// (or whose start revision is still ahead). Stream.RequestProgress queues
// one response with watch id InvalidWatchID at the hub's revision for the
// whole stream: the queue is in order, so every event of the stream's
// watchers up to that revision is ahead of it.
package watch
