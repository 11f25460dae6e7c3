package grpcapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/mvcc"
)

// kvServer is etcd's KV service: requests are checked here with etcd's
// gRPC-layer validation (the same rpctypes errors, before the backend sees
// them), then passed to the backend.
type kvServer struct {
	pb.UnsafeKVServer
	b          Backend
	maxTxnOps  int
	chunkBytes int // target size of a RangeStream chunk
}

func (s *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := mvcc.ValidateRange(r); err != nil {
		return nil, mvcc.ToGRPCError(err)
	}
	resp, err := s.b.Range(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := mvcc.ValidatePut(r); err != nil {
		return nil, mvcc.ToGRPCError(err)
	}
	resp, err := s.b.Put(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := mvcc.ValidateDeleteRange(r); err != nil {
		return nil, mvcc.ToGRPCError(err)
	}
	resp, err := s.b.DeleteRange(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := mvcc.ValidateTxn(r, s.maxTxnOps); err != nil {
		return nil, mvcc.ToGRPCError(err)
	}
	resp, err := s.b.Txn(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := s.b.Compact(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

// RangeStream is etcd 3.7's streamed Range (clientv3 KV.GetStream), with
// etcd's restrictions (default key order, no revision filters). Unlike
// etcd, which reads the range chunk by chunk, it makes one Range and sends
// its keys in chunks of about MaxRequestBytes; as in etcd, header, more
// and count are on the last chunk only, and count_only sends one chunk.
func (s *kvServer) RangeStream(r *pb.RangeRequest, rs pb.KV_RangeStreamServer) error {
	if err := mvcc.ValidateRange(r); err != nil {
		return mvcc.ToGRPCError(err)
	}
	if o := r.GetSortOrder(); o != pb.RangeRequest_NONE &&
		(o != pb.RangeRequest_ASCEND || r.GetSortTarget() != pb.RangeRequest_KEY) {
		return status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders")
	}
	if r.GetMinModRevision() != 0 || r.GetMaxModRevision() != 0 ||
		r.GetMinCreateRevision() != 0 || r.GetMaxCreateRevision() != 0 {
		return status.Error(codes.Unimplemented, "RangeStream does not support revision filters")
	}
	resp, err := s.b.Range(rs.Context(), r)
	if err != nil {
		return toGRPCError(err)
	}
	kvs := resp.GetKvs()
	for len(kvs) > 0 {
		n, size := 0, 0
		for n < len(kvs) && (n == 0 || size+proto.Size(kvs[n]) <= s.chunkBytes) {
			size += proto.Size(kvs[n])
			n++
		}
		if n == len(kvs) {
			break // the last chunk goes with the header below
		}
		if err := rs.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{Kvs: kvs[:n:n]}}); err != nil {
			return err
		}
		kvs = kvs[n:]
	}
	last := &pb.RangeResponse{
		Header: resp.GetHeader(),
		Kvs:    kvs,
		More:   resp.GetMore(),
		Count:  resp.GetCount(),
	}
	return rs.Send(&pb.RangeStreamResponse{RangeResponse: last})
}
