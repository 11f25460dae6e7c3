package server

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/metcd/metcd/consensus"
	"github.com/metcd/metcd/kvstore"
	"go.etcd.io/etcd/server/v3/etcdserver/api/snap"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// snapshotData marks raft snapshots made by this version; the state itself
// travels and rests as a separate stream (kvstore's snapshot format).
var snapshotData = []byte("metcd-state-v1")

// result is what a waiting request receives from the apply goroutine.
type result struct {
	existed bool  // for deletes
	err     error // for membership changes
}

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
	var (
		results     []pendingResult
		last        uint64
		removedSelf bool
	)
	for _, e := range ap.Entries {
		idx := e.GetIndex()
		last = idx
		s.lastIndex, s.lastTerm = idx, e.GetTerm()
		switch e.GetType() {
		case raftpb.EntryNormal:
			if idx <= applied || len(e.GetData()) == 0 {
				continue
			}
			var req kvstore.Request
			if err := req.Unmarshal(e.GetData()); err != nil {
				// Every member skips the same bad entry, so state stays equal.
				s.lg.Error("skipping undecodable entry", zap.Uint64("index", idx), zap.Error(err))
				continue
			}
			var r result
			if r.err = kvstore.ValidateKey(req.Key); r.err != nil {
				results = append(results, pendingResult{req.ID, r})
				continue
			}
			switch req.Op {
			case kvstore.OpPut:
				if err := txn.Put(req.Key, req.Value); err != nil {
					txn.Abort()
					return err
				}
			case kvstore.OpDelete:
				existed, err := txn.Delete(req.Key)
				if err != nil {
					txn.Abort()
					return err
				}
				r.existed = existed
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
	// Never record an applied index ahead of the local log.
	if err := ap.WaitPersisted(); err != nil {
		txn.Abort()
		return err
	}
	if last > applied {
		if err := txn.Commit(last, false); err != nil {
			return err
		}
	} else {
		txn.Abort()
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

// applyConfChange validates a committed membership change against the
// current membership, applies it to raft when valid and records it.
// A change that became invalid while it waited in the log (the same id
// added twice, say) is refused the same way on every member.
func (s *Server) applyConfChange(cc *raftpb.ConfChange, txn *kvstore.Txn, alreadyApplied bool) (r result, removedSelf bool, err error) {
	id := cc.GetNodeId()
	s.memMu.RLock()
	_, isMember := s.members[id]
	wasRemoved := s.removed[id]
	s.memMu.RUnlock()

	var m kvstore.Member
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode:
		if err := json.Unmarshal(cc.GetContext(), &m); err != nil || m.ID != id {
			r.err = fmt.Errorf("%w: conf change for %d carries no valid member record", ErrBadMember, id)
		} else if wasRemoved {
			r.err = ErrIDRemoved
		} else if isMember && !alreadyApplied {
			r.err = ErrMemberExists
		}
	case raftpb.ConfChangeRemoveNode:
		if !isMember && !alreadyApplied {
			r.err = ErrMemberNotFound
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
	case raftpb.ConfChangeAddNode:
		if !alreadyApplied {
			if err := txn.AddMember(m); err != nil {
				return r, false, err
			}
		}
		s.memMu.Lock()
		s.members[id] = m
		s.memMu.Unlock()
		if id != s.id {
			s.tr.AddPeer(id, m.PeerURL)
		}
		s.lg.Info("member added", zap.Uint64("member", id), zap.String("peer-url", m.PeerURL))
	case raftpb.ConfChangeRemoveNode:
		if !alreadyApplied {
			txn.RemoveMember(id)
		}
		s.memMu.Lock()
		delete(s.members, id)
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

// installSnapshot replaces the state with the stream the transport saved for
// a snapshot received from the leader.
func (s *Server) installSnapshot(sn *raftpb.Snapshot) error {
	si := sn.GetMetadata().GetIndex()
	if si <= s.store.Applied() {
		s.lg.Info("snapshot is not newer than the applied state; skipping", zap.Uint64("snapshot-index", si), zap.Uint64("applied-index", s.store.Applied()))
		s.confState = sn.GetMetadata().GetConfState()
		return nil
	}
	if err := s.restoreFromStateFile(si); err != nil {
		return err
	}
	s.lastIndex, s.lastTerm = si, sn.GetMetadata().GetTerm()
	s.confState = sn.GetMetadata().GetConfState()
	if err := s.loadMembers(); err != nil {
		return err
	}
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

// maybeSnapshot starts a snapshot when enough entries were applied since
// the last one. It runs on the apply goroutine; the work happens on another.
func (s *Server) maybeSnapshot() {
	applied := s.store.Applied()
	if applied-s.node.SnapshotIndex() < s.cfg.SnapshotCount || !s.snapshotting.CompareAndSwap(false, true) {
		return
	}
	cs := proto.Clone(s.confState).(*raftpb.ConfState)
	durable := s.store.Engine().Durable()
	var view *kvstore.View
	if !durable {
		// A memory engine is durable only through the state file: take the
		// view now, at exactly this applied index.
		v, err := s.store.View()
		if err != nil {
			s.lg.Error("cannot open view for snapshot", zap.Error(err))
			s.snapshotting.Store(false)
			return
		}
		view = v
	}
	s.snapshotWG.Add(1)
	go func() {
		defer s.snapshotWG.Done()
		defer s.snapshotting.Store(false)
		if err := s.snapshot(applied, cs, view); err != nil {
			s.lg.Error("snapshot failed", zap.Uint64("index", applied), zap.Error(err))
		}
	}()
}

func (s *Server) snapshot(index uint64, cs *raftpb.ConfState, view *kvstore.View) error {
	if view != nil {
		defer view.Close()
		pr, pw := io.Pipe()
		written := make(chan struct{})
		go func() {
			defer close(written)
			_, err := view.WriteTo(pw)
			pw.CloseWithError(err)
		}()
		_, err := s.disk.SaveStateFrom(pr, view.Applied())
		pr.CloseWithError(err)
		<-written
		if err != nil {
			return err
		}
		index = view.Applied()
	} else if err := s.store.Sync(); err != nil {
		return fmt.Errorf("sync engine before snapshot: %w", err)
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
		size, err := view.Size()
		if err != nil {
			view.Close()
			fail("cannot size snapshot", err)
			return
		}
		pr, pw := io.Pipe()
		go func() {
			defer view.Close()
			_, err := view.WriteTo(pw)
			pw.CloseWithError(err)
		}()
		msg := snap.NewMessage(m, pr, size)
		s.lg.Info("sending snapshot", zap.Uint64("to", m.GetTo()), zap.Uint64("index", m.GetSnapshot().GetMetadata().GetIndex()), zap.Int64("bytes", size))
		s.tr.SendSnapshot(msg)
		select {
		case <-msg.CloseNotify():
		case <-s.stopc:
		}
	}()
}
