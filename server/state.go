package server

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/kvstore"
	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/mvcc"
	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/watch"
)

// openState opens the state machines that share the engine: the MVCC key
// space, the lessor and the watch hub over them.
func (s *Server) openState() error {
	eng := s.store.Engine()
	var err error
	s.lessor, err = lease.New(eng, lease.Options{
		MinTTL:             lease.MinTTLFor(int(s.cfg.ElectionTimeout/s.cfg.HeartbeatInterval), s.cfg.HeartbeatInterval),
		CheckpointInterval: leaseCheckpointInterval,
	})
	if err != nil {
		return fmt.Errorf("open leases: %w", err)
	}
	s.mv, err = mvcc.Open(eng, mvcc.Options{LeaseExists: s.lessor.Exists, Leases: s.lessor})
	if err != nil {
		return fmt.Errorf("open key space: %w", err)
	}
	if err := s.loadAlarms(); err != nil {
		return err
	}
	s.hub = watch.NewHub(mvcc.WatchHistory{Store: s.mv, Read: s.readEngine}, s.mv.Rev(), watch.Options{})
	if s.mv.PhysicalRev() < s.mv.CompactRev() {
		// A physical compaction was interrupted: finish it.
		s.schedulePhysicalCompaction(s.mv.CompactRev())
	}
	return nil
}

// readEngine calls fn with the current engine, held open.
func (s *Server) readEngine(fn func(r storage.Reader) error) error {
	return s.store.Read(func(eng storage.Engine) error { return fn(eng) })
}

// keyCount is the number of live keys, as the engine holds it.
func (s *Server) keyCount() (n int64, err error) {
	err = s.readEngine(func(r storage.Reader) (err error) {
		n, err = mvcc.Keys(r)
		return err
	})
	return n, err
}

// reloadState re-reads everything from the engine after a snapshot was
// installed into a new one.
func (s *Server) reloadState() error {
	if err := s.loadMembers(); err != nil {
		return err
	}
	eng := s.store.Engine()
	if err := s.lessor.Reload(eng); err != nil {
		return fmt.Errorf("reload leases: %w", err)
	}
	if err := s.mv.Reload(eng); err != nil {
		return fmt.Errorf("reload key space: %w", err)
	}
	if err := s.loadAlarms(); err != nil {
		return err
	}
	s.hub.Advance(s.mv.Rev())
	// A physical compaction waited on may have ended with the engine this
	// one replaced: the new engine's own is done up to PhysicalRev.
	s.compactedWait.Trigger(uint64(s.mv.PhysicalRev()))
	if s.mv.PhysicalRev() < s.mv.CompactRev() {
		s.schedulePhysicalCompaction(s.mv.CompactRev())
	}
	return nil
}

// alarmSet is the cache of raised alarms; the apply goroutine writes it.
type alarmSet struct {
	mu     sync.RWMutex
	alarms []kvstore.Alarm
}

func (s *Server) loadAlarms() error {
	as, err := s.store.Alarms()
	if err != nil {
		return fmt.Errorf("load alarms: %w", err)
	}
	s.alarms.mu.Lock()
	s.alarms.alarms = as
	s.alarms.mu.Unlock()
	return nil
}

// writeAlarms reports, in one pass over the raised alarms, the two that
// refuse writes: NOSPACE (writes that add data) and CORRUPT (every request
// that goes through raft to change the key space or the leases, as etcd
// does, until the alarm is disarmed).
func (s *Server) writeAlarms() (noSpace, corrupt bool) {
	s.alarms.mu.RLock()
	defer s.alarms.mu.RUnlock()
	for _, a := range s.alarms.alarms {
		noSpace = noSpace || a.Type == int32(pb.AlarmType_NOSPACE)
		corrupt = corrupt || a.Type == int32(pb.AlarmType_CORRUPT)
	}
	return noSpace, corrupt
}

func (s *Server) alarmList() []*pb.AlarmMember {
	s.alarms.mu.RLock()
	defer s.alarms.mu.RUnlock()
	out := make([]*pb.AlarmMember, 0, len(s.alarms.alarms))
	for _, a := range s.alarms.alarms {
		out = append(out, &pb.AlarmMember{MemberID: a.MemberID, Alarm: pb.AlarmType(a.Type)})
	}
	return out
}

