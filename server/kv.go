package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/metcd/metcd/kvstore"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Put sets key to value (the curl API) and returns the revision of the
// write once it is committed on a quorum and applied on this member.
func (s *Server) PutKey(ctx context.Context, key, value []byte) (int64, error) {
	if err := kvstore.ValidateKey(key); err != nil {
		return 0, err
	}
	// The curl API's limit is on the value (the body): the key and the
	// entry's framing come on top.
	resp, err := s.put(ctx, &pb.PutRequest{Key: key, Value: value}, s.cfg.MaxRequestBytes+kvstore.MaxKeyBytes+64)
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// DeleteKey removes key, returning ErrKeyNotFound if it did not exist.
func (s *Server) DeleteKey(ctx context.Context, key []byte) (int64, error) {
	if err := kvstore.ValidateKey(key); err != nil {
		return 0, err
	}
	resp, err := s.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: key})
	if err != nil {
		return 0, err
	}
	if resp.Deleted == 0 {
		return resp.Header.Revision, ErrKeyNotFound
	}
	return resp.Header.Revision, nil
}

// GetKey reads key at the current revision. A linearizable read first
// confirms, through a ReadIndex round, that this member has applied every
// write completed before it; a serializable read answers from local state
// at once.
func (s *Server) GetKey(ctx context.Context, key []byte, linearizable bool) ([]byte, int64, error) {
	if err := kvstore.ValidateKey(key); err != nil {
		return nil, 0, err
	}
	resp, err := s.Range(ctx, &pb.RangeRequest{Key: key, Serializable: !linearizable})
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, resp.Header.Revision, ErrKeyNotFound
	}
	return resp.Kvs[0].Value, resp.Header.Revision, nil
}

// propose hands an entry to raft and waits for the apply goroutine to
// report its result under id. Failures before raft took the entry are
// definite (nothing was written); failures after it are reported as
// unknown outcomes.
func (s *Server) propose(ctx context.Context, id uint64, submit func(context.Context) error) (result, error) {
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := s.waitLeader(deadline); err != nil {
		return result{}, err
	}
	ch := s.w.Register(id)
	submitLeader := s.node.Leader()
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	err := submit(pctx)
	for errors.Is(err, raft.ErrProposalDropped) {
		// Dropped, so not in the log: safe to propose again. A leader
		// drops proposals while it hands leadership over (move-leader, a
		// graceful stop), which raft ends within an election timeout, and
		// it knows no leader for a moment after; the write then goes to
		// the new leader instead of failing.
		if err = s.waitDropEnds(submitLeader, deadline); err != nil {
			break
		}
		submitLeader = s.node.Leader()
		err = submit(pctx)
	}
	if err != nil {
		s.w.Trigger(id, nil)
		switch {
		case errors.Is(err, ErrNoLeader), errors.Is(err, ErrTimeout), errors.Is(err, ErrStopped):
			return result{}, err
		case errors.Is(err, raft.ErrStopped):
			return result{}, ErrStopped
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			// raft may have taken the entry just before the deadline: the
			// outcome is unknown.
			return result{}, ErrTimeout
		}
		return result{}, fmt.Errorf("server: propose: %w", err)
	}

	// Poll the leader: a member cut off from the quorum answers within
	// about LeaderWait rather than the whole request timeout, and so does
	// one whose proposal went to a leader that has since been replaced (the
	// entry may have died with it; clients retry, as with etcd's "request
	// timed out, possibly due to previous leader failure").
	tick := time.NewTicker(s.cfg.HeartbeatInterval)
	defer tick.Stop()
	var leaderless, replaced time.Time
	for {
		select {
		case x := <-ch:
			if x == nil {
				return result{}, ErrStopped
			}
			r := x.(result)
			return r, r.err
		case <-pctx.Done():
			s.w.Trigger(id, nil)
			if s.node.Leader() == 0 {
				return result{}, ErrLeaderLost
			}
			return result{}, ErrTimeout
		case <-tick.C:
			if lead := s.node.Leader(); lead != 0 {
				leaderless = time.Time{}
				if lead != submitLeader {
					if replaced.IsZero() {
						replaced = time.Now()
					} else if time.Since(replaced) >= s.cfg.LeaderWait {
						s.w.Trigger(id, nil)
						return result{}, ErrLeaderLost
					}
				}
				continue
			}
			if leaderless.IsZero() {
				leaderless = time.Now()
			} else if time.Since(leaderless) >= s.cfg.LeaderWait {
				s.w.Trigger(id, nil)
				return result{}, ErrLeaderLost
			}
		case <-s.stopc:
			return result{}, ErrStopped
		}
	}
}

