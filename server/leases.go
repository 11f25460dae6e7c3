package server

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.uber.org/zap"

	"github.com/metcd/metcd/lease"
)

const (
	// leaseCheckpointInterval: every so often the leader replicates the
	// remaining TTL of long leases, so a new leader does not give them a
	// full TTL again (etcd's lease checkpoints, enabled here).
	leaseCheckpointInterval = 5 * time.Minute
	// leaseTick is how often the leader looks for expired leases (etcd:
	// 500ms, which makes the lessor's revoke rate a per-second one).
	leaseTick = 500 * time.Millisecond
	// revokeWorkers bounds the revokes in flight at once.
	revokeWorkers = 16
)

func (s *Server) isLeader() bool { return s.node.Role() == raft.StateLeader }

// LeaseGrant grants a lease; id 0 asks the server to choose one.
func (s *Server) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.ID == 0 {
		// Positive, and unique: the generator is prefixed by the member id.
		r = &pb.LeaseGrantRequest{TTL: r.TTL, ID: int64(s.reqIDs.Next() & (1<<63 - 1))}
	}
	if r.TTL > lease.MaxLeaseTTL {
		return nil, lease.ErrLeaseTTLTooLarge
	}
	if err := s.checkQuota(0); err != nil {
		return nil, err
	}
	resp, err := s.proposeInternal(ctx, &pb.InternalRaftRequest{LeaseGrant: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.LeaseGrantResponse)
	s.fill(out.Header)
	return out, nil
}

// LeaseRevoke revokes a lease and deletes its keys.
func (s *Server) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := s.proposeInternal(ctx, &pb.InternalRaftRequest{LeaseRevoke: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.LeaseRevokeResponse)
	s.fill(out.Header)
	return out, nil
}

// LeaseRenew is one keepalive: it renews the lease on the leader,
// forwarding to it from a follower, and returns the TTL.
func (s *Server) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	if s.IsLearner() {
		return 0, rpctypes.ErrGRPCNotSupportedForLearner
	}
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	for {
		if err := s.waitLeader(deadline); err != nil {
			return 0, err
		}
		var (
			ttl int64
			err error
		)
		if s.isLeader() {
			ttl, err = s.renewHere(ctx, id)
		} else {
			var resp pb.LeaseKeepAliveResponse
			if err = s.forward(ctx, s.node.Leader(), pathRenew, &pb.LeaseKeepAliveRequest{ID: id}, &resp); err == nil {
				ttl = resp.TTL
			}
		}
		if !retryAtNextLeader(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return ttl, err
		}
		s.waitLeaderChange(ctx, deadline)
	}
}

// retryAtNextLeader: the leader changed between asking and answering, so
// a call that only a leader answers (lease calls, promotions) is asked
// again of the next one.
func retryAtNextLeader(err error) bool {
	return errors.Is(err, lease.ErrNotPrimary) || errors.Is(err, ErrNoLeader) ||
		(err != nil && err.Error() == rpctypes.ErrGRPCNotLeader.Error())
}

func (s *Server) waitLeaderChange(ctx context.Context, deadline time.Time) {
	t := time.NewTimer(min(time.Until(deadline), s.cfg.HeartbeatInterval*5))
	defer t.Stop()
	select {
	case <-s.node.LeaderChanged():
	case <-t.C:
	case <-ctx.Done():
	case <-s.stopc:
	}
}

// renewHere renews on this member, which must be the leader. A lease it
// does not know may be one granted just before it became leader and not
// applied here yet: it catches up once and asks again.
func (s *Server) renewHere(ctx context.Context, id int64) (int64, error) {
	ttl, err := s.lessor.Renew(id)
	if errors.Is(err, lease.ErrLeaseNotFound) && !s.lessor.Exists(id) {
		if rerr := s.LinearizableRead(ctx); rerr == nil {
			ttl, err = s.lessor.Renew(id)
		}
	}
	// An expired lease whose revoke is on its way through raft: answer
	// once the revoke is applied, as etcd does, so that a client told the
	// lease is gone finds its keys gone too. A leader that loses its
	// quorum steps down, which ends the wait; the request timeout bounds
	// it in any case.
	if errors.Is(err, lease.ErrLeaseNotFound) && s.lessor.Exists(id) {
		deadline := time.NewTimer(s.cfg.RequestTimeout)
		defer deadline.Stop()
		poll := time.NewTicker(10 * time.Millisecond)
		defer poll.Stop()
		for s.lessor.Exists(id) {
			if !s.isLeader() {
				return -1, lease.ErrNotPrimary
			}
			select {
			case <-poll.C:
			case <-deadline.C:
				return -1, err
			case <-ctx.Done():
				return -1, ctx.Err()
			case <-s.stopc:
				return -1, ErrStopped
			}
		}
	}
	return ttl, err
}

