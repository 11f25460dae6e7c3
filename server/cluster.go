package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/kvstore"
)

// maxLearners is etcd's limit on learners in a cluster.
const maxLearners = 1

// learnerReadyFraction: a learner is promoted only once its log matches at
// least this fraction of the leader's, as in etcd.
const learnerReadyFraction = 0.9

func (s *Server) pbMembers() []*pb.Member {
	ms := s.Members()
	out := make([]*pb.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, toPBMember(m))
	}
	return out
}

func toPBMember(m Member) *pb.Member {
	return &pb.Member{ID: m.ID, Name: m.Name, PeerURLs: []string{m.PeerURL}, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner}
}

// MemberList lists the members. Linearizable unless the request asks
// otherwise.
func (s *Server) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := s.LinearizableRead(ctx); err != nil {
			return nil, err
		}
	}
	return &pb.MemberListResponse{Header: s.clusterHeader(), Members: s.pbMembers()}, nil
}

// nextMemberID is the id MemberAdd gives a new member: ids are positions
// in the --cluster list and never reused. Past the largest id there is
// none (the curl API can add a member at any id).
func (s *Server) nextMemberID() (uint64, error) {
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	var id uint64
	for m := range s.members {
		id = max(id, m)
	}
	for m := range s.removed {
		id = max(id, m)
	}
	if id == math.MaxUint64 {
		return 0, ErrNoMemberID
	}
	return id + 1, nil
}

func onePeerURL(urls []string) (string, error) {
	if len(urls) != 1 {
		return "", fmt.Errorf("%w: metcd members have exactly one peer URL, got %d", ErrBadMember, len(urls))
	}
	return urls[0], nil
}

// caughtUp brings this member's applied membership up to every change
// acknowledged before the call, on any member. The checks made before
// proposing a membership change (and the next free id) read that view,
// which otherwise lags the leader's by a round trip: a member refused to
// remove a member just added through another, as "not found". etcd makes
// such checks at apply, in log order; one ReadIndex round gives the same
// answers here. A learner's view is used as it is.
func (s *Server) caughtUp(ctx context.Context) error {
	if s.IsLearner() {
		return nil
	}
	return s.LinearizableRead(ctx)
}

// MemberAdd adds a member (or a learner) under the next free id.
func (s *Server) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	u, err := onePeerURL(r.PeerURLs)
	if err != nil {
		return nil, err
	}
	id, err := s.addMember(ctx, 0, u, r.IsLearner)
	if err != nil {
		return nil, err
	}
	return &pb.MemberAddResponse{
		Header:  s.clusterHeader(),
		Member:  &pb.Member{ID: id, PeerURLs: []string{u}, IsLearner: r.IsLearner},
		Members: s.pbMembers(),
	}, nil
}

// MemberRemove removes a member.
func (s *Server) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if err := s.RemoveMember(ctx, r.ID); err != nil {
		return nil, err
	}
	return &pb.MemberRemoveResponse{Header: s.clusterHeader(), Members: s.pbMembers()}, nil
}

// MemberUpdate changes a member's peer URL.
func (s *Server) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	u, err := onePeerURL(r.PeerURLs)
	if err != nil {
		return nil, err
	}
	if err := ValidatePeerURL(u); err != nil {
		return nil, err
	}
	if err := s.caughtUp(ctx); err != nil {
		return nil, err
	}
	s.memMu.RLock()
	_, exists := s.members[r.ID]
	taken := false
	for id, m := range s.members {
		taken = taken || (id != r.ID && m.PeerURL == u)
	}
	s.memMu.RUnlock()
	switch {
	case !exists:
		return nil, fmt.Errorf("%w: id %d", ErrMemberNotFound, r.ID)
	case taken:
		return nil, fmt.Errorf("%w: %s", ErrPeerURLExists, u)
	}
	mctx, err := json.Marshal(kvstore.Member{ID: r.ID, PeerURL: u})
	if err != nil {
		return nil, err
	}
	if err := s.proposeConfChange(ctx, &raftpb.ConfChange{
		Type: raftpb.ConfChangeUpdateNode.Enum(), NodeId: proto.Uint64(r.ID), Context: mctx,
	}); err != nil {
		return nil, err
	}
	return &pb.MemberUpdateResponse{Header: s.clusterHeader(), Members: s.pbMembers()}, nil
}