// AddMember adds a voting member with the given id and peer URL, returning
// once the change is applied on this member.
func (s *Server) AddMember(ctx context.Context, id uint64, peerURL string) error {
	if id == 0 {
		return fmt.Errorf("%w: member id must be at least 1", ErrBadMember)
	}
	_, err := s.addMember(ctx, id, peerURL, false)
	return err
}

// addMember adds the member under id, or under the next free id if id is
// 0, and returns the id.
func (s *Server) addMember(ctx context.Context, id uint64, peerURL string, learner bool) (uint64, error) {
	if s.IsLearner() {
		// As the gRPC API refuses it; the curl API gets here directly.
		return 0, rpctypes.ErrGRPCNotSupportedForLearner
	}
	if err := ValidatePeerURL(peerURL); err != nil {
		return 0, err
	}
	if err := s.caughtUp(ctx); err != nil {
		return 0, err
	}
	if id == 0 {
		var err error
		if id, err = s.nextMemberID(); err != nil {
			return 0, err
		}
	}
	s.memMu.RLock()
	_, exists := s.members[id]
	removed := s.removed[id]
	urlTaken := false
	learners := 0
	for _, m := range s.members {
		urlTaken = urlTaken || samePeerURL(m.PeerURL, peerURL)
		if m.IsLearner {
			learners++
		}
	}
	s.memMu.RUnlock()
	switch { // in etcd's order
	case removed:
		return 0, ErrIDRemoved
	case exists:
		return 0, fmt.Errorf("%w: id %d", ErrMemberExists, id)
	case urlTaken:
		return 0, fmt.Errorf("%w: %s", ErrPeerURLExists, peerURL)
	case learner && learners >= maxLearners:
		return 0, rpctypes.ErrGRPCTooManyLearners
	}
	if err := s.mayAddMember(learner); err != nil {
		return 0, err
	}
	mctx, err := json.Marshal(kvstore.Member{ID: id, PeerURL: peerURL, IsLearner: learner})
	if err != nil {
		return 0, err
	}
	typ := raftpb.ConfChangeAddNode
	if learner {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	return id, s.proposeConfChange(ctx, &raftpb.ConfChange{
		Type: typ.Enum(), NodeId: proto.Uint64(id), Context: mctx,
	})
}

// mayAddMember refuses an addition after which the cluster could lose its
// quorum, as etcd's strict reconfiguration check does. The new member
// counts as a voter that has not started: a voting member is added only
// while the started voting members (those that published their name) are
// a quorum of the voters with it, except when a one-member cluster grows
// to two; and any member, learner or not, only while this member is
// connected to a quorum of the voters with the new one, except in a
// one-member cluster. Unlike etcd, a peer counts as connected as soon as
// its stream is up, not only after 5 s of it.
func (s *Server) mayAddMember(learner bool) error {
	voters, started := s.votersExcept(0)
	after := len(voters) + 1 // voters with a new voting member
	if !learner && !(started == 1 && after == 2) && started < after/2+1 {
		return fmt.Errorf("%w: %d of the %d voting members would have started", ErrNotEnoughStartedMembers, started, after)
	}
	if len(voters) == 1 {
		return nil
	}
	if connected := s.connectedOf(voters); connected < after/2+1 {
		return fmt.Errorf("%w: member %d is connected to %d of the %d voting members there would be", ErrUnhealthy, s.id, connected, after)
	}
	return nil
}

// samePeerURL reports whether two valid peer URLs name the same endpoint:
// scheme and host compare without case, and a trailing "/" is ignored.
func samePeerURL(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host)
}

