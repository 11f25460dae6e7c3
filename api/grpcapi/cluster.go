package grpcapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// clusterServer is etcd's Cluster service, passed through to the backend,
// which validates peer URLs (etcd answers a bad one with
// ErrGRPCMemberBadURLs; the backend's server.ErrBadMember maps to it).
type clusterServer struct {
	pb.UnsafeClusterServer
	b Backend
}

func (s *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	resp, err := s.b.MemberAdd(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	resp, err := s.b.MemberRemove(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	resp, err := s.b.MemberUpdate(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	resp, err := s.b.MemberList(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	resp, err := s.b.MemberPromote(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}
