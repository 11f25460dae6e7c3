package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/metcd/metcd/consensus"
	"github.com/metcd/metcd/internal/pipe"
	"github.com/metcd/metcd/kvstore"
	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/mvcc"
	"github.com/metcd/metcd/storage"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// snapshotData marks raft snapshots made by this version; the state itself
// travels and rests as a separate stream (kvstore's snapshot format).
var snapshotData = []byte("metcd-state-v1")

type pendingResult struct {
	id uint64
	r  result
}

func (s *Server) applyLoop() {
	for {
		select {
		case ap := <-s.node.Applies():
			if err := s.apply(ap); err != nil {
				s.lg.Error("apply failed; stopping member", zap.Error(err))
				s.fail(fmt.Errorf("apply: %w", err))
				return
			}
		case m := <-s.snapc:
			s.startSnapshotSend(m)
		case <-s.stopc:
			return
		}
	}
}

// testHookBeforeCompaction, if set (by tests, before any member starts),
// runs in the apply loop before a compaction to revision rev is applied.
var testHookBeforeCompaction func(s *Server, rev int64)

// testHookBeforeNotify, if set (by tests, before any member starts), runs
// in the apply loop before it hands the watch hub a batch whose events it
// read without PrevKv or did not read.
var testHookBeforeNotify func(s *Server)

// appendEvents appends to events those of revisions first..last read
// from r, with PrevKv if withPrev.
func (s *Server) appendEvents(events [][]*mvccpb.Event, r storage.Reader, first, last int64, withPrev bool) ([][]*mvccpb.Event, error) {
	read := s.mv.RevisionEventsWithoutPrevKV
	if withPrev {
		read = s.mv.RevisionEvents
	}
	for rev := first; rev <= last; rev++ {
		evs, err := read(r, rev)
		if err != nil {
			return events, fmt.Errorf("read events of revision %d: %w", rev, err)
		}
		events = append(events, evs)
	}
	return events, nil
}

// readCommitted reads the events of the committed revisions first..last,
// with PrevKv if withPrev.
func (s *Server) readCommitted(first, last int64, withPrev bool) (events [][]*mvccpb.Event, err error) {
	err = s.readEngine(func(r storage.Reader) error {
		events, err = s.appendEvents(make([][]*mvccpb.Event, 0, last-first+1), r, first, last, withPrev)
		return err
	})
	return events, err
}

