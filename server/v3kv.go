package server

import (
	"context"
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/overlay"
	"github.com/metcd/metcd/watch"
)

// Version is the etcd API version metcd implements, reported by Status
// and the Snapshot stream.
const Version = "3.7.3"

// StorageVersion is the storage schema version reported next to Version
// by Status and the Snapshot stream. etcd reports its schema as the
// major.minor of its release with patch 0; metcd follows it so the two
// read the same in etcdctl endpoint status.
const StorageVersion = "3.7.0"

// ClusterVersion is the cluster version metcd reports where etcd reports
// its own (/version's etcdcluster; etcd_cluster_version gives its
// major.minor). Every member of a metcd cluster runs one version.
const ClusterVersion = "3.7.0"

// defaultQuotaBytes is etcd's default --quota-backend-bytes.
const defaultQuotaBytes = 2 << 30

// Header is a response header at the committed revision.
func (s *Server) Header() *pb.ResponseHeader {
	return s.fill(nil)
}

// fill completes a header the state machine started (it sets only the
// revision); a nil header gets the committed revision.
func (s *Server) fill(h *pb.ResponseHeader) *pb.ResponseHeader {
	if h == nil {
		h = &pb.ResponseHeader{Revision: s.mv.CommittedRev()}
	}
	h.ClusterId = s.clusterID
	h.MemberId = s.id
	h.RaftTerm = s.node.Term()
	return h
}

// HasLeader reports whether a leader is known.
func (s *Server) HasLeader() bool { return s.node.Leader() != 0 }

// IsLearner reports whether this member is a learner; learners serve only
// serializable reads and status, as in etcd. It is read on every gRPC
// request, so it is an atomic, not a look-up under memMu.
func (s *Server) IsLearner() bool { return s.learner.Load() }

// Range reads keys. A linearizable range first waits for a ReadIndex round
// (shared with every read that arrived before it).
func (s *Server) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if !r.Serializable {
		if s.IsLearner() {
			return nil, rpctypes.ErrGRPCNotSupportedForLearner
		}
		if err := s.LinearizableRead(ctx); err != nil {
			return nil, err
		}
	}
	var resp *pb.RangeResponse
	err := s.readEngine(func(rd storage.Reader) (err error) {
		resp, err = s.mv.RangeCommitted(rd, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.fill(resp.Header)
	return resp, nil
}

// Put writes a key through raft.
func (s *Server) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return s.put(ctx, r, s.cfg.MaxRequestBytes)
}

// put proposes r as an entry of at most limit bytes.
func (s *Server) put(ctx context.Context, r *pb.PutRequest, limit int) (*pb.PutResponse, error) {
	if err := s.checkQuota(proto.Size(r)); err != nil {
		return nil, err
	}
	resp, err := s.proposeLimited(ctx, &pb.InternalRaftRequest{Put: r}, limit)
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.PutResponse)
	s.fill(out.Header)
	return out, nil
}

// DeleteRange deletes keys through raft.
func (s *Server) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp, err := s.proposeInternal(ctx, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.DeleteRangeResponse)
	s.fill(out.Header)
	return out, nil
}

// Txn runs a transaction. One whose operations are all ranges is served
// locally after a ReadIndex round (or at once when all of them are
// serializable), as etcd does; the others, nested txns included, go
// through raft.
func (s *Server) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if txnRangesOnly(r) {
		return s.readOnlyTxn(ctx, r)
	}
	if txnWrites(r, true) {
		if err := s.checkQuota(proto.Size(r)); err != nil {
			return nil, err
		}
	}
	resp, err := s.proposeInternal(ctx, &pb.InternalRaftRequest{Txn: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.TxnResponse)
	s.fill(out.Header)
	return out, nil
}

func (s *Server) readOnlyTxn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if !txnSerializable(r) {
		if s.IsLearner() {
			return nil, rpctypes.ErrGRPCNotSupportedForLearner
		}
		if err := s.LinearizableRead(ctx); err != nil {
			return nil, err
		}
	}
	var resp *pb.TxnResponse
	err := s.store.Read(func(eng storage.Engine) error {
		// A snapshot: every compare and range of the txn sees one state.
		snap, err := eng.NewSnapshot()
		if err != nil {
			return err
		}
		defer snap.Close()
		resp, err = s.mv.Txn(overlay.New(snap), r)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.fill(resp.Header)
	return resp, nil
}

// txnRangesOnly is etcd's IsTxnReadonly: every operation of both branches
// is a range (a nested txn is not, even one that only reads).
func txnRangesOnly(t *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			if op.GetRequestRange() == nil {
				return false
			}
		}
	}
	return true
}

// txnSerializable is etcd's IsTxnSerializable: every operation of both
// branches is a serializable range. Like etcd, a txn with compares and no
// operations counts as serializable.
func txnSerializable(t *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			if rr := op.GetRequestRange(); rr == nil || !rr.Serializable {
				return false
			}
		}
	}
	return true
}

// Compact compacts the key space's history. With physical set it returns
// once the history below the revision is removed from the engine.
func (s *Server) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := s.proposeInternal(ctx, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.CompactionResponse)
	if r.Physical {
		select {
		case <-s.compactedWait.Wait(uint64(r.Revision)):
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.stopc:
			return nil, ErrStopped
		}
	}
	s.fill(out.Header)
	return out, nil
}