// MemberPromote makes a learner a voting member. Only the leader knows how
// far the learner's log is: a follower forwards the request to it.
// As etcd, it tries again through the next leader when the leader is lost
// on the way, until the request timeout.
func (s *Server) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	// After a try whose leader was lost, "not a learner" means that try
	// promoted it, if it was a learner when the request came.
	s.memMu.RLock()
	wasLearner := s.members[r.ID].IsLearner
	s.memMu.RUnlock()
	lost := false
	promotedByLostTry := func(err error) bool {
		// errors.Is compares a forwarded status error by code and text.
		return lost && wasLearner && errors.Is(err, rpctypes.ErrGRPCMemberNotLearner)
	}
	for {
		if err := s.waitLeader(deadline); err != nil {
			return nil, err
		}
		if s.node.Role() == raft.StateLeader {
			resp, err := s.promoteHere(ctx, r)
			if promotedByLostTry(err) {
				return &pb.MemberPromoteResponse{Header: s.clusterHeader(), Members: s.pbMembers()}, nil
			}
			return resp, err
		}
		fresp := &pb.MemberPromoteResponse{}
		err := s.forward(ctx, s.node.Leader(), pathPromote, r, fresp)
		if promotedByLostTry(err) {
			err = nil
		}
		if err == nil {
			// The leader answered once it applied the promotion; answer
			// with this member's list once it has too, as etcd answers
			// with one that shows the promotion (or with the leader's,
			// if this member cannot catch up now).
			if err := s.LinearizableRead(ctx); err != nil && len(fresp.Members) > 0 {
				return &pb.MemberPromoteResponse{Header: s.clusterHeader(), Members: fresp.Members}, nil
			}
			return &pb.MemberPromoteResponse{Header: s.clusterHeader(), Members: s.pbMembers()}, nil
		}
		if !retryAtNextLeader(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, err
		}
		lost = lost || errors.Is(err, ErrNoLeader)
		s.waitLeaderChange(ctx, deadline)
	}
}

// promoteHere promotes on this member, the leader.
func (s *Server) promoteHere(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	if err := s.caughtUp(ctx); err != nil {
		return nil, err
	}
	s.memMu.RLock()
	m, exists := s.members[r.ID]
	s.memMu.RUnlock()
	// In etcd's order: a voter that has not caught up (one added but
	// never started) is "not in sync" before it is "not a learner".
	st := s.node.Status()
	lp, ok := st.Progress[r.ID]
	switch {
	case !exists:
		// A gRPC error already: this may be answering a forwarded request.
		return nil, rpctypes.ErrGRPCMemberNotFound
	case !ok || float64(lp.Match) < float64(st.Progress[s.id].Match)*learnerReadyFraction:
		return nil, rpctypes.ErrGRPCLearnerNotReady
	case !m.IsLearner:
		return nil, rpctypes.ErrGRPCMemberNotLearner
	}
	mctx, err := json.Marshal(kvstore.Member{ID: r.ID, PeerURL: m.PeerURL})
	if err != nil {
		return nil, err
	}
	if err := s.proposeConfChange(ctx, &raftpb.ConfChange{
		Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(r.ID), Context: mctx,
	}); err != nil {
		return nil, err
	}
	return &pb.MemberPromoteResponse{Header: s.clusterHeader(), Members: s.pbMembers()}, nil
}

// publish records this member's name and client URLs in the cluster once
// a leader is known, retrying until it is applied (etcd's publish).
func (s *Server) publish() {
	name := s.cfg.Name
	if name == "" {
		name = fmt.Sprintf("metcd-%d", s.id)
	}
	for {
		s.memMu.RLock()
		m, ok := s.members[s.id]
		s.memMu.RUnlock()
		if ok && m.Name == name && equalStrings(m.ClientURLs, s.cfg.ClientURLs) {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		_, err := s.proposeInternalAny(ctx, &pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{
			Member_ID:        s.id,
			MemberAttributes: &membershippb.Attributes{Name: name, ClientUrls: s.cfg.ClientURLs},
		}})
		cancel()
		if err == nil {
			s.lg.Info("published member attributes", zap.String("name", name), zap.Strings("client-urls", s.cfg.ClientURLs))
			return
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-s.stopc:
			return
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// clusterHeader is the header of Cluster responses, as etcd's
// ClusterServer fills it: cluster, member and term, no revision (the
// membership is not part of the key space).
func (s *Server) clusterHeader() *pb.ResponseHeader {
	return s.fill(&pb.ResponseHeader{})
}