// apply installs a batch in one engine transaction. Entries at or below the
// store's applied index are already in the engine (a durable engine after a
// restart, or a snapshot stream newer than its raft index): their data is
// skipped, but membership changes still go to raft, which rebuilt its
// configuration only from the snapshot.
func (s *Server) apply(ap *consensus.Apply) error {
	if !raft.IsEmptySnap(ap.Snapshot) {
		if err := ap.WaitPersisted(); err != nil {
			return err
		}
		if err := s.installSnapshot(ap.Snapshot); err != nil {
			return err
		}
	}
	if len(ap.Entries) == 0 {
		return nil
	}
	applied := s.store.Applied()
	txn := s.store.NewTxn()
	revBefore := s.mv.Rev()
	var (
		results     []pendingResult
		last        uint64
		removedSelf bool
		compacted   int64
	)
	// The events of each new revision, for the watch hub once committed.
	// They are read only if a watcher exists, and with PrevKv (a read of
	// each changed key's previous version, seconds for a delete of 500k
	// keys) only if one asks for it. If a watcher made meanwhile needs more
	// than was read, the hub refuses the batch and the events are read
	// again from the committed engine (Hub.NotifyBatch).
	// A batch with a compaction reads them with PrevKv in any case, and
	// before the compaction applies, since it hides the revisions it
	// compacts from the history: a watcher created meanwhile, which starts
	// from the hub's revision, could not catch up, and one that existed
	// would not get them. etcd too delivers writes to caught-up watchers
	// whatever a compaction after them removes.
	watching, withPrev := s.hub.Interest()
	var events [][]*mvccpb.Event
	readEvents := func() (err error) {
		if watching {
			events, err = s.appendEvents(events, txn.Batch(), revBefore+1+int64(len(events)), s.mv.Rev(), withPrev)
		}
		return err
	}
	for _, e := range ap.Entries {
		idx := e.GetIndex()
		last = idx
		s.lastIndex, s.lastTerm = idx, e.GetTerm()
		switch e.GetType() {
		case raftpb.EntryNormal:
			if idx <= applied || len(e.GetData()) == 0 {
				continue
			}
			s.logSinceState += uint64(len(e.GetData()))
			req, err := decodeRequest(e.GetData())
			if err != nil {
				// Every member skips the same bad entry, so state stays equal.
				s.lg.Error("skipping undecodable entry", zap.Uint64("index", idx), zap.Error(err))
				continue
			}
			if req.Compaction != nil {
				if testHookBeforeCompaction != nil {
					testHookBeforeCompaction(s, req.Compaction.Revision)
				}
				// Nothing was read before the first compaction.
				watching, withPrev = true, true
				if err := readEvents(); err != nil {
					txn.Abort()
					return err
				}
			}
			r, err := s.applyRequest(txn, req)
			if err != nil {
				txn.Abort()
				return fmt.Errorf("entry %d: %w", idx, err)
			}
			if req.Compaction != nil && r.err == nil {
				compacted = req.Compaction.Revision
			}
			if req.ID != 0 {
				results = append(results, pendingResult{req.ID, r})
			}
		case raftpb.EntryConfChange:
			cc := &raftpb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				txn.Abort()
				return fmt.Errorf("decode conf change at %d: %w", idx, err)
			}
			r, self, err := s.applyConfChange(cc, txn, idx <= applied)
			if err != nil {
				txn.Abort()
				return err
			}
			removedSelf = removedSelf || self
			if cc.GetId() != 0 {
				results = append(results, pendingResult{cc.GetId(), r})
			}
		}
	}
	revAfter := s.mv.Rev()
	if err := readEvents(); err != nil {
		txn.Abort()
		return err
	}
	// Never record an applied index ahead of the local log.
	if err := ap.WaitPersisted(); err != nil {
		txn.Abort()
		return err
	}
	if last > applied {
		start := time.Now()
		if err := s.mv.Commit(func() error { return txn.Commit(last, false) }); err != nil {
			return err
		}
		s.metrics.commitDuration.Observe(time.Since(start).Seconds())
	} else {
		txn.Abort()
	}
	if testHookBeforeNotify != nil && !withPrev {
		testHookBeforeNotify(s)
	}
	for rereads := 0; !s.hub.NotifyBatch(revBefore+1, revAfter, events, withPrev); rereads++ {
		// A watcher made while the batch applied needs events that were
		// not read, or their PrevKv: read them again from the committed
		// engine, with PrevKv if a watcher now asks for it (and in any case
		// the second time, so that this ends).
		_, withPrev = s.hub.Interest()
		withPrev = withPrev || rereads > 0
		var err error
		if events, err = s.readCommitted(revBefore+1, revAfter, withPrev); err != nil {
			// Advance moves the watchers to catch-up, which reads the
			// revisions from the history.
			s.lg.Warn("reading committed events for new watchers", zap.Error(err))
			s.hub.Advance(revAfter)
			break
		}
	}
	if compacted > 0 {
		s.schedulePhysicalCompaction(compacted)
	}
	for _, pr := range results {
		s.w.Trigger(pr.id, pr.r)
	}
	s.appliedWait.Trigger(s.store.Applied())
	if removedSelf {
		s.lg.Warn("this member was removed from the cluster; shutting down")
		if err := markRemoved(s.cfg.DataDir); err != nil {
			s.lg.Error("cannot record removal", zap.Error(err))
		}
		s.fail(ErrRemoved)
		return nil
	}
	s.maybeSnapshot()
	return nil
}