// Watch creates a watcher with its own channel on this member's hub.
func (s *Server) Watch(r *pb.WatchCreateRequest) (*watch.Watcher, error) { return s.hub.Watch(r) }

// WatchStream returns a new stream of this member's hub: the watchers of
// one gRPC Watch call.
func (s *Server) WatchStream() *watch.Stream { return s.hub.NewStream() }

// proposeInternal replicates a request and returns the state machine's
// response once it is applied here.
func (s *Server) proposeInternal(ctx context.Context, r *pb.InternalRaftRequest) (proto.Message, error) {
	return s.proposeLimited(ctx, r, s.cfg.MaxRequestBytes)
}

// proposeLimited is proposeInternal with an entry size limit of its own.
func (s *Server) proposeLimited(ctx context.Context, r *pb.InternalRaftRequest, limit int) (proto.Message, error) {
	if s.IsLearner() {
		return nil, rpctypes.ErrGRPCNotSupportedForLearner
	}
	return s.proposeAny(ctx, r, limit)
}

// proposeInternalAny is proposeInternal without the learner check, for a
// member's requests about itself.
func (s *Server) proposeInternalAny(ctx context.Context, r *pb.InternalRaftRequest) (proto.Message, error) {
	return s.proposeAny(ctx, r, s.cfg.MaxRequestBytes)
}

func (s *Server) proposeAny(ctx context.Context, r *pb.InternalRaftRequest, limit int) (proto.Message, error) {
	r.ID = s.reqIDs.Next()
	data, err := encodeRequest(r)
	if err != nil {
		return nil, err
	}
	if limit > 0 && len(data) > limit {
		return nil, rpctypes.ErrGRPCRequestTooLarge
	}
	// Counted as etcd counts its requests' proposals (membership changes
	// are not): pending once raft has taken the entry, until it applies or
	// the wait ends; failed when it did not apply (a timeout, a lost or
	// missing leader). An entry that applied and was refused did not
	// fail; stopping is neither.
	taken := false
	res, err := s.propose(ctx, r.ID, func(pctx context.Context) error {
		err := s.node.Propose(pctx, data)
		if taken = err == nil; taken {
			s.metrics.proposalsPending.Add(1)
		}
		return err
	})
	if taken {
		s.metrics.proposalsPending.Add(-1)
	}
	if err != nil {
		if res.err == nil && !errors.Is(err, ErrStopped) {
			s.metrics.proposalsFailed.Add(1)
		}
		return nil, err
	}
	return res.resp, nil
}

// checkQuota refuses a write that would grow the engine past the quota,
// and raises the NOSPACE alarm then. A write under a raised alarm is
// refused at apply, as in etcd, not here: this member may not have applied
// a disarm that the client already saw acknowledged by another member.
func (s *Server) checkQuota(cost int) error {
	if s.cfg.QuotaBackendBytes < 0 {
		return nil
	}
	quota := s.quota()
	size := s.cachedInUse()
	if size+int64(cost) > quota {
		// Only an answer under the quota may come from the cache: space
		// may have been freed (compaction, alarm disarm) since.
		size = s.engineInUse()
		s.inUse.Store(size)
	}
	if size+int64(cost) <= quota {
		return nil
	}
	s.lg.Warn("storage quota exceeded; raising the NOSPACE alarm", zap.Int64("size", size), zap.Int64("quota", quota))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		defer cancel()
		_, err := s.proposeInternal(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
			Action: pb.AlarmRequest_ACTIVATE, MemberID: s.id, Alarm: pb.AlarmType_NOSPACE,
		}})
		if err != nil {
			s.lg.Warn("cannot raise the NOSPACE alarm", zap.Error(err))
		}
	}()
	return rpctypes.ErrGRPCNoSpace
}

// engineSize is the size of the engine's files; engineInUse the size of
// its live data where the engine knows it (memory, pebble), which is what
// the quota is checked against, so that compaction frees quota.
func (s *Server) engineSize() int64 {
	st, err := s.store.Stats()
	if err != nil {
		return 0
	}
	if st.DiskBytes > 0 {
		return st.DiskBytes
	}
	return st.LiveBytes
}

// quotaRefresh bounds how often a write measures the engine: pebble's
// metrics are too much work for every put.
const quotaRefresh = 100 * time.Millisecond

// cachedInUse is engineInUse measured at most every quotaRefresh, by one
// write at a time: the writes that arrive while it is being measured use
// the previous figure instead of measuring it too.
func (s *Server) cachedInUse() int64 {
	now := time.Now().UnixNano()
	at := s.sizeAt.Load()
	if now-at < int64(quotaRefresh) {
		return s.inUse.Load()
	}
	if at != 0 && !s.sizeAt.CompareAndSwap(at, now) {
		return s.inUse.Load() // another write is measuring it
	}
	n := s.engineInUse()
	s.inUse.Store(n)
	s.sizeAt.Store(now)
	return n
}

func (s *Server) engineInUse() int64 {
	n, err := s.store.InUse()
	if err != nil {
		return 0
	}
	return n
}

func (s *Server) quota() int64 {
	if s.cfg.QuotaBackendBytes == 0 {
		return defaultQuotaBytes
	}
	return s.cfg.QuotaBackendBytes
}