// applyAlarm raises or clears an alarm. Like etcd, a response lists the
// alarm raised (or already raised) or cleared, and nothing when there was
// none to clear.
func (s *Server) applyAlarm(txn *kvstore.Txn, r *pb.AlarmRequest) proto.Message {
	resp := &pb.AlarmResponse{Header: &pb.ResponseHeader{Revision: s.mv.Rev()}}
	a := kvstore.Alarm{MemberID: r.MemberID, Type: int32(r.Alarm)}
	s.alarms.mu.Lock()
	defer s.alarms.mu.Unlock()
	i := slices.Index(s.alarms.alarms, a)
	switch r.Action {
	case pb.AlarmRequest_ACTIVATE:
		if r.Alarm == pb.AlarmType_NONE {
			return resp
		}
		if i >= 0 {
			resp.Alarms = []*pb.AlarmMember{{MemberID: a.MemberID, Alarm: r.Alarm}}
			return resp
		}
		txn.SetAlarm(a, true)
		s.alarms.alarms = append(s.alarms.alarms, a)
		s.lg.Warn("alarm raised", zap.Uint64("member", a.MemberID), zap.Stringer("alarm", r.Alarm))
	case pb.AlarmRequest_DEACTIVATE:
		if i < 0 {
			return resp
		}
		txn.SetAlarm(a, false)
		s.alarms.alarms = slices.Delete(s.alarms.alarms, i, i+1)
		s.lg.Info("alarm cleared", zap.Uint64("member", a.MemberID), zap.Stringer("alarm", r.Alarm))
	default:
		return resp
	}
	resp.Alarms = []*pb.AlarmMember{{MemberID: a.MemberID, Alarm: r.Alarm}}
	return resp
}

// applyMemberAttrs records the name and client URLs a member published.
func (s *Server) applyMemberAttrs(txn *kvstore.Txn, r *membershippb.ClusterMemberAttrSetRequest) error {
	s.memMu.Lock()
	m, ok := s.members[r.Member_ID]
	if !ok {
		s.memMu.Unlock()
		return ErrMemberNotFound
	}
	m.Name = r.GetMemberAttributes().GetName()
	m.ClientURLs = slices.Clone(r.GetMemberAttributes().GetClientUrls())
	s.members[r.Member_ID] = m
	s.memMu.Unlock()
	return txn.PutMember(m)
}

// schedulePhysicalCompaction hands a committed compaction to the
// compactor goroutine, which removes the history below it in batches.
func (s *Server) schedulePhysicalCompaction(rev int64) {
	select {
	case s.compactc <- rev:
	default:
		// One is queued; the compactor always takes the newest revision.
		select {
		case <-s.compactc:
		default:
		}
		s.compactc <- rev
	}
}

func (s *Server) compactLoop() {
	for {
		var rev int64
		select {
		case rev = <-s.compactc:
		case <-s.stopc:
			return
		}
		err := s.physicalCompact(rev)
		switch {
		case errors.Is(err, ErrStopped):
			return
		case errors.Is(err, errEngineReplaced):
			// reloadState scheduled the rest, if the new engine needs it.
			s.lg.Info("physical compaction left for the installed snapshot's engine", zap.Int64("revision", rev))
			continue
		case err != nil:
			s.lg.Error("physical compaction failed", zap.Int64("revision", rev), zap.Error(err))
			continue
		}
		s.compactedWait.Trigger(uint64(rev))
	}
}

var errEngineReplaced = errors.New("engine replaced by a snapshot")

// physicalCompact removes the history below rev batch by batch, pausing
// between batches with the engine let go, as etcd's compactor sleeps
// between its batches: a compaction over a long history otherwise takes
// the engine from the apply loop for seconds (one client's writes fell
// from about 520 to 12-58 a second during one over 500k records; with the
// pauses, 310-330), and held the store against a snapshot install, and
// the reads queued behind it, throughout.
func (s *Server) physicalCompact(rev int64) error {
	eng, release := s.store.Hold()
	defer func() { release() }()
	pause := func() error {
		release()
		release = func() {}
		if d := s.cfg.CompactionSleepInterval; d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.stopc:
				return ErrStopped
			}
		} else {
			select {
			case <-s.stopc:
				return ErrStopped
			default:
			}
		}
		e, r := s.store.Hold()
		if e != eng {
			r()
			return errEngineReplaced
		}
		release = r
		return nil
	}
	return s.mv.PhysicalCompact(eng, rev, s.cfg.CompactionBatchLimit, pause)
}