// applyRequest applies one client or internal request into txn's batch.
// A request etcd would refuse (a compacted revision, a missing lease, a
// full disk) gets its error in the result; an error returned means the
// engine failed and the member must stop.
func (s *Server) applyRequest(txn *kvstore.Txn, req *pb.InternalRaftRequest) (result, error) {
	ob := txn.Batch()
	var (
		resp proto.Message
		err  error
	)
	// One look at the alarms per entry, for both checks below.
	noSpace, corrupt := s.writeAlarms()
	if corrupt && (req.Put != nil || req.DeleteRange != nil || req.Txn != nil || req.Compaction != nil ||
		req.LeaseGrant != nil || req.LeaseRevoke != nil) {
		// Decided here, from the applied alarms, so that every member
		// refuses the same entries.
		return result{err: rpctypes.ErrGRPCCorrupt}, nil
	}
	switch {
	case req.Put != nil:
		if noSpace {
			return result{err: rpctypes.ErrGRPCNoSpace}, nil
		}
		w := s.mv.Write(ob)
		resp, err = w.Put(req.Put)
		w.End()
	case req.DeleteRange != nil:
		w := s.mv.Write(ob)
		resp, err = w.DeleteRange(req.DeleteRange)
		w.End()
	case req.Txn != nil:
		if noSpace && txnWrites(req.Txn, true) {
			return result{err: rpctypes.ErrGRPCNoSpace}, nil
		}
		if s.w.IsRegistered(req.ID) {
			resp, err = s.mv.Txn(ob, req.Txn)
		} else {
			// Nobody here waits for the answer: skip the reads.
			resp, err = s.mv.TxnSkipRanges(ob, req.Txn)
		}
	case req.Compaction != nil:
		resp, err = s.mv.Compact(ob, req.Compaction.Revision)
	case req.LeaseGrant != nil:
		if noSpace {
			return result{err: rpctypes.ErrGRPCNoSpace}, nil
		}
		var l *lease.Lease
		if l, err = s.lessor.Grant(ob, req.LeaseGrant.ID, req.LeaseGrant.TTL); err == nil {
			resp = &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: s.mv.Rev()}, ID: l.ID, TTL: l.TTL}
		}
	case req.LeaseRevoke != nil:
		var keys [][]byte
		if keys, err = s.lessor.Revoke(ob, req.LeaseRevoke.ID); err == nil {
			var rev int64
			if rev, err = s.mv.DeleteKeys(ob, keys); err == nil {
				resp = &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: rev}}
			}
		}
	case req.LeaseCheckpoint != nil:
		for _, cp := range req.LeaseCheckpoint.Checkpoints {
			// A lease revoked meanwhile has nothing to checkpoint.
			if cerr := s.lessor.Checkpoint(ob, cp.ID, cp.Remaining_TTL); cerr != nil && !errors.Is(cerr, lease.ErrLeaseNotFound) {
				return result{}, cerr
			}
		}
		resp = &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{Revision: s.mv.Rev()}}
	case req.Alarm != nil:
		resp = s.applyAlarm(txn, req.Alarm)
	case req.ClusterMemberAttrSet != nil:
		err = s.applyMemberAttrs(txn, req.ClusterMemberAttrSet)
	}
	if err != nil {
		if isRequestError(err) {
			return result{err: err}, nil
		}
		return result{}, err
	}
	return result{resp: resp}, nil
}

// isRequestError tells a request etcd refuses from an engine failure.
func isRequestError(err error) bool {
	for _, e := range []error{
		mvcc.ErrCompacted, mvcc.ErrFutureRev, mvcc.ErrKeyNotFound, mvcc.ErrLeaseNotFound,
		lease.ErrLeaseNotFound, lease.ErrLeaseExists, lease.ErrLeaseTTLTooLarge,
		ErrMemberNotFound,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	st, ok := status.FromError(err)
	return ok && st.Code() != codes.Unknown
}

// txnWrites reports whether a txn may write (puts only, with putsOnly).
func txnWrites(t *pb.TxnRequest, putsOnly bool) bool {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			switch {
			case op.GetRequestPut() != nil:
				return true
			case op.GetRequestDeleteRange() != nil && !putsOnly:
				return true
			case op.GetRequestTxn() != nil && txnWrites(op.GetRequestTxn(), putsOnly):
				return true
			}
		}
	}
	return false
}

