package grpcapi

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metcd/metcd/lease"
)

// leaseServer is etcd's Lease service.
type leaseServer struct {
	pb.UnsafeLeaseServer
	b Backend
}

func (s *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	resp, err := s.b.LeaseGrant(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := s.b.LeaseRevoke(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

// LeaseTimeToLive answers an unknown lease with TTL -1, not an error, as
// etcd does (clientv3 and etcdctl rely on it).
func (s *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := s.b.LeaseTimeToLive(ctx, r)
	if errors.Is(err, lease.ErrLeaseNotFound) {
		return &pb.LeaseTimeToLiveResponse{Header: s.b.Header(), ID: r.GetID(), TTL: -1}, nil
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *leaseServer) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp, err := s.b.LeaseLeases(ctx, r)
	if errors.Is(err, lease.ErrLeaseNotFound) {
		return &pb.LeaseLeasesResponse{Header: s.b.Header(), Leases: []*pb.LeaseStatus{}}, nil
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

// LeaseKeepAlive renews a lease per request. An unknown (or expired)
// lease gets TTL 0, which clientv3 takes as the lease's end; any other
// error ends the stream. The header is taken before the renewal, as etcd
// does, so its revision never follows a revoke the renewal did not see.
//
// Requests are read on a second goroutine so that the stream ends as soon
// as its context does (client gone, or no leader with "hasleader") even
// while Recv blocks; only this goroutine sends.
func (s *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	done := make(chan struct{})
	defer close(done)
	respc := make(chan *pb.LeaseKeepAliveResponse)
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				errc <- nil
				return
			}
			if err != nil {
				errc <- err
				return
			}
			resp := &pb.LeaseKeepAliveResponse{Header: s.b.Header(), ID: req.GetID()}
			ttl, err := s.b.LeaseRenew(ctx, req.GetID())
			switch {
			case errors.Is(err, lease.ErrLeaseNotFound):
				ttl = 0
			case err != nil:
				errc <- toGRPCError(err)
				return
			}
			resp.TTL = ttl
			select {
			case respc <- resp:
			case <-done:
				return
			}
		}
	}()
	for {
		select {
		case resp := <-respc:
			if err := stream.Send(resp); err != nil {
				return err
			}
		case err := <-errc:
			if err != nil && ctx.Err() != nil {
				return streamError(ctx) // e.g. Recv failed because ctx ended
			}
			return err
		case <-ctx.Done():
			return streamError(ctx)
		}
	}
}