// RemoveMember removes a member. Removing this member makes it shut down
// once the change is applied.
func (s *Server) RemoveMember(ctx context.Context, id uint64) error {
	if s.IsLearner() {
		return rpctypes.ErrGRPCNotSupportedForLearner
	}
	if err := s.caughtUp(ctx); err != nil {
		return err
	}
	if err := s.mayRemoveMember(id); err != nil {
		return err
	}
	return s.proposeConfChange(ctx, &raftpb.ConfChange{
		Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(id),
	})
}

// mayRemoveMember refuses a removal after which the cluster could not
// make progress, as etcd's strict reconfiguration check does: the voting
// members that remain must hold a quorum of started members (published
// their name) and, unless the removed member is down already, a quorum of
// members this one is connected to. Unlike etcd, a peer counts as
// connected as soon as its stream is up, not only after 5 s of it. The
// apply path refuses removing the last voter in any case (raft cannot
// apply that), should two removals pass this check at once.
func (s *Server) mayRemoveMember(id uint64) error {
	s.memMu.RLock()
	m, exists := s.members[id]
	s.memMu.RUnlock()
	voters, started := s.votersExcept(id)
	switch {
	case !exists:
		return fmt.Errorf("%w: id %d", ErrMemberNotFound, id)
	case m.IsLearner:
		return nil // a learner is not part of any quorum
	case started < len(voters)/2+1:
		return fmt.Errorf("%w: %d of the %d voting members left would have started", ErrNotEnoughStartedMembers, started, len(voters))
	case id != s.id && s.tr.ActiveSince(id).IsZero():
		return nil // a member that is down is no part of the working quorum
	}
	if connected := s.connectedOf(voters); connected < len(voters)/2+1 {
		return fmt.Errorf("%w: %d of the %d voting members left are connected to member %d", ErrUnhealthy, connected, len(voters), s.id)
	}
	return nil
}

// votersExcept returns the voting members other than id (0: all of them)
// and how many of those have started (published their name).
func (s *Server) votersExcept(id uint64) (voters []uint64, started int) {
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	for mid, m := range s.members {
		if mid == id || m.IsLearner {
			continue
		}
		voters = append(voters, mid)
		if m.Name != "" {
			started++
		}
	}
	return voters, started
}

// connectedOf counts the members of ids this member is connected to,
// itself included. A peer counts as soon as its stream is up.
func (s *Server) connectedOf(ids []uint64) int {
	n := 0
	for _, id := range ids {
		if id == s.id || !s.tr.ActiveSince(id).IsZero() {
			n++
		}
	}
	return n
}

func (s *Server) proposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error {
	id := s.reqIDs.Next()
	cc.Id = proto.Uint64(id)
	_, err := s.propose(ctx, id, func(pctx context.Context) error {
		return s.node.ProposeConfChange(pctx, cc)
	})
	return err
}

// waitDropEnds waits, after a proposal was dropped while lead led, until
// another leader is known or an election timeout has passed (raft aborts
// a leadership transfer that takes longer); without a leader, as long as
// a request waits for one. A proposal dropped until the deadline has not
// been written, but the request has run out of time.
func (s *Server) waitDropEnds(lead uint64, deadline time.Time) error {
	if s.node.Leader() == 0 {
		return s.waitLeader(deadline)
	}
	wait := min(time.Until(deadline), s.cfg.ElectionTimeout)
	if wait <= 0 {
		return ErrTimeout
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		changed := s.node.LeaderChanged()
		if l := s.node.Leader(); l != lead {
			return s.waitLeader(deadline)
		}
		select {
		case <-changed:
		case <-t.C:
			return s.waitLeader(deadline)
		case <-s.stopc:
			return ErrStopped
		}
	}
}