// applyConfChange validates a committed membership change against the
// current membership, applies it to raft when valid and records it.
// A change that became invalid while it waited in the log (the same id
// added twice, say) is refused the same way on every member.
func (s *Server) applyConfChange(cc *raftpb.ConfChange, txn *kvstore.Txn, alreadyApplied bool) (r result, removedSelf bool, err error) {
	id := cc.GetNodeId()
	s.memMu.RLock()
	cur, isMember := s.members[id]
	loaded := cur
	wasRemoved := s.removed[id]
	s.memMu.RUnlock()

	var m kvstore.Member
	decode := func() bool {
		if err := json.Unmarshal(cc.GetContext(), &m); err != nil || m.ID != id {
			r.err = fmt.Errorf("%w: conf change for %d carries no valid member record", ErrBadMember, id)
			return false
		}
		return true
	}
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		if !decode() {
			break
		}
		promote := cc.GetType() == raftpb.ConfChangeAddNode && isMember && cur.IsLearner && !m.IsLearner
		switch {
		case wasRemoved:
			r.err = ErrIDRemoved
		case !promote && !alreadyApplied && s.peerURLTaken(m.PeerURL):
			// Checked here too, not only before proposing: two adds of one
			// URL may both pass that check (the second on a member that had
			// not applied the first yet, which also picks the same next id).
			r.err = fmt.Errorf("%w: %s", ErrPeerURLExists, m.PeerURL)
		case isMember && !promote && !alreadyApplied:
			r.err = ErrMemberExists
		}
		if promote {
			// Keep what the learner published about itself.
			cur.IsLearner = false
			m = cur
		}
	case raftpb.ConfChangeUpdateNode:
		if !decode() {
			break
		}
		if !isMember {
			r.err = ErrMemberNotFound
			break
		}
		cur.PeerURL = m.PeerURL
		m = cur
	case raftpb.ConfChangeRemoveNode:
		switch {
		case !isMember && !alreadyApplied:
			r.err = ErrMemberNotFound
		case s.lastVoter(id):
			// Raft panics on a configuration without voters. Committed
			// all the same (by two removals at once, or a build without
			// the proposal check), it is refused on every member alike.
			r.err = fmt.Errorf("%w: member %d is the last voting member", ErrNotEnoughStartedMembers, id)
		}
	default:
		r.err = fmt.Errorf("%w: unsupported conf change type %v", ErrBadMember, cc.GetType())
	}
	if r.err != nil {
		s.lg.Warn("refusing membership change", zap.Uint64("member", id), zap.Stringer("type", cc.GetType()), zap.Error(r.err))
		return r, false, nil
	}

	s.confState = s.node.ApplyConfChange(cc)
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode, raftpb.ConfChangeUpdateNode:
		if alreadyApplied && isMember {
			// Replayed after a restart: the record loaded from the engine
			// is the member as of the applied index, with the name and
			// client URLs it published since and any later update. The
			// change's own record would drop those, and a member without
			// a name counts as never started.
			m = loaded
		}
		if !alreadyApplied {
			if err := txn.PutMember(m); err != nil {
				return r, false, err
			}
		}
		s.memMu.Lock()
		s.members[id] = m
		if id == s.id {
			s.learner.Store(m.IsLearner)
		}
		s.memMu.Unlock()
		if id != s.id {
			if isMember {
				s.tr.UpdatePeer(id, m.PeerURL)
			} else {
				s.tr.AddPeer(id, m.PeerURL)
			}
		}
		s.lg.Info("member changed", zap.Uint64("member", id), zap.Stringer("change", cc.GetType()), zap.String("peer-url", m.PeerURL), zap.Bool("learner", m.IsLearner))
	case raftpb.ConfChangeRemoveNode:
		if !alreadyApplied {
			txn.RemoveMember(id)
		}
		s.memMu.Lock()
		delete(s.members, id)
		if id == s.id {
			s.learner.Store(false)
		}
		s.removed[id] = true
		s.memMu.Unlock()
		if id == s.id {
			return r, true, nil
		}
		s.tr.RemovePeer(id)
		s.lg.Info("member removed", zap.Uint64("member", id))
	}
	return r, false, nil
}

// lastVoter reports whether id is the only voter of the applied
// configuration.
func (s *Server) lastVoter(id uint64) bool {
	v := s.confState.GetVoters()
	return len(v) == 1 && v[0] == id
}

// peerURLTaken reports whether a member has peer URL u.
func (s *Server) peerURLTaken(u string) bool {
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	for _, m := range s.members {
		if m.PeerURL == u {
			return true
		}
	}
	return false
}

// installSnapshot replaces the state with the stream the transport saved for
// a snapshot received from the leader.
func (s *Server) installSnapshot(sn *raftpb.Snapshot) error {
	si := sn.GetMetadata().GetIndex()
	if si <= s.store.Applied() {
		s.lg.Info("snapshot is not newer than the applied state; skipping", zap.Uint64("snapshot-index", si), zap.Uint64("applied-index", s.store.Applied()))
		s.confState = sn.GetMetadata().GetConfState()
		return nil
	}
	// The engine is replaced and the key space reloaded in one Commit, so
	// that ranges at the current revision wait for both.
	err := s.mv.Commit(func() error {
		if err := s.restoreFromStateFile(si); err != nil {
			return err
		}
		return s.reloadState()
	})
	if err != nil {
		return err
	}
	s.logSinceState = 0
	s.lastIndex, s.lastTerm = si, sn.GetMetadata().GetTerm()
	s.confState = sn.GetMetadata().GetConfState()
	// Talk to exactly the members the snapshot knows.
	s.memMu.RLock()
	for id, m := range s.members {
		if id != s.id {
			s.tr.AddPeer(id, m.PeerURL)
		}
	}
	for id := range s.removed {
		s.tr.RemovePeer(id)
	}
	s.memMu.RUnlock()
	s.appliedWait.Trigger(s.store.Applied())
	return nil
}