// LeaseTimeToLive reports a lease's TTLs from the leader's clock. An
// unknown lease answers TTL -1, as etcd does.
func (s *Server) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	for {
		if err := s.waitLeader(deadline); err != nil {
			return nil, err
		}
		var (
			resp *pb.LeaseTimeToLiveResponse
			err  error
		)
		if s.isLeader() {
			resp, err = s.timeToLiveHere(ctx, r)
		} else {
			resp = &pb.LeaseTimeToLiveResponse{}
			err = s.forward(ctx, s.node.Leader(), pathTTL, r, resp)
		}
		if errors.Is(err, lease.ErrLeaseNotFound) {
			return &pb.LeaseTimeToLiveResponse{Header: s.Header(), ID: r.ID, TTL: -1}, nil
		}
		if err == nil {
			resp.Header = s.Header()
			return resp, nil
		}
		if !retryAtNextLeader(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		s.waitLeaderChange(ctx, deadline)
	}
}

func (s *Server) timeToLiveHere(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	// Answer as of every write that completed before the request.
	if err := s.LinearizableRead(ctx); err != nil {
		return nil, err
	}
	granted, remaining, keys, err := s.lessor.TimeToLive(r.ID, r.Keys)
	if err != nil {
		return nil, err
	}
	return &pb.LeaseTimeToLiveResponse{ID: r.ID, TTL: remaining, GrantedTTL: granted, Keys: keys}, nil
}

// LeaseLeases lists the leases this member has applied, as etcd does
// (its lessor's, with no quorum round): the list answers without a
// leader, and may miss a grant or revoke not yet applied here.
func (s *Server) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	ids := s.lessor.Leases()
	out := &pb.LeaseLeasesResponse{Header: s.Header(), Leases: make([]*pb.LeaseStatus, 0, len(ids))}
	for _, id := range ids {
		out.Leases = append(out.Leases, &pb.LeaseStatus{ID: id})
	}
	return out, nil
}

// leaseLoop promotes the lessor while this member leads (every live lease
// gets a fresh TTL plus an election timeout, so none expires for want of
// keepalives that went to the old leader) and proposes the revokes and
// checkpoints the leader's clock calls for.
func (s *Server) leaseLoop() {
	tick := time.NewTicker(leaseTick)
	defer tick.Stop()
	sem := make(chan struct{}, revokeWorkers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		changed := s.node.LeaderChanged()
		leader := s.isLeader()
		switch {
		case leader && !s.lessor.IsPrimary():
			s.lessor.Promote(s.cfg.ElectionTimeout)
			s.lg.Info("leases promoted: this member expires them now")
		case !leader && s.lessor.IsPrimary():
			s.lessor.Demote()
		}
		select {
		case <-changed:
			continue
		case <-tick.C:
		case <-s.stopc:
			return
		}
		if !leader {
			continue
		}
		for _, id := range s.lessor.ExpiredLeases(0) {
			select {
			case sem <- struct{}{}:
			case <-s.stopc:
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
				defer cancel()
				_, err := s.proposeInternal(ctx, &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}})
				if err != nil && !errors.Is(err, lease.ErrLeaseNotFound) {
					s.lg.Warn("cannot revoke expired lease", zap.Int64("lease", id), zap.Error(err))
				}
			}()
		}
		if cps := s.lessor.DueCheckpoints(0); len(cps) > 0 {
			req := &pb.LeaseCheckpointRequest{}
			for _, cp := range cps {
				req.Checkpoints = append(req.Checkpoints, &pb.LeaseCheckpoint{ID: cp.ID, Remaining_TTL: cp.RemainingTTL})
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
				defer cancel()
				if _, err := s.proposeInternal(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: req}); err != nil {
					s.lg.Warn("cannot checkpoint leases", zap.Error(err))
				}
			}()
		}
	}
}