// State-file pacing for engines that are not durable (see maybeSnapshot);
// variables so that tests can scale them down.
var (
	// maxLogSinceState bounds the WAL such a member keeps (and replays on
	// restart) beyond its newest state file.
	maxLogSinceState uint64 = 128 << 20
	// minDeferredState is the smallest state file whose rewrite is
	// deferred: a smaller state costs little to write, and is written at
	// every snapshot, as a durable engine is synced at every snapshot.
	minDeferredState uint64 = 16 << 20
)

// maybeSnapshot starts a snapshot when enough entries were applied since
// the last one. It runs on the apply goroutine; the work happens on another.
//
// A durable engine is synced and the snapshot recorded on disk, as etcd
// does. An engine that is not durable (memory) is durable only through a
// state file, which holds its whole state: writing one every SnapshotCount
// entries would cost, per entry, the state's size divided by SnapshotCount
// (30 KB a put with 1M keys). So once its state file is larger than
// minDeferredState, such a member writes the next one (and a snapshot on
// disk, and lets the WAL before it go) only when the entries applied since
// the last one add up to the last file's size, or to maxLogSinceState: the
// WAL it keeps is then at most about as large as its state. In between,
// the snapshot only compacts raft's in-memory log, which bounds memory as
// etcd's snapshot count does; a follower that needs what was compacted gets
// the live state streamed, as from any engine.
func (s *Server) maybeSnapshot() {
	applied := s.store.Applied()
	if applied-s.node.SnapshotIndex() < s.cfg.SnapshotCount || !s.snapshotting.CompareAndSwap(false, true) {
		return
	}
	cs := proto.Clone(s.confState).(*raftpb.ConfState)
	durable := s.store.Engine().Durable()
	var view *kvstore.View
	size := uint64(s.stateSize.Load())
	// A failed state file is written again one snapshot count later (the
	// snapshot counts in between compact raft's log in memory).
	retry := false
	if f := s.stateFailedAt.Load(); !durable && f != 0 && applied >= f+s.cfg.SnapshotCount {
		retry = true
		s.stateFailedAt.Store(0)
	}
	writeState := !durable && (retry || size < minDeferredState || s.logSinceState >= min(size, maxLogSinceState))
	if writeState {
		// Take the view now, at exactly this applied index.
		v, err := s.store.View()
		if err != nil {
			s.lg.Error("cannot open view for snapshot", zap.Error(err))
			s.snapshotting.Store(false)
			return
		}
		view = v
		s.logSinceState = 0
	}
	s.snapshotWG.Add(1)
	go func() {
		defer s.snapshotWG.Done()
		defer s.snapshotting.Store(false)
		if err := s.snapshot(applied, cs, durable, view); err != nil {
			if view != nil {
				s.stateFailedAt.Store(applied)
			}
			s.lg.Error("snapshot failed", zap.Uint64("index", applied), zap.Error(err))
		}
	}()
}

// snapshot records a snapshot at index: on disk after syncing a durable
// engine or writing view's state file; only in raft's memory when the
// engine is not durable and there is no view.
func (s *Server) snapshot(index uint64, cs *raftpb.ConfState, durable bool, view *kvstore.View) error {
	switch {
	case view != nil:
		defer view.Close()
		if err := s.saveStateFile(view); err != nil {
			return err
		}
		index = view.Applied()
	case durable:
		if err := s.store.Sync(); err != nil {
			return fmt.Errorf("sync engine before snapshot: %w", err)
		}
	default:
		if err := s.node.CompactLog(index, cs, snapshotData, s.cfg.CatchUpEntries); err != nil {
			return err
		}
		s.lg.Debug("raft log compacted in memory; state file not due", zap.Uint64("index", index))
		return nil
	}
	if err := s.node.Snapshot(index, cs, snapshotData, s.cfg.CatchUpEntries); err != nil {
		return err
	}
	s.lg.Info("snapshot saved; raft log compacted", zap.Uint64("index", index), zap.Uint64("kept-entries", s.cfg.CatchUpEntries))
	return nil
}

// sendSnapshot asks the apply goroutine to stream the current state to a
// follower that needs it. Called on the raft goroutine; must not block.
func (s *Server) sendSnapshot(m *raftpb.Message) {
	select {
	case s.snapc <- m:
	default:
		// One is being prepared already; raft asks again after a failure.
		s.node.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
	}
}

// startSnapshotSend runs on the apply goroutine, where the applied index,
// its term and the configuration are known together. Like etcd, it sends
// the state as of now rather than as of raft's stored snapshot, and rewrites
// the message's metadata to match: the stored snapshot may predate a
// membership change that added the very follower it goes to, and raft
// refuses a snapshot whose configuration does not include its receiver.
func (s *Server) startSnapshotSend(m *raftpb.Message) {
	fail := func(msg string, err error) {
		s.lg.Warn(msg, zap.Uint64("to", m.GetTo()), zap.Error(err))
		s.node.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
	}
	view, err := s.store.View()
	if err != nil {
		fail("cannot open view to send snapshot", err)
		return
	}
	if view.Applied() != s.lastIndex || s.lastTerm == 0 {
		view.Close()
		fail("applied state not settled yet; snapshot send deferred", fmt.Errorf("applied %d, last seen entry %d", view.Applied(), s.lastIndex))
		return
	}
	m = proto.Clone(m).(*raftpb.Message)
	m.Snapshot = &raftpb.Snapshot{
		Metadata: &raftpb.SnapshotMetadata{
			Index:     proto.Uint64(view.Applied()),
			Term:      proto.Uint64(s.lastTerm),
			ConfState: proto.Clone(s.confState).(*raftpb.ConfState),
		},
		Data: snapshotData,
	}
	s.snapshotWG.Add(1)
	go func() {
		defer s.snapshotWG.Done()
		// snap.NewMessage wants the stream's exact length, to fail a short
		// stream, and knowing it would take a whole extra pass over the
		// engine. The stream checks itself (a trailer with its record count
		// and a checksum of everything, verified by the receiver before
		// raft sees the message), so the message reads the pipe as it is
		// and the engine's size stands in for the length in rafthttp's log
		// and metrics, its only other use.
		var estimate int64
		if st, err := s.store.Stats(); err == nil {
			estimate = max(st.LiveBytes, st.DiskBytes)
		}
		pr, pw := statePipe()
		var sent atomic.Int64
		go func() {
			defer view.Close()
			n, err := view.WriteTo(pw)
			sent.Store(n)
			pw.CloseWithError(err)
		}()
		msg := snap.NewMessage(m, pr, estimate)
		msg.ReadCloser = pr
		index := m.GetSnapshot().GetMetadata().GetIndex()
		s.lg.Info("sending snapshot", zap.Uint64("to", m.GetTo()), zap.Uint64("index", index), zap.Int64("estimated-bytes", estimate))
		s.tr.SendSnapshot(msg)
		select {
		case ok := <-msg.CloseNotify():
			s.lg.Info("snapshot stream ended", zap.Uint64("to", m.GetTo()), zap.Uint64("index", index), zap.Bool("sent", ok), zap.Int64("bytes", sent.Load()))
		case <-s.stopc:
		}
	}()
}

// statePipe carries a state stream from the goroutine that serializes a
// view to the one that sends or saves it. The serializer runs up to 8 MiB
// ahead, so the engine's scan overlaps with the socket or file writes
// instead of taking turns with them as through io.Pipe.
func statePipe() (*pipe.Reader, *pipe.Writer) { return pipe.New(8, 1<<20) }

// saveStateFile writes view's state stream as the state file of the
// snapshot at its applied index, and records its size.
func (s *Server) saveStateFile(view *kvstore.View) error {
	pr, pw := statePipe()
	written := make(chan struct{})
	go func() {
		defer close(written)
		_, err := view.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	n, err := s.disk.SaveStateFrom(pr, view.Applied())
	pr.CloseWithError(err)
	<-written
	if err != nil {
		return err
	}
	s.stateSize.Store(n)
	return nil
}
